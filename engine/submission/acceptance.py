"""Turn one accepted transaction into a submission: pure acceptance logic.

In: the tenant, the envelope, the raw message (CRLF line ends), ``now`` and
a submission id. Out: a ``Submission`` (body stored once, one
``QueuedMessage`` per recipient) and its Reception records. ``suppress``
then takes the tenant's suppressed recipients out of the queue with a
Suppressed record each (the spool looks them up once per group commit).

The header section is read by ``engine.header_section``, as the DKIM signer
reads it: a message with a line that is part of no header field raises
``MalformedHeader`` and is not accepted, so whatever is accepted can be signed.

The body gets what Postfix's cleanup adds: a ``Received`` trace header
(RFC 5321 §4.4), and ``Message-ID`` and ``Date`` when missing (RFC 5322
§3.6). ``X-Campaign`` is removed; its value names the scheduled queue
``campaign:tenant@domain`` (KumoMTA naming; ``tenant@domain`` without one).
``X-Priority-Class`` is removed too; its value (``bulk``, ``normal``,
``transactional`` or a digit 0..9) sets every recipient's priority, and
without it, or when it names no priority, the tenant's or campaign's default
applies (``engine.scheduler.routing.priority_of``). ``X-Penguin-Ref`` is
removed: delivery adds its own (``engine.return_path``), naming the submission.
White space between a field name and its colon, obsolete syntax that RFC 5322
§4 reads but forbids sending, is dropped (``Subject : x`` goes out as
``Subject: x``, which every DKIM verifier parses alike).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from email.utils import formatdate, getaddresses
from typing import Any, NamedTuple

from config.schema import Settings
from engine.header_section import parse_header_section
from engine.model import MessageState, QueuedMessage, Submission, Tenant
from engine.records.record import Record, RecordType
from engine.return_path import REFERENCE_HEADER
from engine.scheduler.routing import priority_of

CAMPAIGN_HEADER = b"x-campaign"
PRIORITY_HEADER = "x-priority-class"
REMOVED_HEADERS = frozenset({"x-campaign", PRIORITY_HEADER, REFERENCE_HEADER.lower()})
"""Removed at acceptance: read by the engine, or (our reference) added by it."""
"""Header fields read at acceptance and not sent on."""
_CAMPAIGN_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_CAMPAIGN_LENGTH = 64
TRACE_HEADERS = ("subject", "message-id")
_ATOM_ADDRESS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+"
_PLAIN_FROM = re.compile(
    rf"(?:[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~. -]*<({_ATOM_ADDRESS})>|({_ATOM_ADDRESS}))"
)
"""A From of one ASCII address with an optional unquoted display name: the
common case, read without ``email.utils`` (anything else goes through it)."""


_DEFAULT_SETTINGS = Settings()


class HeaderField(NamedTuple):
    """One header field: its name, unfolded value, and its byte span in the message.
    A tuple: every message read makes several, at a third of a frozen dataclass's cost."""

    name: str
    value: str
    start: int
    end: int
    colon: int
    """Offset of the colon: after the name, or after white space (RFC 5322 §4.5)."""


@dataclass(frozen=True, slots=True)
class Reception:
    """How the message came in, for the trace header and the records."""

    protocol: str
    peer_host: str
    ehlo_name: str
    session_id: str
    username: str
    tls_version: str | None
    tls_cipher: str | None
    hostname: str
    nodeid: str


def new_submission_id(now: float, rng: random.Random) -> str:
    """A sortable, unique id: milliseconds then 64 random bits, in hex."""
    return f"{int(now * 1000):012x}{rng.getrandbits(64):016x}"


def parse_header_fields(raw: bytes) -> list[HeaderField]:
    """The header fields of a message, folded lines joined (RFC 5322 §2.2.3).

    Raises ``MalformedHeader`` when a line of the header section is part of no
    field: the message cannot be signed, so it is not accepted.
    """
    return [
        HeaderField(
            name.decode("ascii"),
            value.decode("utf-8", "replace").replace("\r\n", "").strip(),
            start,
            end,
            colon,
        )
        for name, value, start, colon, end in parse_header_section(raw).spans()
    ]


