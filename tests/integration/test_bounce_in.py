"""The bounce listener, its inbox and its intake on a real store, over real SMTP.

Real parts: ``engine.runtime.bounce.bounce_service`` on loopback sockets, the
SQLite and the PostgreSQL store, the in-process limiter on a clock the tests
move, a certificate generated here, aiosmtplib as an independent client.
The report parser and the return-path codec are the test's own small
stand-ins (``REPORTS``, ``Codec``): this file tests what is done with a
report, not how one is read.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiosmtplib
import pytest

from bounce_in.actions import Policy
from bounce_in.intake import Intake
from bounce_in.report import (
    Action,
    BounceReport,
    FeedbackReport,
    OriginalMessage,
    RecipientStatus,
    ReportKind,
)
from config.loader import parse_settings
from config.schema import BounceSettings
from engine.clock import FakeClock
from engine.limits.local import LocalLimiter
from engine.model import (
    InboundMessage,
    InboundState,
    MessageState,
    QueuedMessage,
    SendingDomain,
    Submission,
)
from engine.records.log import RecordLog
from engine.runtime.app import bind_listeners
from engine.runtime.bounce import BounceParts, bounce_service
from engine.store import Store, StoreError, open_store
from tests.harness.tlsutil import make_tls_pair

Backend = Literal["sqlite", "postgres"]
T0 = 1_800_000_000.0
TENANT_DOMAIN = "acme.test"
BOUNCE_DOMAIN = "bounces.acme.test"
FBL = "fbl@bounces.example.test"
WAIT_SECONDS = 15.0
PENGUIN = (sys.executable, "-m", "engine.cli")

REPORTS: dict[str, BounceReport] = {}
"""What the test parser returns for a message carrying ``X-Test-Report: NAME``."""


def parse_fixture_report(raw: bytes) -> BounceReport:
    found = re.search(rb"X-Test-Report: (\w+)", raw)
    if found is None:
        return BounceReport(ReportKind.OTHER)
    return REPORTS[found.group(1).decode()]


class Codec:
    """Return paths ``b-<message id>`` for the messages this test stored, and references
    ``ref-<submission id>``; anything else is not trusted."""

    def __init__(self) -> None:
        self.messages: set[str] = set()

    def message_id(self, local_part: str) -> str | None:
        wanted = local_part.lower().removeprefix("b-")
        return wanted if local_part.lower().startswith("b-") and wanted in self.messages else None

    def submission_id(self, reference: str) -> str | None:
        return reference.removeprefix("ref-") if reference.startswith("ref-") else None


def status(address: str, action: Action, code: str, category: str, text: str) -> RecipientStatus:
    return RecipientStatus(
        address=address,
        action=action,
        status=code,
        category=category,
        diagnostic=text,
        remote_mta="mx.example.org",
        smtp_code=int(text[:3]) if text[:3].isdigit() else None,
    )


REPORTS.update(
    hard=BounceReport(
        ReportKind.DSN,
        (status("", Action.FAILED, "5.1.1", "InvalidRecipient", "550 5.1.1 User unknown"),),
        reporting_mta="mx.example.org",
    ),
    delayed=BounceReport(
        ReportKind.DSN,
        (status("", Action.DELAYED, "4.2.2", "QuotaIssues", "452 4.2.2 Mailbox full"),),
    ),
    policy=BounceReport(
        ReportKind.DSN,
        (status("", Action.FAILED, "5.7.1", "PolicyRelated", "550 5.7.1 Blocked by policy"),),
    ),
    auto=BounceReport(ReportKind.AUTO_REPLY, subject="Out of office"),
    abuse=BounceReport(
        ReportKind.FEEDBACK,
        feedback=FeedbackReport("abuse", user_agent="Yahoo!-Mail-Feedback/2.0"),
        original=OriginalMessage(headers=(("X-Penguin-Ref", "ref-sub2"),)),
        reporting_mta="feedback.yahoo.test",
    ),
    jmrp=BounceReport(
        ReportKind.FEEDBACK,
        feedback=FeedbackReport("abuse"),
        original=OriginalMessage(
            headers=(
                ("X-Penguin-Ref", "ref-sub2"),
                ("X-HmXmrOriginalRecipient", "<Carol@Example.org>"),
            )
        ),
    ),
    forged_ref=BounceReport(
        ReportKind.DSN,
        (status("", Action.FAILED, "5.1.1", "InvalidRecipient", "550 5.1.1 no such user"),),
        original=OriginalMessage(headers=(("X-Penguin-Ref", "ref-nosuch"),)),
    ),
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    name: Backend = request.param
    return name


@pytest.fixture
def store_url(backend: Backend, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path / 'data' / 'penguin.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    store = open_store(store_url)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


def queued(submission_id: str, n: int, recipient: str) -> QueuedMessage:
    return QueuedMessage(
        id=f"{submission_id}m{n}",
        submission_id=submission_id,
        tenant_id=1,
        queue=f"news:acme@{recipient.rpartition('@')[2]}",
        campaign="news",
        sender=f"hello@{TENANT_DOMAIN}",
        recipient=recipient,
        domain=recipient.rpartition("@")[2],
        state=MessageState.DELIVERED,
        due_at=T0,
        created_at=T0,
    )


@pytest.fixture
async def mail(store: Store) -> Codec:
    """Tenant acme (id 1) with its domain, submission sub1 (one recipient, bob) and
    sub2 (alice and carol); the codec knows them."""
    tenant = await store.create_tenant("acme", T0)
    assert tenant.id == 1
    await store.add_domain(
        SendingDomain(1, TENANT_DOMAIN, "s1", "rsa-sha256", b"sealed", "cHVi", T0)
    )
    one = (queued("sub1", 0, "bob@example.org"),)
    two = (queued("sub2", 0, "alice@example.org"), queued("sub2", 1, "carol@example.org"))
    await store.accept(
        [Submission("sub1", 1, b"body", one, T0), Submission("sub2", 1, b"body", two, T0)], []
    )
    codec = Codec()
    codec.messages.update(m.id for m in (*one, *two))
    return codec


@dataclass
class Listener:
    host: str
    port: int
    clock: FakeClock
    store: Store
    tls_client: ssl.SSLContext

    async def send(
        self, rcpt: str, report: str = "", *, mail_from: str = "", extra: str = ""
    ) -> tuple[int, str]:
        """One message to ``rcpt``; the DATA reply (code, text)."""
        body = (
            f"From: MAILER-DAEMON@mx.example.org\r\nTo: {rcpt}\r\nSubject: failure\r\n"
            f"X-Test-Report: {report or 'none'}\r\n{extra}\r\nDelivery failed.\r\n"
        )
        if not report:
            body = body.replace("X-Test-Report: none\r\n", "")
        async with self.client() as client:
            await client.ehlo()
            await client.mail(mail_from)
            await client.rcpt(rcpt)
            try:
                reply = await client.data(body.encode())
            except aiosmtplib.SMTPDataError as refused:
                return refused.code, refused.message
        return reply.code, reply.message

    def client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=10, start_tls=False, use_tls=False
        )


ServiceFactory = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def listen(store: Store, mail: Codec, tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start the bounce service (``bounce`` settings over the test's) on ``store``."""
    started: list[tuple[Any, asyncio.Task[None]]] = []
    tls = make_tls_pair(tmp_path)

    async def start(store: Store = store, **bounce: Any) -> Listener:
        settings = parse_settings(
            {
                "engine": {"data_dir": str(tmp_path / "var"), "hostname": "mx.penguin.test"},
                "bounce": {
                    "listen": ["127.0.0.1:0"],
                    "feedback_addresses": [FBL],
                    "poll_seconds": 0.2,
                    **bounce,
                },
            }
        )
        clock = FakeClock(T0)
        service = bounce_service(
            settings,
            "<test>",
            store=store,
            limiter=LocalLimiter(clock),
            clock=clock,
            record_log=RecordLog(str(tmp_path / "records.jsonl")),
            parts=BounceParts(parse_fixture_report, mail, lambda d: f"bounces.{d}"),
            tls_context=tls.server,
            sockets=bind_listeners(settings, "<test>", "bounce.listen"),
        )
        [(host, port)] = await service.start()
        started.append((service, asyncio.create_task(service.run())))
        return Listener(host, port, clock, store, tls.client)

    yield start
    for service, task in started:
        await service.stop(5)
        await asyncio.wait_for(task, 10)


