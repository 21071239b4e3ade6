"""Repeated AUTH failures from one client IP are slowed, then refused."""

from __future__ import annotations

import smtplib
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import EngineProcess, client_tls, provision, start_engine, write_config

ATTACKER = ("127.0.0.66", 0)
BYSTANDER = ("127.0.0.67", 0)


def attempt(engine: EngineProcess, user: str, password: str, source: tuple[str, int]) -> int:
    with smtplib.SMTP(*engine.submission, timeout=30, source_address=source) as client:
        client.starttls(context=client_tls())
        client.ehlo()
        client.user, client.password = user, password
        try:
            code, _ = client.auth("PLAIN", client.auth_plain)
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code
    return code


def test_failures_are_slowed_then_refused(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        extra="auth_failure_delay_after = 2\nauth_failure_refuse_after = 4\n",
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)

    timings = []
    for _ in range(3):
        started = time.monotonic()
        assert attempt(engine, account.username, "guess", ATTACKER) == 535
        timings.append(time.monotonic() - started)
    assert timings[0] < 1.0
    assert timings[1] >= 1.0 and timings[2] >= 2.0

    assert attempt(engine, account.username, "guess", ATTACKER) == 535
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        attempt(engine, account.username, account.password, ATTACKER)
    assert refused.value.smtp_code == 421

    assert attempt(engine, account.username, account.password, BYSTANDER) == 235
