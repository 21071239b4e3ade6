"""Acceptance is durable: SIGKILL right after the 250s loses no accepted recipient."""

from __future__ import annotations

import asyncio
import signal
import smtplib
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from engine.store import open_store
from tests.e2e.conftest import (
    EngineProcess,
    client_tls,
    message,
    penguin,
    provision,
    start_engine,
    submit,
    write_config,
)

CLIENTS = 8
MESSAGES_PER_CLIENT = 6
RECIPIENTS = 3


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'var' / 'penguin.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_sigkill_after_250_loses_nothing(
    tmp_path: Path, database_url: str, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path, database_url)
    account = provision(config)
    engine = start_engine(engine_factory, config, "submission")

    def client(n: int) -> list[str]:
        return [
            submit(
                engine.submission,
                account,
                [f"r{n}-{i}-{k}@example.com" for k in range(RECIPIENTS)],
            )
            for i in range(MESSAGES_PER_CLIENT)
        ]

    with ThreadPoolExecutor(CLIENTS) as pool:
        accepted = [qid for ids in pool.map(client, range(CLIENTS)) for qid in ids]
    engine.kill()

    assert len(set(accepted)) == CLIENTS * MESSAGES_PER_CLIENT
    restarted = start_engine(engine_factory, config, "submission")
    states = asyncio.run(submission_states(database_url, accepted))
    assert states == {queue_id: ["queued"] * RECIPIENTS for queue_id in accepted}
    shown = penguin(config, "queue", "show", accepted[-1])
    assert [m["state"] for m in shown] == ["queued"] * RECIPIENTS
    summary = penguin(config, "queue", "summary")
    assert sum(r["count"] for r in summary) == CLIENTS * MESSAGES_PER_CLIENT * RECIPIENTS
    assert restarted.terminate() == 0


async def submission_states(database_url: str, queue_ids: list[str]) -> dict[str, list[str]]:
    """The states of each submission's messages, read from the store."""
    store = open_store(database_url)
    try:
        return {
            queue_id: [m.state.value for m in await store.list_submission(queue_id)]
            for queue_id in queue_ids
        }
    finally:
        await store.close()


def test_sigterm_lets_an_in_flight_session_finish(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path)
    account = provision(config)
    engine = start_engine(engine_factory, config, "submission")
    assert engine.process is not None
    client = smtplib.SMTP(*engine.submission, timeout=30)
    try:
        client.starttls(context=client_tls())
        client.login(account.username, account.password)
        client.mail(f"news@{account.domain}")
        client.rcpt("late@example.com")
        engine.process.send_signal(signal.SIGTERM)
        wait_until_refused(engine.submission)
        code, reply = client.data(message(f"news@{account.domain}"))
        assert code == 250, reply
        code, _ = client.docmd("NOOP")
        assert code == 421
    finally:
        client.close()
    assert engine.process.wait(timeout=30) == 0
    queue_id = reply.decode().rsplit(" ", 1)[-1]
    assert penguin(config, "queue", "show", queue_id)[0]["state"] == "queued"


def wait_until_refused(address: tuple[str, int], timeout: float = 15.0) -> None:
    """Until the listener no longer accepts connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=1).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError("listener still accepting after SIGTERM")