async def processed(store: Store, count: int) -> list[InboundMessage]:
    """Wait until ``count`` inbound messages are processed (done or unmatched)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = [
            *await store.list_inbound(InboundState.DONE, 100),
            *await store.list_inbound(InboundState.UNMATCHED, 100),
        ]
        if len(found) >= count or time.monotonic() > deadline:
            assert len(found) == count, f"{len(found)} of {count} inbound messages processed"
            return found
        await asyncio.sleep(0.02)


async def records_of(store: Store, message_id: str, kind: str) -> list[dict[str, Any]]:
    return [r for r in await store.list_records(message_id) if r["type"] == kind]


async def test_a_hard_bounce_is_an_oob_record_and_suppresses(listen: ServiceFactory) -> None:
    bounce = await listen()
    code, text = await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", "hard")
    assert code == 250, text
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, "sub1m0", "OOB")
    assert oob["recipient"] == "bob@example.org"
    assert oob["sender"] == f"hello@{TENANT_DOMAIN}"
    assert oob["bounce_classification"] == "InvalidRecipient"
    assert oob["response"]["code"] == 550
    assert oob["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}
    assert oob["peer_address"] == {"name": "mx.example.org", "addr": "127.0.0.1"}
    assert oob["meta"]["tenant"] == "acme"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert suppression.reason == "bounce: 5.1.1 InvalidRecipient"


async def test_a_token_survives_a_receiver_that_upper_cases_it(listen: ServiceFactory) -> None:
    bounce = await listen()
    code, _ = await bounce.send(f"B-SUB1M0@{BOUNCE_DOMAIN.upper()}", "hard")
    assert code == 250
    await processed(bounce.store, 1)
    assert await records_of(bounce.store, "sub1m0", "OOB")


async def test_a_policy_bounce_is_recorded_without_suppressing(listen: ServiceFactory) -> None:
    bounce = await listen()
    assert (await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", "policy"))[0] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, "sub1m0", "OOB")
    assert oob["bounce_classification"] == "PolicyRelated"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()


async def test_a_complaint_is_a_feedback_record_and_suppresses(listen: ServiceFactory) -> None:
    bounce = await listen()
    assert (await bounce.send(FBL, "jmrp"))[0] == 250
    await processed(bounce.store, 1)
    [feedback] = await records_of(bounce.store, "sub2m1", "Feedback")
    assert feedback["recipient"] == "carol@example.org"
    assert feedback["feedback_report"]["feedback_type"] == "abuse"
    assert await records_of(bounce.store, "sub2m0", "Feedback") == []
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert (suppression.address, suppression.reason) == ("carol@example.org", "complaint: abuse")


async def test_a_redacted_complaint_about_several_recipients_is_kept_unmatched(
    listen: ServiceFactory,
) -> None:
    bounce = await listen()
    assert (await bounce.send(FBL, "abuse"))[0] == 250
    [inbound] = await processed(bounce.store, 1)
    assert inbound.state is InboundState.UNMATCHED
    assert "2 candidates" in inbound.reason
    assert await bounce.store.list_suppressions(1, "", 10) == []


async def test_an_auto_reply_is_recorded_and_never_suppresses(listen: ServiceFactory) -> None:
    bounce = await listen()
    assert (await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", "auto"))[0] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, "sub1m0", "OOB")
    assert oob["bounce_classification"] == "AutoReply"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()


async def test_soft_bounces_suppress_only_after_three_within_the_window(
    listen: ServiceFactory,
) -> None:
    bounce = await listen(soft_suppress_after=3, soft_window="7d")
    rcpt = f"b-sub1m0@{BOUNCE_DOMAIN}"

    async def soft(n: int) -> set[str]:
        assert (await bounce.send(rcpt, "delayed"))[0] == 250
        await processed(bounce.store, n)
        return await bounce.store.suppressed(1, ["bob@example.org"])

    assert await soft(1) == set()
    bounce.clock.advance(86400)
    assert await soft(2) == set()
    bounce.clock.advance(7 * 86400)  # the first two fall out of the window
    assert await soft(3) == set()
    bounce.clock.advance(3600)
    assert await soft(4) == set()
    bounce.clock.advance(3600)
    assert await soft(5) == {"bob@example.org"}
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert suppression.reason.startswith("bounce: 3 soft bounces in 7d")
    assert len(await records_of(bounce.store, "sub1m0", "OOB")) == 5


async def test_unattributable_mail_is_kept_and_listed(
    listen: ServiceFactory, store_url: str, tmp_path: Path
) -> None:
    bounce = await listen()
    assert (await bounce.send(f"b-forged0@{BOUNCE_DOMAIN}", "hard"))[0] == 250
    assert (await bounce.send(FBL, "forged_ref"))[0] == 250
    assert (await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", ""))[0] == 250  # a person writing
    found = await processed(bounce.store, 3)
    assert {m.state for m in found} == {InboundState.UNMATCHED}
    reasons = {m.rcpt_tos[0].split("@")[0]: m.reason for m in found}
    assert "no valid return-path token" in reasons["b-forged0"]
    assert "X-Penguin-Ref names unknown nosuch" in reasons["fbl"]
    assert reasons["b-sub1m0"] == "not a bounce, complaint or auto-reply"
    assert await bounce.store.list_records("sub1m0") == []

    config = tmp_path / "cli.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "cli"}"\n[database]\nurl = "{store_url}"\n'
    )
    listing = await asyncio.to_thread(
        subprocess.run,
        [*PENGUIN, "--config", str(config), "bounce", "unmatched", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listing.returncode == 0, listing.stderr
    shown = json.loads(listing.stdout)
    assert len(shown) == 3
    assert {m["reason"] for m in shown} == {m.reason for m in found}
    assert all(m["subject"] == "failure" and m["peer"] == "127.0.0.1" for m in shown)


@pytest.mark.parametrize(
    ("rcpt", "code", "enhanced"),
    [
        ("someone@example.org", 550, "5.7.1"),  # a foreign domain: never a relay
        (f"hello@{TENANT_DOMAIN}", 550, "5.7.1"),  # the tenant's own domain is not ours
        (f"b-sub1m0@{TENANT_DOMAIN}", 550, "5.7.1"),
        (f"postmaster@{BOUNCE_DOMAIN}", 550, "5.1.1"),  # not a token
        (f"fbl@{BOUNCE_DOMAIN}", 550, "5.1.1"),
        ("b-sub1m0@bounces.other.test", 550, "5.7.1"),
    ],
)
async def test_only_bounce_and_feedback_addresses_are_accepted(
    listen: ServiceFactory, rcpt: str, code: int, enhanced: str
) -> None:
    bounce = await listen()
    async with bounce.client() as client:
        await client.ehlo()
        await client.mail("")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt(rcpt)
    assert refused.value.code == code
    assert refused.value.message.startswith(enhanced)


async def test_auth_is_not_offered(listen: ServiceFactory) -> None:
    bounce = await listen()
    async with bounce.client() as client:
        await client.ehlo()
        assert not client.supports_extension("auth")
        assert client.supports_extension("starttls")


async def test_oversize_mail_is_refused_with_552(listen: ServiceFactory) -> None:
    bounce = await listen(max_message_bytes=2048)
    async with bounce.client() as client:
        await client.ehlo()
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("", options=["SIZE=100000"])
        assert refused.value.code == 552
        await client.mail("")
        await client.rcpt(f"b-sub1m0@{BOUNCE_DOMAIN}")
        with pytest.raises(aiosmtplib.SMTPDataError) as data:
            await client.data(b"Subject: big\r\n\r\n" + b"x" * 5000 + b"\r\n")
        assert data.value.code == 552
    assert await bounce.store.list_inbound(InboundState.PENDING, 10) == []


async def test_a_client_over_its_connection_rate_gets_421(listen: ServiceFactory) -> None:
    bounce = await listen(client_connection_rate="2/min")
    for _ in range(2):
        async with bounce.client() as client:
            await client.ehlo()
    with pytest.raises(aiosmtplib.SMTPConnectResponseError) as refused:
        async with bounce.client():
            pass
    assert refused.value.code == 421
    bounce.clock.advance(60)
    async with bounce.client() as client:
        await client.ehlo()


async def test_a_client_over_its_message_rate_gets_450(listen: ServiceFactory) -> None:
    bounce = await listen(client_message_rate="2/h")
    async with bounce.client() as client:
        await client.ehlo()
        for _ in range(2):
            await client.mail("")
            await client.rset()
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("")
    assert refused.value.code == 450


async def test_starttls_with_a_generated_certificate(listen: ServiceFactory) -> None:
    bounce = await listen()
    async with aiosmtplib.SMTP(
        hostname="localhost", port=bounce.port, timeout=10, start_tls=False, use_tls=False
    ) as client:
        await client.ehlo()
        await client.starttls(tls_context=bounce.tls_client)
        assert client.get_transport_info("sslcontext") is not None
        await client.ehlo()
        await client.mail("")
        await client.rcpt(f"b-sub1m0@{BOUNCE_DOMAIN}")
        reply = await client.data(b"Subject: failure\r\nX-Test-Report: hard\r\n\r\nx\r\n")
    assert reply.code == 250
    await processed(bounce.store, 1)


class FailingCommits:
    """A store whose inbound commits fail while ``failing``; the rest is the real store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.failing = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def accept_inbound(self, messages: Sequence[InboundMessage]) -> None:
        if self.failing:
            raise StoreError("disk full")
        await self._store.accept_inbound(messages)


