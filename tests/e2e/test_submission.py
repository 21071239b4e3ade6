"""A tenant's client submits over STARTTLS + AUTH; the engine queues per recipient."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiosmtplib
import pytest

from tests.e2e.conftest import (
    PENGUIN,
    Account,
    EngineProcess,
    client_tls,
    message,
    penguin,
    provision,
    read_records,
    submit,
    wait_for,
    write_config,
)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EngineProcess, Account]]:
    tmp = tmp_path_factory.mktemp("submission")
    config = write_config(tmp)
    account = provision(config)
    engine = EngineProcess(config, "submission")
    engine.start()
    try:
        yield engine, account
    finally:
        engine.close()


def test_submission_queues_one_message_per_recipient(
    running: tuple[EngineProcess, Account],
) -> None:
    engine, account = running
    recipients = ["a@example.com", "b@example.com", "c@example.org"]
    body = message(f"News <news@{account.domain}>", extra="X-Campaign: spring\r\n")
    queue_id = submit(engine.submission, account, recipients, body)

    shown = penguin(engine.config, "queue", "show", queue_id)
    assert sorted(m["recipient"] for m in shown) == recipients
    assert {m["state"] for m in shown} == {"queued"}
    assert {m["queue"] for m in shown} == {"spring:acme@example.com", "spring:acme@example.org"}
    assert all(m["records"][0]["type"] == "Reception" for m in shown)

    summary = penguin(engine.config, "queue", "summary")
    counts = {(r["queue"], r["state"]): r["count"] for r in summary}
    assert counts[("spring:acme@example.com", "queued")] >= 2
    assert counts[("spring:acme@example.org", "queued")] >= 1

    one = penguin(engine.config, "queue", "show", f"{queue_id}-1")
    assert one["recipient"] == "a@example.com"
    assert one["sender"] == f"news@{account.domain}"


async def test_an_independent_client_submits_over_starttls_and_auth(
    running: tuple[EngineProcess, Account],
) -> None:
    """aiosmtplib, a client we did not write: EHLO, STARTTLS, EHLO, AUTH, one transaction."""
    engine, account = running
    sender = f"news@{account.domain}"
    recipients = ["interop1@example.com", "interop2@example.org"]
    host, port = engine.submission
    async with aiosmtplib.SMTP(
        hostname=host, port=port, start_tls=False, local_hostname="aiosmtplib.test", timeout=30
    ) as client:
        await client.ehlo()
        assert client.supports_extension("starttls")
        assert not client.supports_extension("auth")
        await client.starttls(tls_context=client_tls())
        assert client.get_transport_info("cipher") is not None
        await client.ehlo()
        for keyword in ("auth", "pipelining", "8bitmime", "enhancedstatuscodes"):
            assert client.supports_extension(keyword), keyword
        await client.login(account.username, account.password)
        refused, reply = await client.sendmail(sender, recipients, message(sender))
    assert refused == {}
    queue_id = reply.rsplit(" ", 1)[-1]
    shown = penguin(engine.config, "queue", "show", queue_id)
    assert sorted(m["recipient"] for m in shown) == recipients
    assert {m["sender"] for m in shown} == {sender}
    assert {m["state"] for m in shown} == {"queued"}


def test_suppressed_recipient_is_accepted_but_not_queued(
    running: tuple[EngineProcess, Account],
) -> None:
    engine, account = running
    penguin(engine.config, "suppression", "add", account.tenant, "Gone@Example.com")
    queue_id = submit(engine.submission, account, ["gone@example.com", "here@example.com"])
    shown = {m["recipient"]: m for m in penguin(engine.config, "queue", "show", queue_id)}
    assert shown["gone@example.com"]["state"] == "suppressed"
    assert [r["type"] for r in shown["gone@example.com"]["records"]] == [
        "Reception",
        "Suppressed",
    ]
    assert shown["here@example.com"]["state"] == "queued"


def test_records_reach_the_json_log(running: tuple[EngineProcess, Account]) -> None:
    engine, account = running
    queue_id = submit(engine.submission, account, ["log@example.com"])
    lines = read_records(engine.config)
    mine = [r for r in lines if r["id"] == f"{queue_id}-1"]
    assert [r["type"] for r in mine] == ["Reception"]
    assert mine[0]["reception_protocol"] == "ESMTPSA"
    assert mine[0]["meta"]["tenant"] == "acme"
    assert mine[0]["tls_protocol_version"].startswith("TLS")


def test_without_auth_every_recipient_is_refused(running: tuple[EngineProcess, Account]) -> None:
    engine, _ = running
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.starttls(context=client_tls())
        client.ehlo("stranger.example")
        code, _ = client.mail("anyone@example.net")
        assert code == 530
        code, _ = client.rcpt("victim@example.com")
        assert code == 503
    summary = penguin(engine.config, "queue", "summary")
    assert not any("example.net" in r["queue"] for r in summary)

    def rejected() -> bool:
        return any(
            r["type"] == "Rejection"
            and r["response"]["code"] == 530
            and r["sender"] == "anyone@example.net"
            and r["peer_address"]["name"] == "stranger.example"
            for r in read_records(engine.config)
        )

    wait_for(rejected, what="a Rejection record for the unauthenticated MAIL")


def test_a_refused_pipelined_transaction_is_recorded_once(
    running: tuple[EngineProcess, Account],
) -> None:
    engine, account = running
    with smtplib.SMTP(*engine.submission, local_hostname="pipeliner.example", timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.send(b"MAIL FROM:<ceo@bank.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n")
        assert [client.getreply()[0] for _ in range(3)] == [550, 503, 503]
        client.rset()
        code, _ = client.rcpt("b@example.com")
        assert code == 503

    def refusals() -> list[tuple[str, str | None, str | None, int]]:
        return [
            (r["response"]["command"], r["sender"], r["recipient"], r["response"]["code"])
            for r in read_records(engine.config)
            if r["type"] == "Rejection" and r["peer_address"]["name"] == "pipeliner.example"
        ]

    wait_for(lambda: len(refusals()) >= 2, what="the Rejection records of the session")
    assert refusals() == [
        ("MAIL FROM:<ceo@bank.example>", "ceo@bank.example", None, 550),
        ("RCPT TO:<b@example.com>", None, None, 503),
    ]


def test_auth_is_not_offered_before_tls(running: tuple[EngineProcess, Account]) -> None:
    engine, _ = running
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.ehlo("client.example")
        assert not client.has_extn("auth")
        assert client.has_extn("starttls")
        code, _ = client.docmd("AUTH", "PLAIN AGFjbWUAeA==")
        assert code == 538
        client.starttls(context=client_tls())
        client.ehlo("client.example")
        assert client.has_extn("auth")
        for keyword in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8"):
            assert client.has_extn(keyword), keyword


@pytest.mark.parametrize(
    ("recipient", "refusal"),
    [  # as the README lists them
        ("user%victim.example@example.com", "553 5.1.3"),
        ("a!b@example.com", "553 5.1.3"),
        ('"x@victim.example"@example.com', "553 5.1.3"),
        ("@relay.example:user@victim.example", "501 5.1.3"),
        ("user@[127.0.0.1]", "553 5.1.2"),
    ],
)
def test_relay_tricks_gain_nothing(
    running: tuple[EngineProcess, Account], recipient: str, refusal: str
) -> None:
    engine, account = running
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.mail(f"news@{account.domain}")
        code, reply = client.rcpt(recipient)
        assert f"{code} {reply.decode()[:5]}" == refusal


def test_sender_and_header_from_must_be_sending_domains(
    running: tuple[EngineProcess, Account],
) -> None:
    engine, account = running
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        code, reply = client.mail("ceo@bank.example")
        assert (code, reply[:5]) == (550, b"5.7.1")
        client.rset()
        client.mail(f"news@{account.domain}")
        client.rcpt("a@example.com")
        code, reply = client.data(message("ceo@bank.example"))
        assert (code, reply[:5]) == (550, b"5.7.1")


def test_wrong_password_gets_535(running: tuple[EngineProcess, Account]) -> None:
    engine, account = running
    with smtplib.SMTP(*engine.submission, timeout=30) as client:
        client.starttls(context=client_tls())
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login(account.username, "wrong")
        assert err.value.smtp_code == 535


def test_cli_config_check_reports_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[submission]\nmax_recipients = -1\n")
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "config", "check", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"{bad}: submission.max_recipients: expected at least 1" in done.stderr
    good = write_config(tmp_path)
    assert penguin(good, "config", "check")["ok"] is True


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("key", ["submission.listen", "admin.listen"])
def test_an_address_in_use_is_a_config_error(tmp_path: Path, key: str, processes: int) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{taken.getsockname()[1]}"
    config = write_config(tmp_path, engine=f"processes = {processes}")
    text = config.read_text()
    if key == "admin.listen":
        config.write_text(text.replace('listen = "127.0.0.1:0"', f'listen = "{address}"'))
    else:
        config.write_text(text.replace('listen = ["127.0.0.1:0"]', f'listen = ["{address}"]'))
    with taken:
        done = subprocess.run(
            [*PENGUIN, "run", "--config", str(config)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 1
    assert f"config error: {config}: {key}: cannot listen on {address}" in done.stderr
