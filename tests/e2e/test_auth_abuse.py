"""AUTH failures from one client IP are slowed, then refused; attempts in flight
count, a valid login clears no failures naming another username, and guesses at
one username from many client IPs are paced."""

from __future__ import annotations

import smtplib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.e2e.conftest import EngineProcess, client_tls, provision, start_engine, write_config

ATTACKER = ("127.0.0.66", 0)
BYSTANDER = ("127.0.0.67", 0)
PARALLEL = 60


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


def attempt_or_refusal(
    engine: EngineProcess, user: str, password: str, source: tuple[str, int]
) -> int:
    """The AUTH reply code, or the code of a refusal at connect."""
    try:
        return attempt(engine, user, password, source)
    except smtplib.SMTPConnectError as exc:
        return exc.smtp_code


def test_failures_are_slowed_then_refused(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        extra="auth_failure_delay_after = 2\nauth_failure_refuse_after = 4\n"
        "auth_failure_max_delay_seconds = 2\n",
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


def test_parallel_attempts_check_no_more_passwords_than_the_limit(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        extra="auth_failure_delay_after = 5\nauth_failure_refuse_after = 5\n"
        "auth_failure_max_delay_seconds = 1\n",
    )
    account = provision(config)
    engine = start_engine(engine_factory, config)

    def together(passwords: list[str], source: tuple[str, int]) -> list[int]:
        """AUTH with each password on its own connection, all sent at once."""
        ready = threading.Barrier(len(passwords))

        def login(password: str) -> int:
            with smtplib.SMTP(*engine.submission, timeout=60, source_address=source) as client:
                client.starttls(context=client_tls())
                client.ehlo()
                client.user, client.password = account.username, password
                ready.wait(timeout=60)
                try:
                    code, _ = client.auth("PLAIN", client.auth_plain)
                except smtplib.SMTPAuthenticationError as exc:
                    return exc.smtp_code
            return code

        with ThreadPoolExecutor(len(passwords)) as pool:
            return list(pool.map(login, passwords))

    # Attempts beyond the limit wait for those in flight: valid ones all succeed.
    assert together([account.password] * 20, BYSTANDER) == [235] * 20

    codes = together([f"guess{i}" for i in range(PARALLEL)], ATTACKER)
    # Every 535 is a password checked; the others were refused unchecked.
    assert codes.count(535) == 5
    assert codes.count(454) == PARALLEL - 5


def test_a_valid_login_buys_no_guesses_at_another_account(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        extra="auth_failure_delay_after = 4\nauth_failure_refuse_after = 4\n"
        "auth_failure_max_delay_seconds = 1\n",
    )
    own = provision(config)
    victim = provision(config, tenant="globex", domain="mail.globex.test")
    engine = start_engine(engine_factory, config)

    logins, guesses = [], []
    for _ in range(12):
        logins.append(attempt_or_refusal(engine, own.username, own.password, ATTACKER))
        guesses.append(attempt_or_refusal(engine, victim.username, "guess", ATTACKER))

    assert guesses.count(535) == 4
    assert set(guesses[4:]) == {421}
    assert logins[:4] == [235] * 4
    assert set(logins[4:]) == {421}
    assert attempt(engine, victim.username, victim.password, BYSTANDER) == 235


def test_guesses_at_one_username_from_many_clients_are_paced(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        extra="auth_failure_delay_after = 3\nauth_failure_refuse_after = 3\n"
        "auth_failure_max_delay_seconds = 2\n",
    )
    victim = provision(config)
    engine = start_engine(engine_factory, config)

    timings = []
    for i in range(5):  # each guess from a client IP of its own
        started = time.monotonic()
        assert attempt(engine, victim.username, "guess", (f"127.0.1.{i + 1}", 0)) == 535
        timings.append(time.monotonic() - started)
    # From the third failure naming the username on, each guess holds its turn 2 s,
    # although no client IP has more than one failure.
    assert min(timings[2:]) >= 2.0
    # Paced, not locked: the owner still logs in.
    assert attempt(engine, victim.username, victim.password, BYSTANDER) == 235
