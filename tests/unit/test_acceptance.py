import random
from email.utils import getaddresses

import pytest

from config.loader import parse_settings
from engine.header_section import MalformedHeader
from engine.model import MessageState, Tenant
from engine.records.record import RecordType
from engine.submission.acceptance import (
    Reception,
    campaign_name,
    from_domains,
    header_value,
    message_from_domains,
    new_submission_id,
    parse_header_fields,
    plan_submission,
    queue_name,
    suppress,
)

NOW = 1_800_000_000.0
TENANT = Tenant(id=7, name="acme", created_at=NOW)
RX = Reception(
    protocol="ESMTPSA",
    peer_host="127.0.0.9",
    ehlo_name="client.example",
    session_id="s1",
    username="acme-user",
    tls_version="TLSv1.3",
    tls_cipher="TLS_AES_256_GCM_SHA384",
    hostname="mta.example.net",
    nodeid="node1",
)
RAW = (
    b"From: News <news@News.Acme.test>\r\n"
    b"To: a@example.com\r\n"
    b"Subject: a long\r\n subject\r\n"
    b"X-Campaign: spring sale!\r\n"
    b"\r\n"
    b"Body line\r\nX-Campaign: not a header\r\n"
)


def test_header_fields_are_unfolded_with_spans() -> None:
    fields = parse_header_fields(RAW)
    assert [f.name for f in fields] == ["From", "To", "Subject", "X-Campaign"]
    assert header_value(fields, "subject") == "a long subject"
    campaign = fields[3]
    assert RAW[campaign.start : campaign.end] == b"X-Campaign: spring sale!\r\n"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        (b"", []),
        (b"\r\nbody\r\n", []),
        (b"From: a@b.c", ["From"]),
        (b"From: a@b.c\r\n", ["From"]),
        (b"From : a@b.c\r\nSubject\t:x\r\n\r\n", ["From", "Subject"]),
    ],
)
def test_header_field_names(raw: bytes, names: list[str]) -> None:
    assert [f.name for f in parse_header_fields(raw)] == names


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"no colon here\r\n\r\nbody", "line 1 has no colon"),
        (b"From: a@b.c\r\nSub ject: x\r\n\r\n", "line 2 has white space inside its field name"),
        ("From: a@b.c\r\nSübject: x\r\n\r\n".encode(), "line 2 has a field name that is not"),
    ],
)
def test_a_line_that_is_no_field_is_refused(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedHeader, match=reason):
        parse_header_fields(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"From: a@X.test\r\n\r\n", ["x.test"]),
        (b'From: "A, B" <a@x.test>, c@y.test\r\n\r\n', ["x.test", "y.test"]),
        (b"To: a@x.test\r\n\r\n", None),
        (b"From: undisclosed\r\n\r\n", None),
        (b"From: a@x.test\r\nFrom: b@y.test\r\n\r\n", None),
    ],
)
def test_from_domains(raw: bytes, expected: list[str] | None) -> None:
    assert from_domains(parse_header_fields(raw)) == expected
    assert message_from_domains(raw) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Bench <bench@bench.test>",
        "J. Smith <j@Example.COM.>",
        "Name<n@x.test>",
        "<a@b.test>",
        "a!b@x.test",
        "user%other@x.test",
        "john.doe+tag@sub.example.org",
        "x@y",
        '"Smith, J" <j@x.test>',
        "joe (comment) <joe@x.test>",
        "joe@x.test (Joe)",
        "Group: a@b.test;",
        "@a:user@b.test",
        "<@a:user@b.test>",
        "x <y@z.test> trailing",
        "Ünicode <u@x.test>",
        "u@bücher.de",
        "<>",
        "a@b@c.test",
        "a <<b@c.test>",
        '"q"@x.test',
        "a@[192.0.2.1]",
    ],
)
def test_from_domains_reads_every_form_as_the_email_package_does(value: str) -> None:
    addresses = [address for _, address in getaddresses([value]) if address]
    expected = (
        [a.rpartition("@")[2].lower().rstrip(".") for a in addresses]
        if addresses and all("@" in a for a in addresses)
        else None
    )
    raw = f"From: {value}\r\n\r\n".encode()
    assert from_domains(parse_header_fields(raw)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        ("spring", "spring"),
        (" spring sale! ", "spring_sale"),
        ("a" * 100, "a" * 64),
        ("x:y@z", "x_y_z"),
    ],
)
def test_campaign_name(value: str | None, expected: str) -> None:
    assert campaign_name(value) == expected


