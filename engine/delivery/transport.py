"""The seam between the engine's delivery service and the SMTP client.

The engine claims messages, signs them and hands each one to a
``Deliverer`` (``smtp_out.deliverer.SmtpDeliverer`` in production) with
the source the scheduler chose for it (``engine.scheduler``); the deliverer
resolves the destination, picks or opens a connection on the lane
(that source x site) and returns an ``AttemptReport``: the outcome plus what
the records need (site, peer, source, TLS). A deliverer never raises for
remote trouble; exceptions mean a local defect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from engine.delivery.outcome import Outcome
from engine.scheduler.shaping import LaneShaping
from engine.scheduler.sources import Source


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One recipient's signed copy, ready for the wire."""

    id: str
    sender: str
    recipient: str
    domain: str
    source: Source
    """Where it goes out from: the local address to bind and the EHLO name."""
    data: bytes = field(repr=False)
    """The message with CRLF line ends, not dot-stuffed."""
    tenant: str = ""
    shaping: LaneShaping | None = None
    """The limits of its lane (source x site) as the scheduler scaled them down for
    backoff; None: the lane's shaping as configured."""


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """What happened to one message in one attempt."""

    outcome: Outcome
    site: str | None = None
    peer_name: str | None = None
    peer_address: str | None = None
    source: str | None = None
    source_address: str | None = None
    tls_cipher: str | None = None
    tls_version: str | None = None
    retry_after: float = 0.0
    """For a delayed outcome: seconds until the message is worth trying again."""


class Deliverer(Protocol):
    async def deliver(self, message: OutboundMessage) -> AttemptReport:
        """Try to deliver once; the report says how it went."""
        ...

    def lane_connections(self) -> dict[tuple[str, str], int]:
        """Connections open per lane (source, site), busy or idle."""
        ...

    async def sweep(self) -> None:
        """Close idle connections that have outlived their idle timeout."""
        ...

    async def close(self) -> None:
        """Close idle connections and stop background work."""
        ...
