"""The bounce listener, its inbox and its intake on a real store, over real SMTP.

Real parts: ``engine.runtime.bounce.bounce_service`` with the parts the
engine composes (``bounce_parts``: the report parser with the engine's
classifier, the return-path codec keyed from an engine secret generated
here) on loopback sockets, the SQLite and the PostgreSQL store, the
in-process limiter on a clock the tests move, a certificate generated here,
aiosmtplib as an independent client. What comes in is real report bytes
(``tests.harness.bounce_reports``) sent to the return paths and the
``X-Penguin-Ref`` values of messages stored through ``Store.accept``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from bounce_in.actions import tenant_policies
from bounce_in.intake import Intake
from config import Settings
from config.loader import parse_settings
from engine.clock import FakeClock
from engine.delivery.bounce_classify import BounceClassifier
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
from engine.return_path import ReturnPathCodec, codec_from_settings, derive_key
from engine.runtime.app import bind_listeners
from engine.runtime.bounce import bounce_parts, bounce_service
from engine.store import Store, StoreError
from tests.harness import bounce_reports as reports
from tests.harness.conditions import wait_for
from tests.harness.tlsutil import make_tls_pair

T0 = 1_800_000_000.0
TENANT_DOMAIN = "acme.test"
BOUNCE_DOMAIN = "bounces.acme.test"
FBL = "fbl@bounces.example.test"
WAIT_SECONDS = 15.0
PENGUIN = (sys.executable, "-m", "engine.cli")
SUB1 = "0190a1b2c3d4e5f6a7b8c9d0e1f2"
"""One recipient: bob (message ``SUB1-1``)."""
SUB2 = "0190a1b2c3d4ffeeddccbbaa9988"
"""Two recipients: alice (``SUB2-1``) and carol (``SUB2-2``)."""
HARD = ("failed", "5.1.1", "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown")


def queued(submission_id: str, n: int, recipient: str) -> QueuedMessage:
    return QueuedMessage(
        id=f"{submission_id}-{n}",
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


def settings_of(tmp_path: Path, tenants: dict[str, Any] | None = None, **bounce: Any) -> Settings:
    return parse_settings(
        {
            "engine": {"data_dir": str(tmp_path / "var"), "hostname": "mx.penguin.test"},
            "bounce": {
                "listen": ["127.0.0.1:0"],
                "feedback_addresses": [FBL],
                "poll_seconds": 0.2,
                **bounce,
            },
            "tenants": tenants or {},
        }
    )


@dataclass(frozen=True)
class Mail:
    """What the test sent, as the engine signs it: return paths and references."""

    secret: bytes
    codec: ReturnPathCodec

    def return_path(self, message_id: str) -> str:
        return f"{self.codec.local_part(message_id)}@{BOUNCE_DOMAIN}"

    def reference(self, submission_id: str) -> str:
        return self.codec.reference(submission_id)


@pytest.fixture
async def mail(store: Store, tmp_path: Path) -> Mail:
    """Tenant acme (id 1) with its domain, submissions ``SUB1`` and ``SUB2``, and the
    engine secret their return paths and references are signed with."""
    tenant = await store.create_tenant("acme", T0)
    assert tenant.id == 1
    await store.add_domain(
        SendingDomain(1, TENANT_DOMAIN, "s1", "rsa-sha256", b"sealed", "cHVi", T0)
    )
    one = (queued(SUB1, 1, "bob@example.org"),)
    two = (queued(SUB2, 1, "alice@example.org"), queued(SUB2, 2, "carol@example.org"))
    await store.accept(
        [Submission(SUB1, 1, b"body", one, T0), Submission(SUB2, 1, b"body", two, T0)], []
    )
    secret = secrets.token_bytes(32)
    return Mail(secret, codec_from_settings(settings_of(tmp_path), secret))


@dataclass
class Listener:
    host: str
    port: int
    clock: FakeClock
    store: Store
    tls_client: ssl.SSLContext

    async def send(self, rcpt: str, data: bytes, *, mail_from: str = "") -> tuple[int, str]:
        """``data`` to ``rcpt`` as a receiver sends a report; the DATA reply (code, text)."""
        async with self.client() as client:
            await client.ehlo()
            await client.mail(mail_from)
            await client.rcpt(rcpt)
            try:
                reply = await client.data(data)
            except aiosmtplib.SMTPDataError as refused:
                return refused.code, refused.message
        return reply.code, reply.message

    def client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=self.host, port=self.port, timeout=10, start_tls=False, use_tls=False
        )


ServiceFactory = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def listen(store: Store, mail: Mail, tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start the bounce service (``bounce`` settings over the test's) on ``store``."""
    started: list[tuple[Any, asyncio.Task[None]]] = []
    tls = make_tls_pair(tmp_path)

    async def start(
        store: Store = store, tenants: dict[str, Any] | None = None, **bounce: Any
    ) -> Listener:
        settings = settings_of(tmp_path, tenants, **bounce)
        clock = FakeClock(T0)
        service = bounce_service(
            settings,
            "<test>",
            store=store,
            limiter=LocalLimiter(clock),
            clock=clock,
            record_log=RecordLog(str(tmp_path / "records.jsonl")),
            parts=bounce_parts(settings, mail.secret, BounceClassifier()),
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


BOB = f"{SUB1}-1"
ALICE = f"{SUB2}-1"
CAROL = f"{SUB2}-2"


async def test_a_hard_bounce_is_an_oob_record_and_suppresses(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    rcpt = mail.return_path(BOB)
    code, text = await bounce.send(rcpt, reports.dsn("bob@example.org", *HARD, to=rcpt))
    assert code == 250, text
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, BOB, "OOB")
    assert oob["recipient"] == "bob@example.org"
    assert oob["sender"] == f"hello@{TENANT_DOMAIN}"
    assert oob["bounce_classification"] == "InvalidRecipient"
    assert oob["response"]["code"] == 550
    assert oob["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 1}
    assert oob["peer_address"] == {"name": reports.REPORTING_MTA, "addr": "127.0.0.1"}
    assert oob["meta"]["tenant"] == "acme"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert suppression.reason == "bounce: 5.1.1 InvalidRecipient"


async def test_a_token_survives_a_receiver_that_upper_cases_it(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    rcpt = mail.return_path(BOB).upper()
    code, _ = await bounce.send(rcpt, reports.dsn("BOB@EXAMPLE.ORG", *HARD, to=rcpt))
    assert code == 250
    await processed(bounce.store, 1)
    assert await records_of(bounce.store, BOB, "OOB")
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}


@pytest.mark.parametrize(
    "data",
    [
        reports.dsn(None, *HARD),  # a delivery-status group without Final-Recipient
        reports.dsn("", *HARD),  # Final-Recipient left empty
        reports.plain_bounce("550 5.1.1 User unknown"),  # a filter naming no one
    ],
    ids=["no-final-recipient", "empty-final-recipient", "plain-text"],
)
async def test_a_bounce_naming_no_recipient_is_resolved_by_the_token(
    listen: ServiceFactory, mail: Mail, data: bytes
) -> None:
    bounce = await listen()
    assert (await bounce.send(mail.return_path(BOB), data))[0] == 250
    [inbound] = await processed(bounce.store, 1)
    assert inbound.state is InboundState.DONE, inbound.reason
    [oob] = await records_of(bounce.store, BOB, "OOB")
    assert (oob["recipient"], oob["bounce_classification"]) == (
        "bob@example.org",
        "InvalidRecipient",
    )
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}


async def test_a_bounce_is_resolved_by_our_header_when_the_token_is_missing(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    original = reports.original_headers(mail.reference(SUB1))
    data = reports.dsn("bob@example.org", *HARD, original=original)
    assert (await bounce.send(FBL, data))[0] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, BOB, "OOB")
    assert "attribution" not in oob["meta"]
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}