def test_queue_name() -> None:
    assert queue_name("spring", "acme", "example.com") == "spring:acme@example.com"
    assert queue_name("", "acme", "example.com") == "acme@example.com"


def test_submission_ids_sort_by_time_and_are_unique() -> None:
    rng = random.Random(1)
    a, b = new_submission_id(NOW, rng), new_submission_id(NOW + 0.002, rng)
    assert a < b and len(a) == 28
    assert len({new_submission_id(NOW, rng) for _ in range(1000)}) == 1000


def test_plan_makes_one_message_per_recipient() -> None:
    fields = parse_header_fields(RAW)
    planned, planned_records = plan_submission(
        tenant=TENANT,
        sender="bounce@news.acme.test",
        recipients=["a@Example.com", "b@example.org", "Gone@example.com"],
        raw=RAW,
        fields=fields,
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    assert {m.state for m in planned.messages} == {MessageState.QUEUED}
    assert {r.type for r in planned_records} == {RecordType.RECEPTION}
    assert suppress(planned, planned_records, set()) == (planned, planned_records)
    submission, records = suppress(planned, planned_records, {"gone@example.com"})
    assert [m.id for m in submission.messages] == ["sid-1", "sid-2", "sid-3"]
    assert [m.queue for m in submission.messages] == [
        "spring_sale:acme@example.com",
        "spring_sale:acme@example.org",
        "spring_sale:acme@example.com",
    ]
    assert [m.state for m in submission.messages] == [
        MessageState.QUEUED,
        MessageState.QUEUED,
        MessageState.SUPPRESSED,
    ]
    assert all(m.tenant_id == 7 and m.due_at == NOW for m in submission.messages)
    types = [(r.id, r.type) for r in records]
    assert types == [
        ("sid-1", RecordType.RECEPTION),
        ("sid-2", RecordType.RECEPTION),
        ("sid-3", RecordType.RECEPTION),
        ("sid-3", RecordType.SUPPRESSED),
    ]
    reception = records[0].to_json()
    assert reception["meta"] == {"tenant": "acme", "campaign": "spring_sale", "user": "acme-user"}
    assert reception["reception_protocol"] == "ESMTPSA"
    assert reception["peer_address"] == {"name": "client.example", "addr": "127.0.0.9"}
    assert reception["tls_protocol_version"] == "TLSv1.3"
    assert reception["headers"] == {"subject": "a long subject"}
    assert reception["size"] == len(submission.body)


def test_body_gets_trace_headers_and_loses_x_campaign() -> None:
    fields = parse_header_fields(RAW)
    submission, _ = plan_submission(
        tenant=TENANT,
        sender="s@news.acme.test",
        recipients=["a@example.com"],
        raw=RAW,
        fields=fields,
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    body = submission.body
    assert body.startswith(b"Received: from client.example ([127.0.0.9])\r\n")
    assert b"by mta.example.net (PenguinMails) with ESMTPSA (TLSv1.3 " in body
    assert b"Message-ID: <sid@mta.example.net>\r\n" in body
    assert b"\r\nDate: " in body
    head, _, rest = body.partition(b"\r\n\r\n")
    assert b"X-Campaign" not in head
    assert rest == b"Body line\r\nX-Campaign: not a header\r\n"


def test_existing_message_id_and_date_are_kept() -> None:
    raw = (
        b"From: a@x.test\r\nMessage-ID: <m@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nb\r\n"
    )
    submission, _ = plan_submission(
        tenant=TENANT,
        sender="a@x.test",
        recipients=["r@y.test"],
        raw=raw,
        fields=parse_header_fields(raw),
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    assert submission.body.count(b"Message-ID:") == 1
    assert submission.body.count(b"Date:") == 1
    assert submission.body.endswith(raw)


def test_white_space_before_a_colon_is_read_and_dropped() -> None:
    raw = b"From : a@x.test\r\nSubject\t : hi\r\nX-Campaign  : spring\r\nTo: r@y.test\r\n\r\nb\r\n"
    fields = parse_header_fields(raw)
    assert from_domains(fields) == ["x.test"]
    assert header_value(fields, "subject") == "hi"
    submission, _ = plan_submission(
        tenant=TENANT,
        sender="a@x.test",
        recipients=["r@y.test"],
        raw=raw,
        fields=fields,
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    assert submission.messages[0].queue == "spring:acme@y.test"
    assert submission.body.endswith(b"From: a@x.test\r\nSubject: hi\r\nTo: r@y.test\r\n\r\nb\r\n")


@pytest.mark.parametrize(
    ("header", "priority"),
    [
        (b"X-Priority-Class: transactional\r\n", 9),
        (b"x-priority-class:  BULK \r\n", 0),
        (b"X-Priority-Class: 7\r\n", 7),
        (b"X-Priority-Class: urgent\r\n", 5),  # names no priority: the tenant's default
        (b"", 5),
    ],
)
def test_x_priority_class_sets_the_priority_and_is_removed(header: bytes, priority: int) -> None:
    raw = b"From: a@x.test\r\n" + header + b"Subject: hi\r\n\r\nX-Priority-Class: 0\r\n"
    submission, _ = plan_submission(
        tenant=TENANT,
        sender="a@x.test",
        recipients=["r@y.test", "s@z.test"],
        raw=raw,
        fields=parse_header_fields(raw),
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    assert [m.priority for m in submission.messages] == [priority, priority]
    head, _, rest = submission.body.partition(b"\r\n\r\n")
    assert b"priority-class" not in head.lower()
    assert head.endswith(b"From: a@x.test\r\nSubject: hi")
    assert rest == b"X-Priority-Class: 0\r\n"


def test_a_submitted_x_penguin_ref_is_removed() -> None:
    """Delivery adds our own reference header; a tenant's would stand beside it."""
    raw = b"From: a@x.test\r\nX-Penguin-Ref: forged\r\nx-penguin-ref: again\r\n\r\nb\r\n"
    submission, _ = plan_submission(
        tenant=TENANT,
        sender="a@x.test",
        recipients=["r@y.test"],
        raw=raw,
        fields=parse_header_fields(raw),
        submission_id="sid",
        now=NOW,
        reception=RX,
    )
    assert b"penguin-ref" not in submission.body.lower()
    assert submission.body.endswith(b"From: a@x.test\r\n\r\nb\r\n")


def test_the_tenants_and_campaigns_default_priority_applies() -> None:
    settings = parse_settings(
        {
            "tenants": {TENANT.name: {"priority": "bulk"}},
            "campaigns": {f"{TENANT.name}:spring_sale": {"priority": "transactional"}},
        }
    )
    plans = [
        plan_submission(
            tenant=TENANT,
            sender="s@news.acme.test",
            recipients=["a@example.com"],
            raw=raw,
            fields=parse_header_fields(raw),
            submission_id="sid",
            now=NOW,
            reception=RX,
            settings=settings,
        )[0]
        for raw in (RAW, b"From: a@x.test\r\n\r\nb\r\n", b"X-Priority-Class: 6\r\n" + RAW)
    ]
    assert [p.messages[0].priority for p in plans] == [9, 0, 6]