async def test_250_only_once_committed_else_451(listen: ServiceFactory, store: Store) -> None:
    failing = FailingCommits(store)
    bounce = await listen(store=failing)
    code, _ = await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", "hard")
    assert code == 451
    assert await store.list_inbound(InboundState.PENDING, 10) == []
    assert await store.list_records("sub1m0") == []

    failing.failing = False
    code, text = await bounce.send(f"b-sub1m0@{BOUNCE_DOMAIN}", "hard")
    assert code == 250
    queued_as = text.rsplit(" ", 1)[-1]
    [stored] = await processed(store, 1)
    assert stored.id == queued_as
    assert b"X-Test-Report: hard" in stored.data


async def test_processing_the_same_message_twice_stores_once(store: Store, mail: Codec) -> None:
    inbound = InboundMessage(
        "in-1", T0, "127.0.0.1", "", (f"b-sub1m0@{BOUNCE_DOMAIN}",), b"X-Test-Report: hard\r\n"
    )
    await store.accept_inbound([inbound])
    clock = FakeClock(T0)
    intake = Intake(
        store=store,
        parse=parse_fixture_report,
        return_paths=mail,
        policy=Policy.from_settings(BounceSettings()),
        poll_seconds=1.0,
        clock=clock,
        nodeid="n",
    )
    [claimed] = await store.claim_inbound(T0, 300, 10)
    assert await store.claim_inbound(T0, 300, 10) == []  # leased
    assert await intake.process(claimed) is InboundState.DONE
    assert await intake.process(claimed) is None  # again: after a crash, or by another process
    clock.advance(600)
    assert await intake.process_pending() == 0
    assert len(await records_of(store, "sub1m0", "OOB")) == 1
    assert len(await store.list_suppressions(1, "", 10)) == 1
