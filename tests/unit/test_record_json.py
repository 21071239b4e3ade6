"""Log records keep KumoMTA's JSON, byte for byte, whatever reply they carry."""

from __future__ import annotations

import random
from pathlib import Path

from config.schema import RetrySettings
from engine.delivery.outcome import Outcome, OutcomeKind, Scope
from engine.delivery.queue_admin import removal_record
from engine.delivery.settling import RecordContext, expire_unattempted, settle_attempt, shunt
from engine.delivery.transport import AttemptReport
from engine.records.record import Record, RecordType
from engine.smtp.reply import Reply, Stage
from tests.unit.test_settling import T0, message

GOLDEN = Path(__file__).parent / "golden" / "records.jsonl"
RETRY = RetrySettings(
    first_retry_seconds=1200, max_retry_seconds=28800, jitter=0.0, max_age_seconds=86400
)
CONTEXT = RecordContext(nodeid="n1", tenant="acme")
MESSAGE = message(attempts=1)
ATTEMPTS = [
    (OutcomeKind.DELIVERED, Reply(250, "2.0.0", "Ok: queued as 42", Stage.DOT), "Uncategorized"),
    (OutcomeKind.PERMANENT, Reply(550, "5.1.1", "user unknown", Stage.RCPT), "InvalidRecipient"),
    (OutcomeKind.TRANSIENT, Reply(421, "", "busy", Stage.GREETING), "TransientFailure"),
    (OutcomeKind.PERMANENT, Reply(550, "5.1.2", "no such domain", Stage.DNS), "DNSFailure"),
]


def attempt_record(kind: OutcomeKind, reply: Reply, classification: str) -> Record:
    report = AttemptReport(
        outcome=Outcome(kind, Scope.RECIPIENT, reply, classification),
        site="mx.example.com",
        peer_name="mx.example.com",
        peer_address="127.0.0.2",
        source="default",
        source_address="127.0.0.5",
        tls_cipher="TLS_AES_256_GCM_SHA384",
        tls_version="TLSv1.3",
    )
    _, record = settle_attempt(
        MESSAGE,
        report,
        lease_token="t1",
        now=T0 + 5,
        size=2048,
        retry=RETRY,
        rng=random.Random(1),
        context=CONTEXT,
    )
    return record


def rejection_record() -> Record:
    return Record(
        type=RecordType.REJECTION,
        timestamp=T0,
        tenant_id=3,
        sender="a@x.example",
        response=Reply(530, "5.7.0", "Authentication required"),
        command="MAIL FROM:<a@x.example>",
        peer_address=("client.test", "127.0.0.1"),
        reception_protocol="ESMTP",
        nodeid="n1",
        session_id="sess",
    )


def test_records_match_the_golden_json_lines() -> None:
    records = [
        *(attempt_record(*attempt) for attempt in ATTEMPTS),
        expire_unattempted(MESSAGE, lease_token="t1", now=T0 + 5, context=CONTEXT)[1],
        shunt(MESSAGE, lease_token="t1", now=T0 + 5, error="KeyError: 'd'", context=CONTEXT)[1],
        removal_record(MESSAGE, now=T0 + 5, context=CONTEXT),
        rejection_record(),
    ]
    golden = GOLDEN.read_text(encoding="utf-8").splitlines()
    assert [record.to_json_line() for record in records] == golden
