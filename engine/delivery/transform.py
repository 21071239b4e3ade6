"""The transformation of each outgoing copy before it is signed.

Owns the seam ``MessageTransform``: given a claimed message and the body of
its submission, it returns the envelope sender and the body that go out,
and the delivery service signs that body. ``IDENTITY`` changes nothing and
is the engine's transform today; VERP return paths (a sender per recipient)
and link rewriting (a body per recipient) plug in here.

A transform that is not ``per_recipient`` promises that its result depends
only on the submission, so the service transforms and signs the body once
for all the recipients of a submission in a claimed batch; a per-recipient
one is applied, and its result signed, for each message.

Pure: no I/O, and the same inputs give the same result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.model import QueuedMessage


@dataclass(frozen=True, slots=True)
class Transformed:
    """What goes out for one message: its envelope sender and its unsigned body."""

    sender: str
    body: bytes


class MessageTransform(Protocol):
    @property
    def per_recipient(self) -> bool:
        """Whether the result may differ between the recipients of one submission."""
        ...

    def apply(self, message: QueuedMessage, body: bytes) -> Transformed:
        """The sender and body that go out for ``message``; ``body`` is its submission's."""
        ...


class IdentityTransform:
    """``MessageTransform`` that sends the submission as it was accepted."""

    per_recipient = False

    def apply(self, message: QueuedMessage, body: bytes) -> Transformed:
        return Transformed(message.sender, body)


IDENTITY = IdentityTransform()