def header_value(fields: Iterable[HeaderField], name: str) -> str | None:
    """The first value of a header field, or None."""
    wanted = name.lower()
    for f in fields:
        if f.name.lower() == wanted:
            return f.value
    return None


def from_domains(fields: Sequence[HeaderField]) -> list[str] | None:
    """Domains of every address in the From header; None when From is absent or empty."""
    return _from_domains([f.value for f in fields if f.name.lower() == "from"])


def message_from_domains(raw: bytes) -> list[str] | None:
    """``from_domains`` of a message's header fields, reading its From fields only."""
    values = [
        value.decode("utf-8", "replace").replace("\r\n", "").strip()
        for name, value, *_ in parse_header_section(raw).spans()
        if name.lower() == b"from"
    ]
    return _from_domains(values)


def _from_domains(values: list[str]) -> list[str] | None:
    if len(values) != 1:
        return None
    plain = _PLAIN_FROM.fullmatch(values[0])
    if plain is not None:
        address = plain[1] or plain[2]
        return [address.rpartition("@")[2].lower().rstrip(".")]
    addresses = [addr for _, addr in getaddresses(values) if addr]
    if not addresses or any("@" not in a for a in addresses):
        return None
    return [a.rpartition("@")[2].lower().rstrip(".") for a in addresses]


def domain_of(address: str) -> str:
    """The domain of an address, lower-cased (after the last ``@``)."""
    return address.rpartition("@")[2].lower().rstrip(".")


def campaign_name(value: str | None) -> str:
    """A queue-safe campaign name from an ``X-Campaign`` value ('' when none)."""
    if not value:
        return ""
    return _CAMPAIGN_UNSAFE.sub("_", value.strip())[:MAX_CAMPAIGN_LENGTH].strip("_")


def queue_name(campaign: str, tenant: str, domain: str) -> str:
    """The scheduled queue: ``campaign:tenant@domain``, or ``tenant@domain``."""
    return f"{campaign}:{tenant}@{domain}" if campaign else f"{tenant}@{domain}"


@functools.lru_cache(maxsize=4)
def date_header_value(second: int) -> str:
    """RFC 5322 date-time in GMT for a POSIX second (kept: many messages share one)."""
    return formatdate(second, usegmt=True)


def build_body(
    raw: bytes, fields: Sequence[HeaderField], submission_id: str, now: float, rx: Reception
) -> bytes:
    """The stored body: trace and missing headers prepended, X-Campaign,
    X-Priority-Class and X-Penguin-Ref removed, and
    white space before a colon dropped (obsolete syntax is read, not sent: RFC 5322 §4)."""
    date = date_header_value(int(now))
    tls = f" ({rx.tls_version} {rx.tls_cipher})" if rx.tls_version else ""
    added = [
        f"Received: from {rx.ehlo_name} ([{rx.peer_host}])\r\n"
        f"\tby {rx.hostname} (PenguinMails) with {rx.protocol}{tls}\r\n"
        f"\tid {submission_id}; {date}\r\n"
    ]
    names = {f.name.lower() for f in fields}
    if "message-id" not in names:
        added.append(f"Message-ID: <{submission_id}@{rx.hostname}>\r\n")
    if "date" not in names:
        added.append(f"Date: {date}\r\n")
    prefix = "".join(added).encode("utf-8")
    edits = _rewrites(fields)
    if not edits:
        return prefix + raw
    parts = [prefix]
    pos = 0
    for start, end, replacement in edits:
        parts += (raw[pos:start], replacement)
        pos = end
    parts.append(raw[pos:])
    return b"".join(parts)


def _rewrites(fields: Sequence[HeaderField]) -> list[tuple[int, int, bytes]]:
    """(start, end, replacement) in the raw message: each field of ``REMOVED_HEADERS``
    goes, and the white space between a name and its colon."""
    rewrites = []
    for f in fields:
        if f.name.lower() in REMOVED_HEADERS:
            rewrites.append((f.start, f.end, b""))
        elif f.colon != f.start + len(f.name):
            rewrites.append((f.start, f.colon + 1, f"{f.name}:".encode("ascii")))
    return rewrites


