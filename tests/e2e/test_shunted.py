"""Shunted messages from the CLI: listed with their error, requeued and delivered, or deleted.

A message is shunted for real: the engine runs with an engine secret that
does not open the sending domain's DKIM key (as after a secret was replaced
without resealing), so signing breaks. With the right secret back, the
operator requeues (``penguin queue requeue``, as Postfix's ``postsuper -r``)
or deletes (``penguin queue delete``) them.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import dkim

from tests.e2e.conftest import (
    PENGUIN,
    EngineProcess,
    Receivers,
    dkim_lookup,
    penguin,
    penguin_lines,
    provision,
    start_engine,
    submit,
    wait_for,
)


def swap_secret(config: Path, secret: bytes) -> bytes:
    """Put ``secret`` in the engine secret file; the one it held."""
    path = config.parent / "var" / "secret.key"
    held = path.read_bytes()
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(secret)
    return held


def test_shunted_messages_are_listed_requeued_and_delivered_or_deleted(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(tmp_path)
    account = provision(config)
    receivers.publish(account)
    secret = swap_secret(config, secrets.token_bytes(32))
    engine = start_engine(engine_factory, config)
    first = submit(engine.submission, account, ["one@example.com", "two@example.org"])
    later = submit(engine.submission, account, ["three@example.net"])

    def shunted() -> list[dict[str, object]]:
        listed: list[dict[str, object]] = penguin(config, "queue", "shunted")
        return listed

    wait_for(lambda: len(shunted()) == 3, timeout=30, what="three shunted messages")
    assert {m["id"] for m in shunted()} == {f"{first}-1", f"{first}-2", f"{later}-1"}
    assert all("SealError" in str(m["last_error"]) for m in shunted())
    shown = penguin(config, "queue", "show", f"{first}-1")
    assert shown["state"] == "shunted" and "SealError" in shown["last_error"]
    assert shown["records"][-1]["type"] == "Shunted"
    assert "SealError" in shown["records"][-1]["response"]["content"]
    assert receivers.sink.messages == []
    assert engine.terminate() == 0

    swap_secret(config, secret)
    start_engine(engine_factory, config)
    assert penguin(config, "queue", "requeue", f"{first}-1") == {"requeued": [f"{first}-1"]}
    [copy] = receivers.sink.wait_for_count(1, timeout=30)
    assert copy.rcpt_tos == ("one@example.com",)
    assert dkim.verify(copy.data, dnsfunc=dkim_lookup(receivers.dns.address))

    def state(message_id: str) -> str:
        shown: str = penguin(config, "queue", "show", message_id)["state"]
        return shown

    wait_for(lambda: state(f"{first}-1") == "delivered", what="the requeued message delivered")
    records = penguin(config, "queue", "show", f"{first}-1")["records"]
    assert [r["type"] for r in records] == ["Reception", "Shunted", "AdminRequeue", "Delivery"]
    assert records[2]["num_attempts"] == 0 and records[3]["num_attempts"] == 1

    assert penguin(config, "queue", "delete", first) == {"removed": [f"{first}-2"]}
    assert [m["id"] for m in penguin(config, "queue", "show", first)] == [f"{first}-1"]
    removal = [r for r in penguin_lines(config, "records", "tail") if r["id"] == f"{first}-2"]
    assert removal[-1]["type"] == "AdminBounce"
    assert removal[-1]["response"]["code"] == 551

    assert penguin(config, "queue", "requeue", "--all-shunted") == {"requeued": [f"{later}-1"]}
    receivers.sink.wait_for_count(2, timeout=30)
    assert penguin(config, "queue", "shunted") == []
    wait_for(lambda: state(f"{later}-1") == "delivered", what="the last one delivered")
    assert sorted(r for m in receivers.sink.messages for r in m.rcpt_tos) == [
        "one@example.com",
        "three@example.net",
    ]

    refused = subprocess.run(
        [*PENGUIN, "queue", "requeue", f"{first}-1", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert "nothing shunted (found: delivered)" in refused.stderr
