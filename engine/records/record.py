"""Log records: the engine's typed, versioned, machine-readable events.

Shaped like KumoMTA's log records (https://docs.kumomta.com/reference/log_record/)
so operators can move over: the same ``type`` names and field names. A record is
immutable; ``to_json`` gives the JSON object written to the store and to the
JSON-lines file. Pure: timestamps are passed in.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.smtp.reply import Reply

RECORD_VERSION = 1


class RecordType(enum.StrEnum):
    RECEPTION = "Reception"
    DELIVERY = "Delivery"
    TRANSIENT_FAILURE = "TransientFailure"
    BOUNCE = "Bounce"
    EXPIRATION = "Expiration"
    ADMIN_BOUNCE = "AdminBounce"
    OOB = "OOB"
    FEEDBACK = "Feedback"
    REJECTION = "Rejection"
    ADMIN_REBIND = "AdminRebind"
    DELAYED = "Delayed"
    OPEN = "Open"
    CLICK = "Click"
    UNSUBSCRIBE = "Unsubscribe"
    SUPPRESSED = "Suppressed"
    SHUNTED = "Shunted"
    """Parked after an unexpected local error; waits for an operator."""
    ADMIN_REQUEUE = "AdminRequeue"
    """An operator put a shunted message back in its queue (Postfix ``postsuper -r``)."""
    ADMIN_ACTION = "AdminAction"
    """An operator's action on no one message: a suspension set or lifted."""


def response_json(reply: Reply, command: str | None) -> dict[str, Any]:
    """KumoMTA's ``response`` object: ``reply`` and the ``command`` it answered."""
    code = reply.enhanced_code
    return {
        "code": reply.code,
        "enhanced_code": (
            None
            if code is None
            else {"class": code.klass, "subject": code.subject, "detail": code.detail}
        ),
        "content": reply.text,
        "command": command,
    }


@dataclass(frozen=True, slots=True)
class Record:
    """One log record. ``tenant_id`` is for storage and scoping, not output."""

    type: RecordType
    timestamp: float
    tenant_id: int | None = None
    id: str | None = None
    sender: str | None = None
    recipient: str | None = None
    queue: str | None = None
    site: str | None = None
    size: int | None = None
    response: Reply | None = None
    """The reply sent or received, written as KumoMTA's ``response`` object."""
    command: str | None = None
    """The command ``response`` answered (``response.command`` in the JSON)."""
    peer_address: tuple[str, str] | None = None
    created: float | None = None
    num_attempts: int = 0
    bounce_classification: str | None = None
    egress_pool: str | None = None
    egress_source: str | None = None
    source_address: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    reception_protocol: str | None = None
    nodeid: str | None = None
    tls_cipher: str | None = None
    tls_protocol_version: str | None = None
    tls_peer_subject_name: str | None = None
    session_id: str | None = None
    feedback_report: dict[str, Any] | None = None
    _json_line: str | None = field(default=None, init=False, repr=False, compare=False)
    """``to_json_line``'s result, kept: the store and the record log both need it."""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON-ready dict with KumoMTA's field names."""
        timestamp = rfc3339(self.timestamp)
        created = None
        if self.created is not None:
            created = timestamp if self.created == self.timestamp else rfc3339(self.created)
        peer = None
        if self.peer_address is not None:
            peer = {"name": self.peer_address[0], "addr": self.peer_address[1]}
        response = None
        if self.response is not None:
            response = response_json(self.response, self.command)
        return {
            "type": self.type.value,
            "version": RECORD_VERSION,
            "id": self.id,
            "sender": self.sender,
            "recipient": self.recipient,
            "queue": self.queue,
            "site": self.site,
            "size": self.size,
            "response": response,
            "peer_address": peer,
            "timestamp": timestamp,
            "created": created,
            "num_attempts": self.num_attempts,
            "bounce_classification": self.bounce_classification,
            "egress_pool": self.egress_pool,
            "egress_source": self.egress_source,
            "source_address": self.source_address,
            "feedback_report": self.feedback_report,
            "meta": self.meta,
            "headers": self.headers,
            "reception_protocol": self.reception_protocol,
            "nodeid": self.nodeid,
            "tls_cipher": self.tls_cipher,
            "tls_protocol_version": self.tls_protocol_version,
            "tls_peer_subject_name": self.tls_peer_subject_name,
            "session_id": self.session_id,
        }

    def to_json_line(self) -> str:
        line = self._json_line
        if line is None:
            line = json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)
            object.__setattr__(self, "_json_line", line)  # a cache on a frozen record
        return line


def rfc3339(ts: float) -> str:
    """POSIX seconds as an RFC 3339 UTC timestamp with microseconds."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
