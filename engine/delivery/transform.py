"""The transformation of each outgoing copy: its body before signing, its envelope sender.

Owns the seam ``MessageTransform``, in two steps, so that what varies per
recipient costs no more than it must:

* ``body``: the unsigned body that goes out, from the body of the
  submission. The delivery service signs what it returns. While
  ``per_recipient(message)`` is false, the body depends only on the
  submission: the service transforms and signs it once for all the
  recipients of a submission in a claimed batch. Where it is true (link
  rewriting for a tracked tenant or campaign), the body is made, and
  signed, for each message. All the messages of a submission share their
  tenant and campaign, so they all get the same answer.
* ``sender``: the envelope sender of one message, given the sending domain
  its body was signed for (None when it goes out unsigned). Always per
  message, and cheap: it never touches the body.

``IDENTITY`` sends the submission as accepted. ``ReturnPathTransform`` is
the engine's: each message gets a signed return path on its sending domain's
return-path domain (``engine.return_path``), and every body our reference
header naming its submission. Mail from a domain that is not one of the
tenant's sending domains keeps the sender submitted, and so does the null
sender (``<>``) of a DSN. Records keep the sender the tenant submitted: the
return path is derived from the message id, the token names the message.

Pure: no I/O, and the same inputs give the same result.
"""

from __future__ import annotations

from typing import Protocol

from engine.model import QueuedMessage
from engine.return_path import REFERENCE_HEADER, ReturnPathCodec


class MessageTransform(Protocol):
    def per_recipient(self, message: QueuedMessage) -> bool:
        """Whether ``body`` may differ between ``message`` and the other recipients of
        its submission."""
        ...

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        """The unsigned body that goes out for ``message``; ``body`` is its submission's."""
        ...

    def sender(self, message: QueuedMessage, sending_domain: str | None) -> str:
        """The envelope sender of ``message``, whose body is signed for
        ``sending_domain`` (a sending domain of its tenant), or unsigned (None)."""
        ...


class IdentityTransform:
    """``MessageTransform`` that sends the submission as it was accepted."""

    def per_recipient(self, message: QueuedMessage) -> bool:
        return False

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        return body

    def sender(self, message: QueuedMessage, sending_domain: str | None) -> str:
        return message.sender


IDENTITY = IdentityTransform()


class ReturnPathTransform:
    """``MessageTransform`` giving each message a signed return path (VERP) and each
    body the ``X-Penguin-Ref`` header naming its submission."""

    def __init__(self, codec: ReturnPathCodec) -> None:
        self._codec = codec

    def per_recipient(self, message: QueuedMessage) -> bool:
        return False

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        reference = self._codec.reference(message.submission_id)
        return f"{REFERENCE_HEADER}: {reference}\r\n".encode("ascii") + body

    def sender(self, message: QueuedMessage, sending_domain: str | None) -> str:
        if not message.sender or sending_domain is None:
            return message.sender
        local = self._codec.local_part(message.id)
        return f"{local}@{self._codec.return_path_domain(sending_domain)}"


class TransformChain:
    """``MessageTransform`` of several in order: each body step takes the body the one
    before gave; the envelope sender is the last step's (the return path's)."""

    def __init__(self, *steps: MessageTransform) -> None:
        if not steps:
            raise ValueError("a transform chain needs at least one step")
        self._steps = steps

    def per_recipient(self, message: QueuedMessage) -> bool:
        return any(step.per_recipient(message) for step in self._steps)

    def body(self, message: QueuedMessage, body: bytes) -> bytes:
        for step in self._steps:
            body = step.body(message, body)
        return body

    def sender(self, message: QueuedMessage, sending_domain: str | None) -> str:
        return self._steps[-1].sender(message, sending_domain)