async def test_a_header_naming_a_submission_of_several_never_suppresses_on_its_own(
    listen: ServiceFactory, mail: Mail
) -> None:
    """One recipient of a mailing holds our header too: a report it forged about
    another recipient of the same submission is recorded, marked, and suppresses no one."""
    bounce = await listen()
    original = reports.original_headers(mail.reference(SUB2))
    data = reports.dsn("carol@example.org", *HARD, original=original)
    assert (await bounce.send(FBL, data))[0] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, CAROL, "OOB")
    assert oob["meta"]["attribution"] == "unverified"
    assert await records_of(bounce.store, ALICE, "OOB") == []
    assert await bounce.store.list_suppressions(1, "", 10) == []


async def test_a_redacted_complaint_is_resolved_by_the_return_path_of_the_original(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    return_path = f"Return-Path: <{mail.return_path(CAROL)}>"
    original = reports.original_headers(mail.reference(SUB2), "hello@acme.test", return_path)
    assert (await bounce.send(FBL, reports.arf(original + "\r\n\r\nHello.\r\n", to=FBL)))[0] == 250
    [inbound] = await processed(bounce.store, 1)
    assert inbound.state is InboundState.DONE, inbound.reason
    assert len(await records_of(bounce.store, CAROL, "Feedback")) == 1
    assert await bounce.store.suppressed(1, ["carol@example.org", "alice@example.org"]) == {
        "carol@example.org"
    }


async def test_a_policy_bounce_is_recorded_without_suppressing(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    data = reports.dsn("bob@example.org", "failed", "5.7.1", "550 5.7.1 Blocked by policy")
    assert (await bounce.send(mail.return_path(BOB), data))[0] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, BOB, "OOB")
    assert oob["bounce_classification"] == "PolicyRelated"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()


async def test_a_rate_limited_delay_never_suppresses(listen: ServiceFactory, mail: Mail) -> None:
    bounce = await listen(soft_suppress_after=1)
    rcpt = mail.return_path(BOB)
    diagnostic = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail"
    limited = reports.dsn("bob@example.org", "delayed", "4.7.28", diagnostic)
    for n in (1, 2, 3):
        assert (await bounce.send(rcpt, limited))[0] == 250
        await processed(bounce.store, n)
    oobs = await records_of(bounce.store, BOB, "OOB")
    assert {r["bounce_classification"] for r in oobs} == {"RateLimited"}
    assert len(oobs) == 3
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()

    full = reports.dsn("bob@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full")
    assert (await bounce.send(rcpt, full))[0] == 250  # a soft bounce of the recipient's own
    await processed(bounce.store, 4)
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}


