"""Bounces and complaints close the loop: delivered mail comes back and is suppressed.

A tenant sends two messages through submission; the sink records each
copy's envelope sender (its signed return path). A receiver then sends the
engine's bounce listener an RFC 3464 DSN for the first, to its return path
(``MAIL FROM:<>``), and a feedback loop an ARF abuse report about the
second, to the configured feedback address, the delivered copy attached with
our ``X-Penguin-Ref`` header. The engine records an OOB and a Feedback
record on the original messages, puts both addresses on the tenant's
suppression list, and a later submission to the bounced address is
accepted but never queued.
"""

from __future__ import annotations

import smtplib
from pathlib import Path
from typing import Any

from tests.e2e.conftest import (
    EngineProcess,
    Receivers,
    penguin,
    provision,
    start_engine,
    submit,
    wait_for,
)
from tests.harness import bounce_reports as reports
from tests.harness.smtp_sink import ReceivedMessage

FBL = "fbl@feedback.penguin.test"
GONE = "gone@example.com"
ANGRY = "angry@example.org"


def report(address: tuple[str, int], rcpt: str, data: bytes) -> None:
    """``data`` to the bounce listener as a receiving MTA sends it: null sender, one RCPT."""
    with smtplib.SMTP(*address, timeout=10) as client:
        client.ehlo("mx.example.org")
        assert client.sendmail("", [rcpt], data) == {}


def header_section(copy: ReceivedMessage) -> str:
    return copy.data.decode().split("\r\n\r\n", 1)[0]


def records(config: Path, message_id: str, kind: str) -> list[dict[str, Any]]:
    shown = penguin(config, "queue", "show", message_id)
    return [r for r in shown["records"] if r["type"] == kind]


def test_a_bounce_and_a_complaint_suppress_their_recipients(
    tmp_path: Path, receivers: Receivers, engine_factory: list[EngineProcess]
) -> None:
    config = receivers.config(
        tmp_path, bounce=f'feedback_addresses = ["{FBL}"]\npoll_seconds = 0.2'
    )
    account = provision(config)
    receivers.publish(account)
    engine = start_engine(engine_factory, config)
    first = submit(engine.submission, account, [GONE])
    second = submit(engine.submission, account, [ANGRY])
    copies = {c.rcpt_tos[0]: c for c in receivers.sink.wait_for_count(2, timeout=30)}
    bounced, complained = copies[GONE], copies[ANGRY]
    assert bounced.mail_from.endswith(f"@bounces.{account.domain}")
    assert "X-Penguin-Ref: " in header_section(complained)

    dsn = reports.dsn(
        GONE,
        "failed",
        "5.1.1",
        f"550 5.1.1 <{GONE}>: Recipient address rejected: User unknown",
        to=bounced.mail_from,
        original=header_section(bounced),
    )
    report(engine.bounce, bounced.mail_from, dsn)
    report(engine.bounce, FBL, reports.arf(complained.data.decode(), to=FBL))

    wait_for(lambda: bool(records(config, f"{first}-1", "OOB")), 30, "the OOB record")
    [oob] = records(config, f"{first}-1", "OOB")
    assert (oob["recipient"], oob["bounce_classification"]) == (GONE, "InvalidRecipient")
    wait_for(lambda: bool(records(config, f"{second}-1", "Feedback")), 30, "the Feedback record")
    [feedback] = records(config, f"{second}-1", "Feedback")
    assert feedback["recipient"] == ANGRY
    assert feedback["feedback_report"]["feedback_type"] == "abuse"

    listed = penguin(config, "suppression", "list", account.tenant)
    assert {s["address"]: s["reason"] for s in listed} == {
        GONE: "bounce: 5.1.1 InvalidRecipient",
        ANGRY: "complaint: abuse",
    }

    third = submit(engine.submission, account, [GONE])
    [shown] = penguin(config, "queue", "show", third)
    assert shown["state"] == "suppressed"
    assert [r["type"] for r in shown["records"]] == ["Reception", "Suppressed"]
    assert engine.terminate() == 0
    assert receivers.sink.count_for(GONE) == 1
