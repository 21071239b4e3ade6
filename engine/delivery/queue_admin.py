"""An operator's hand on the queue, as Postfix's ``postsuper -r`` and ``-d``. Pure.

Requeueing puts a shunted message back in its queue, due at once, its
attempts kept, with an AdminRequeue record. Removing takes a queued or
shunted message out of the queue for good, with an AdminBounce record
(KumoMTA's name for a message an operator ended). The store applies both
(``Store.requeue_shunted``, ``Store.remove_messages``) and keeps the record
only of a message it changed; what is being delivered or is done already
is left alone.
"""

from __future__ import annotations

from typing import Final

from engine.delivery.settling import RecordContext, message_record
from engine.model import MessageState, QueuedMessage
from engine.records.record import Record, RecordType
from engine.smtp.reply import Reply

REQUEUEABLE: Final = frozenset({MessageState.SHUNTED})
REMOVABLE: Final = frozenset({MessageState.QUEUED, MessageState.SHUNTED})
REMOVED_RESPONSE: Final = Reply(551, "5.7.1", "Removed from the queue by an operator")


def requeue_record(message: QueuedMessage, *, now: float, context: RecordContext) -> Record:
    """The AdminRequeue record of ``message`` put back in its queue at ``now``."""
    return message_record(
        RecordType.ADMIN_REQUEUE,
        message,
        now=now,
        context=context,
        num_attempts=message.attempts,
    )


def removal_record(
    message: QueuedMessage, *, now: float, context: RecordContext, why: str = ""
) -> Record:
    """The AdminBounce record of ``message`` removed from the queue at ``now``; its
    response says ``why`` when given (a campaign cancelled)."""
    response = REMOVED_RESPONSE
    if why:
        response = Reply(
            REMOVED_RESPONSE.code, REMOVED_RESPONSE.enhanced, f"Removed from the queue: {why}"
        )
    return message_record(
        RecordType.ADMIN_BOUNCE,
        message,
        now=now,
        context=context,
        num_attempts=message.attempts,
        response=response,
    )