def plan_submission(
    *,
    tenant: Tenant,
    sender: str,
    recipients: Sequence[str],
    raw: bytes,
    fields: Sequence[HeaderField],
    submission_id: str,
    now: float,
    reception: Reception,
    settings: Settings | None = None,
    due_at: float | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[Submission, list[Record]]:
    """The submission to store, every recipient queued (due at ``due_at``, ``now`` when
    None), and their Reception records, whose ``meta`` gains ``meta`` (tags, metadata);
    priorities by ``settings``' tenants and campaigns (the defaults when None)."""
    campaign = campaign_name(header_value(fields, "x-campaign"))
    priority = priority_of(
        settings or _DEFAULT_SETTINGS, tenant.name, campaign, header_value(fields, PRIORITY_HEADER)
    )
    body = build_body(raw, fields, submission_id, now, reception)
    headers = {n: v for n in TRACE_HEADERS if (v := header_value(fields, n)) is not None}
    record_meta = {
        **(meta or {}),
        "tenant": tenant.name,
        "campaign": campaign or None,
        "user": reception.username,
    }
    messages: list[QueuedMessage] = []
    records: list[Record] = []
    for index, recipient in enumerate(recipients, start=1):
        domain = domain_of(recipient)
        queue = queue_name(campaign, tenant.name, domain)
        message = QueuedMessage(
            id=f"{submission_id}-{index}",
            submission_id=submission_id,
            tenant_id=tenant.id,
            queue=queue,
            campaign=campaign,
            sender=sender,
            recipient=recipient,
            domain=domain,
            state=MessageState.QUEUED,
            due_at=now if due_at is None else due_at,
            created_at=now,
            priority=priority,
        )
        messages.append(message)
        records.append(
            Record(
                type=RecordType.RECEPTION,
                timestamp=now,
                tenant_id=tenant.id,
                id=message.id,
                sender=sender,
                recipient=recipient,
                queue=queue,
                size=len(body),
                created=now,
                peer_address=(reception.ehlo_name, reception.peer_host),
                meta=record_meta,
                headers=headers,
                reception_protocol=reception.protocol,
                nodeid=reception.nodeid,
                tls_cipher=reception.tls_cipher,
                tls_protocol_version=reception.tls_version,
                session_id=reception.session_id,
            )
        )
    submission = Submission(
        id=submission_id,
        tenant_id=tenant.id,
        body=body,
        messages=tuple(messages),
        created_at=now,
    )
    return submission, records


def suppress(
    submission: Submission, records: Sequence[Record], suppressed: set[str]
) -> tuple[Submission, list[Record]]:
    """The submission with its ``suppressed`` recipients (lower-cased) not queued, and
    a Suppressed record after each one's Reception."""
    hit = {m.id for m in submission.messages if m.recipient.lower() in suppressed}
    if not hit:
        return submission, list(records)
    messages = tuple(
        replace(m, state=MessageState.SUPPRESSED) if m.id in hit else m for m in submission.messages
    )
    out: list[Record] = []
    for record in records:
        out.append(record)
        if record.type is RecordType.RECEPTION and record.id in hit:
            out.append(replace(record, type=RecordType.SUPPRESSED))
    return replace(submission, messages=messages), out


def receipt(submissions: Sequence[Submission]) -> dict[str, Any]:
    """What the submitter is told once ``submissions`` (one request's) are stored:
    the first submission's id, each queued message's id and recipient, and the
    recipients not queued because they are suppressed."""
    messages = [m for s in submissions for m in s.messages]
    return {
        "submission_id": submissions[0].id if submissions else None,
        "messages": [
            {"id": m.id, "recipient": m.recipient}
            for m in messages
            if m.state is not MessageState.SUPPRESSED
        ],
        "suppressed": [m.recipient for m in messages if m.state is MessageState.SUPPRESSED],
    }