async def test_a_complaint_is_a_feedback_record_and_suppresses(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    assert (await bounce.send(FBL, reports.jmrp("Carol@Example.org", mail.reference(SUB2))))[
        0
    ] == 250
    await processed(bounce.store, 1)
    [feedback] = await records_of(bounce.store, CAROL, "Feedback")
    assert feedback["recipient"] == "carol@example.org"
    assert feedback["feedback_report"]["feedback_type"] == "abuse"
    assert await records_of(bounce.store, ALICE, "Feedback") == []
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert (suppression.address, suppression.reason) == ("carol@example.org", "complaint: abuse")


async def test_a_redacted_complaint_is_resolved_when_its_submission_has_one_recipient(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    original = reports.original_headers(mail.reference(SUB1)) + "\r\n\r\nHello.\r\n"
    assert (await bounce.send(FBL, reports.arf(original, to=FBL)))[0] == 250
    await processed(bounce.store, 1)
    [feedback] = await records_of(bounce.store, BOB, "Feedback")
    assert feedback["feedback_report"]["user_agent"] == "ExampleFBL/1.0"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == {"bob@example.org"}


async def test_a_redacted_complaint_about_several_recipients_is_kept_unmatched(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    original = reports.original_headers(mail.reference(SUB2)) + "\r\n\r\nHello.\r\n"
    assert (await bounce.send(FBL, reports.arf(original, to=FBL)))[0] == 250
    [inbound] = await processed(bounce.store, 1)
    assert inbound.state is InboundState.UNMATCHED
    assert "2 candidates" in inbound.reason
    assert await bounce.store.list_suppressions(1, "", 10) == []


async def test_an_auto_reply_is_recorded_and_never_suppresses(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen()
    assert (await bounce.send(mail.return_path(BOB), reports.auto_reply("bob@example.org")))[
        0
    ] == 250
    await processed(bounce.store, 1)
    [oob] = await records_of(bounce.store, BOB, "OOB")
    assert oob["bounce_classification"] == "AutoReply"
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()


async def test_soft_bounces_suppress_only_after_three_within_the_window(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen(soft_suppress_after=3, soft_window="7d")
    rcpt = mail.return_path(BOB)
    delayed = reports.dsn("bob@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full")

    async def soft(n: int) -> set[str]:
        assert (await bounce.send(rcpt, delayed))[0] == 250
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
    assert len(await records_of(bounce.store, BOB, "OOB")) == 5


async def test_a_tenant_may_suppress_after_fewer_soft_bounces_than_the_default(
    listen: ServiceFactory, mail: Mail
) -> None:
    bounce = await listen(
        tenants={"acme": {"soft_suppress_after": 1, "soft_window": "1d"}}, soft_suppress_after=3
    )
    delayed = reports.dsn("bob@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full")
    assert (await bounce.send(mail.return_path(BOB), delayed))[0] == 250
    await processed(bounce.store, 1)
    [suppression] = await bounce.store.list_suppressions(1, "", 10)
    assert suppression.address == "bob@example.org"
    assert suppression.reason.startswith("bounce: 1 soft bounces in 1d")


def altered(local_part: str) -> str:
    """``local_part`` with one character of its token changed."""
    position = len(local_part) // 2
    swapped = "a" if local_part[position] != "a" else "b"
    return local_part[:position] + swapped + local_part[position + 1 :]


@pytest.mark.parametrize("forgery", ["altered", "other key", "truncated", "unknown key id"])
async def test_a_forged_or_altered_token_is_not_trusted(
    listen: ServiceFactory, mail: Mail, forgery: str
) -> None:
    genuine = mail.codec.local_part(BOB)
    local = {
        "altered": lambda: altered(genuine),
        "other key": lambda: ReturnPathCodec({"a": secrets.token_bytes(32)}, "a").local_part(BOB),
        "truncated": lambda: genuine[:-2],
        "unknown key id": lambda: ReturnPathCodec(
            {"z": derive_key(mail.secret, "z")}, "z"
        ).local_part(BOB),
    }[forgery]()
    bounce = await listen()
    rcpt = f"{local}@{BOUNCE_DOMAIN}"
    assert (await bounce.send(rcpt, reports.dsn("bob@example.org", *HARD)))[0] == 250
    [inbound] = await processed(bounce.store, 1)
    assert inbound.state is InboundState.UNMATCHED
    assert "no valid return-path token" in inbound.reason
    assert await bounce.store.list_records(BOB) == []
    assert await bounce.store.suppressed(1, ["bob@example.org"]) == set()


async def test_unattributable_mail_is_kept_and_listed(
    listen: ServiceFactory, mail: Mail, store_url: str, tmp_path: Path
) -> None:
    bounce = await listen()
    forged = f"{altered(mail.codec.local_part(BOB))}@{BOUNCE_DOMAIN}"
    unknown = reports.original_headers(mail.reference("0190ffffffffffffffffffffffff"))
    not_ours = reports.original_headers(altered(mail.reference(SUB1)))
    assert (await bounce.send(forged, reports.dsn("bob@example.org", *HARD)))[0] == 250
    assert (await bounce.send(FBL, reports.dsn("x@example.org", *HARD, original=unknown)))[0] == 250
    assert (await bounce.send(FBL, reports.dsn("y@example.org", *HARD, original=not_ours)))[
        0
    ] == 250
    assert (await bounce.send(mail.return_path(BOB), reports.personal("bob@example.org")))[0] == 250
    found = await processed(bounce.store, 4)
    assert {m.state for m in found} == {InboundState.UNMATCHED}
    reasons = sorted(m.reason for m in found)
    assert reasons[0].startswith("X-Penguin-Ref names unknown 0190ffff"), reasons
    assert reasons[1].startswith("X-Penguin-Ref not ours: "), reasons
    assert reasons[2].startswith("no valid return-path token"), reasons
    assert reasons[3] == "not a bounce, complaint or auto-reply"
    assert await bounce.store.list_records(BOB) == []

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
    assert len(shown) == 4
    assert {m["reason"] for m in shown} == {m.reason for m in found}
    assert all(m["peer"] == "127.0.0.1" for m in shown)
    assert {m["subject"] for m in shown} == {"Undelivered Mail Returned to Sender", "failure"}


@pytest.mark.parametrize(
    ("rcpt", "code", "enhanced"),
    [
        ("someone@example.org", 550, "5.7.1"),  # a foreign domain: never a relay
        (f"hello@{TENANT_DOMAIN}", 550, "5.7.1"),  # the tenant's own domain is not ours
        ("{token}@" + TENANT_DOMAIN, 550, "5.7.1"),
        (f"postmaster@{BOUNCE_DOMAIN}", 550, "5.1.1"),  # not a token
        (f"fbl@{BOUNCE_DOMAIN}", 550, "5.1.1"),
        ("{token}@bounces.other.test", 550, "5.7.1"),
    ],
)
async def test_only_bounce_and_feedback_addresses_are_accepted(
    listen: ServiceFactory, mail: Mail, rcpt: str, code: int, enhanced: str
) -> None:
    rcpt = rcpt.format(token=mail.codec.local_part(BOB))
    bounce = await listen()
    async with bounce.client() as client:
        await client.ehlo()
        await client.mail("")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt(rcpt)
    assert refused.value.code == code
    assert refused.value.message.startswith(enhanced)

    async def rejections() -> list[dict[str, Any]]:
        records = [r for _, r in await bounce.store.records_after(0, 100)]
        return [r for r in records if r["type"] == "Rejection"]

    await wait_for(lambda: _nonempty(rejections()), "the Rejection record")
    [rejection] = await rejections()
    assert rejection["recipient"] == rcpt
    assert rejection["response"]["code"] == code
    assert rejection["meta"] == {"listener": "bounce"}


async def _nonempty(items: Awaitable[list[Any]]) -> bool:
    return bool(await items)


async def test_auth_is_not_offered(listen: ServiceFactory) -> None:
    bounce = await listen()
    async with bounce.client() as client:
        await client.ehlo()
        assert not client.supports_extension("auth")
        assert client.supports_extension("starttls")


async def test_oversize_mail_is_refused_with_552(listen: ServiceFactory, mail: Mail) -> None:
    bounce = await listen(max_message_bytes=2048)
    async with bounce.client() as client:
        await client.ehlo()
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("", options=["SIZE=100000"])
        assert refused.value.code == 552
        await client.mail("")
        await client.rcpt(mail.return_path(BOB))
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


async def test_starttls_with_a_generated_certificate(listen: ServiceFactory, mail: Mail) -> None:
    bounce = await listen()
    async with aiosmtplib.SMTP(
        hostname="localhost", port=bounce.port, timeout=10, start_tls=False, use_tls=False
    ) as client:
        await client.ehlo()
        await client.starttls(tls_context=bounce.tls_client)
        assert client.get_transport_info("sslcontext") is not None
        await client.ehlo()
        await client.mail("")
        await client.rcpt(mail.return_path(BOB))
        reply = await client.data(reports.dsn("bob@example.org", *HARD))
    assert reply.code == 250
    await processed(bounce.store, 1)
    assert await records_of(bounce.store, BOB, "OOB")


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


async def test_250_only_once_committed_else_451(
    listen: ServiceFactory, store: Store, mail: Mail
) -> None:
    failing = FailingCommits(store)
    bounce = await listen(store=failing)
    data = reports.dsn("bob@example.org", *HARD)
    code, _ = await bounce.send(mail.return_path(BOB), data)
    assert code == 451
    assert await store.list_inbound(InboundState.PENDING, 10) == []
    assert await store.list_records(BOB) == []

    failing.failing = False
    code, text = await bounce.send(mail.return_path(BOB), data)
    assert code == 250
    queued_as = text.rsplit(" ", 1)[-1]
    [stored] = await processed(store, 1)
    assert stored.id == queued_as
    assert stored.data.rstrip(b"\r\n") == data.rstrip(b"\r\n")
    assert await records_of(store, BOB, "OOB")


async def test_processing_the_same_message_twice_stores_once(
    store: Store, mail: Mail, tmp_path: Path
) -> None:
    rcpt = mail.return_path(BOB)
    data = reports.dsn("bob@example.org", *HARD)
    await store.accept_inbound([InboundMessage("in-1", T0, "127.0.0.1", "", (rcpt,), data)])
    clock = FakeClock(T0)
    settings = settings_of(tmp_path)
    parts = bounce_parts(settings, mail.secret, BounceClassifier())
    intake = Intake(
        store=store,
        parse=parts.parse,
        return_paths=parts.return_paths,
        policies=tenant_policies(settings),
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
    assert len(await records_of(store, BOB, "OOB")) == 1
    assert len(await store.list_suppressions(1, "", 10)) == 1
