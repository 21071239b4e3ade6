"""Priority at acceptance, over real sockets: X-Priority-Class, else the tenant's or
the campaign's default from the config, stored with each message; the header is
not kept in the stored body."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.store import open_store
from tests.e2e.conftest import EngineProcess, message, penguin, provision, submit, write_config

pytestmark = pytest.mark.slow

TABLES = (
    '[tenants.acme]\npriority = "bulk"\n[campaigns."acme:alerts"]\npriority = "transactional"\n'
)


async def stored_body(config: Path, submission_id: str) -> bytes:
    store = open_store(f"sqlite:{config.parent / 'var' / 'penguin.db'}")
    try:
        body = await store.get_body(submission_id)
    finally:
        await store.close()
    assert body is not None
    return body


async def test_priorities_come_from_the_header_or_the_config(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path, tables=TABLES)
    account = provision(config)
    engine = EngineProcess(config, "submission")
    engine_factory.append(engine)
    engine.start()
    sender = f"news@{account.domain}"
    cases = [
        ("", 0),
        ("X-Campaign: alerts\r\n", 9),
        ("X-Campaign: alerts\r\nX-Priority-Class: bulk\r\n", 0),
        ("X-Priority-Class: 6\r\n", 6),
        ("X-Priority-Class: urgent\r\n", 0),
    ]
    for extra, priority in cases:
        queue_id = submit(
            engine.submission, account, ["a@example.com"], message(sender, extra=extra)
        )
        shown = penguin(config, "queue", "show", f"{queue_id}-1")
        assert shown["priority"] == priority, extra
        head = (await stored_body(config, queue_id)).split(b"\r\n\r\n", 1)[0]
        assert b"x-priority-class" not in head.lower()
