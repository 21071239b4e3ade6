"""RFC 3464 delivery status notifications: the ``message/delivery-status`` part.

In: a message's MIME tree. Out: the per-recipient verdicts of its
delivery-status part, or ``None`` when it has none.

A delivery-status body (RFC 3464 §2.1) is one group of per-message fields
(``Reporting-MTA``, ``X-Postfix-Sender``, ``Arrival-Date`` ...) then one
group per recipient (``Final-Recipient``, ``Original-Recipient``,
``Action``, ``Status``, ``Remote-MTA``, ``Diagnostic-Code``), groups
separated by empty lines. Read leniently: a recipient group without
``Final-Recipient`` (known by its ``Action`` or ``Status``) is kept with an
empty address, for the return path to name; the part may be labelled
``message/global-delivery-status`` (RFC 6533), ``text/delivery-status`` or
sit outside a ``multipart/report``; groups without the empty line between
them are split at each ``Final-Recipient``; an unknown ``Action`` is read as
``failed`` when the status is 5.x.x and ``delayed`` when it is 4.x.x. A
recipient reported ``delivered``, ``relayed`` or ``expanded`` is kept with
that action. Without a ``Diagnostic-Code`` the comment of the ``Status``
field, if any, stands for it. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bounce_in.parsing.mime import Part, decoded_body, normalize, read_fields
from bounce_in.parsing.status import clean_address, recipient_status
from bounce_in.report import Action, RecipientStatus
from engine.delivery.bounce_classify import BounceClassifier

STATUS_TYPES: Final = frozenset(
    {"message/delivery-status", "message/global-delivery-status", "text/delivery-status"}
)
MAX_RECIPIENTS: Final = 500
RECIPIENT_FIELDS: Final = frozenset({"final-recipient", "original-recipient", "action", "status"})
"""Fields only a per-recipient group has (RFC 3464 §2.3): one of them makes a group a
recipient's, also when a receiver leaves out ``Final-Recipient``."""

_ACTIONS: Final = {a.value: a for a in Action}

Fields = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """What a delivery-status part says."""

    reporting_mta: str
    recipients: tuple[RecipientStatus, ...]


def status_part(message: Part) -> Part | None:
    """The message's delivery-status part, if any."""
    for part in message.walk():
        if part.content_type in STATUS_TYPES:
            return part
    return None


def read_delivery_status(part: Part, classifier: BounceClassifier) -> DeliveryStatus:
    """The verdicts of a delivery-status part."""
    groups = _groups(normalize(decoded_body(part)))
    per_message: Fields = []
    recipients: list[RecipientStatus] = []
    for group in groups:
        if not RECIPIENT_FIELDS.isdisjoint(name for name, _ in group):
            recipients.extend(_recipients(group, classifier))
        else:
            per_message.extend(group)
        if len(recipients) >= MAX_RECIPIENTS:
            break
    reporting = _first(per_message, "reporting-mta") or _first(per_message, "received-from-mta")
    return DeliveryStatus(_typed_value(reporting), tuple(recipients))


def _groups(body: bytes) -> list[Fields]:
    blocks = [block for block in body.split(b"\n\n") if block.strip()]
    return [read_fields(block.strip(b"\n") + b"\n") for block in blocks[: MAX_RECIPIENTS + 1]]


def _recipients(group: Fields, classifier: BounceClassifier) -> list[RecipientStatus]:
    """One group, split at each ``Final-Recipient`` when the empty lines are missing."""
    out: list[RecipientStatus] = []
    current: Fields = []
    for name, value in group:
        if name == "final-recipient" and any(n == "final-recipient" for n, _ in current):
            out.append(_recipient(current, classifier))
            current = []
        current.append((name, value))
    out.append(_recipient(current, classifier))
    return out


def _recipient(group: Fields, classifier: BounceClassifier) -> RecipientStatus:
    status = _first(group, "status")
    final = _first(group, "final-recipient")
    original = _first(group, "original-recipient")
    diagnostic = _typed_value(_first(group, "diagnostic-code")) or _comment(status)
    return recipient_status(
        classifier,
        address=clean_address(final) or clean_address(original),
        action=_action(_first(group, "action"), status),
        status=status,
        diagnostic=diagnostic,
        remote_mta=_typed_value(_first(group, "remote-mta")),
        original_recipient=original,
    )


def _action(value: str, status: str) -> Action:
    word = value.strip().lower().split(" ", 1)[0].rstrip(";")
    action = _ACTIONS.get(word)
    if action is not None:
        return action
    return Action.DELAYED if status.strip().startswith("4") else Action.FAILED


def _comment(status: str) -> str:
    """The comment of ``Status: 4.0.0 (host name lookup failure)``: the only reason given."""
    _, opening, rest = status.partition("(")
    return rest.rpartition(")")[0].strip() if opening else ""


def _first(fields: Fields, name: str) -> str:
    for key, value in fields:
        if key == name:
            return value
    return ""


def _typed_value(value: str) -> str:
    """``dns; mx.example.com`` as ``mx.example.com`` (RFC 3464 §2.1.2 type; value)."""
    kind, semicolon, rest = value.partition(";")
    if semicolon and " " not in kind.strip():
        return rest.strip()
    return value.strip()
