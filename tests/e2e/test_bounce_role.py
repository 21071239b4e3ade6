"""The bounce listener as a role of ``penguin run``: alone, and in the default layout.

A process started with ``--role bounce`` serves only the bounce listener on
the store (no submission, no admin listener); the default role ``all``
serves it too, also when split into accepting and delivering processes. A
message it accepts is kept, and what nothing can be attributed to is listed
by ``penguin bounce unmatched``.
"""

from __future__ import annotations

import smtplib
from pathlib import Path

from tests.e2e.conftest import (
    EngineProcess,
    penguin,
    start_engine,
    wait_for,
    write_config,
)

FBL = "fbl@bounces.example.test"


def send(address: tuple[str, int], rcpt: str) -> None:
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo("mx.example.org")
        client.sendmail("", [rcpt], b"From: someone@example.org\r\nSubject: hi\r\n\r\nhello\r\n")


def unmatched(config: Path) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = penguin(config, "--json", "bounce", "unmatched")
    return listed


def test_a_bounce_only_process_accepts_and_keeps_mail(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(tmp_path, bounce=f'feedback_addresses = ["{FBL}"]\npoll_seconds = 0.2')
    engine = start_engine(engine_factory, config, role="bounce")
    output = "".join(engine.output)
    assert engine.bounce[1] > 0
    assert "submission listening" not in output and "admin listening" not in output

    send(engine.bounce, FBL)
    with smtplib.SMTP(*engine.bounce, timeout=10) as client:
        client.ehlo("mx.example.org")
        client.mail("")
        code, _ = client.rcpt("someone@example.org")
        assert code == 550  # never a relay
    wait_for(lambda: len(unmatched(config)) == 1, what="the message kept unmatched")
    [kept] = unmatched(config)
    assert kept["rcpt_tos"] == [FBL]
    assert kept["subject"] == "hi"
    assert engine.terminate() == 0


def test_the_default_layout_serves_the_bounce_listener(
    tmp_path: Path, engine_factory: list[EngineProcess]
) -> None:
    config = write_config(
        tmp_path,
        engine="processes = 1\ndelivery_processes = 1",
        bounce=f'feedback_addresses = ["{FBL}"]\npoll_seconds = 0.2',
    )
    engine = start_engine(engine_factory, config)
    assert engine.submission[1] > 0 and engine.bounce[1] > 0
    send(engine.bounce, FBL)
    wait_for(lambda: len(unmatched(config)) == 1, what="the message kept unmatched")
    assert engine.terminate() == 0
