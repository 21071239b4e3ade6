"""The SMTP client's settings: the ``[delivery]`` table, as the client reads it.

Owns ``ClientSettings``. It has no values of its own: ``from_delivery``
copies each field of the same name from ``config.schema.DeliverySettings``,
whose documentation, defaults and bounds are the only ones. What differs by
lane (connection limit, deliveries per connection, idle timeout, TLS policy)
comes from traffic shaping (``engine.scheduler.shaping``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from config.schema import DeliverySettings


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """The ``[delivery]`` settings the SMTP client uses (see ``DeliverySettings`` for each)."""

    connect_timeout_seconds: float
    greeting_timeout_seconds: float
    ehlo_timeout_seconds: float
    command_timeout_seconds: float
    data_timeout_seconds: float
    max_waiters: int
    wait_timeout_seconds: float
    delayed_retry_seconds: float
    broken_tls_memory_seconds: float
    max_addresses_per_attempt: int

    @classmethod
    def from_delivery(cls, delivery: DeliverySettings) -> ClientSettings:
        """Each field from the ``DeliverySettings`` field of the same name."""
        values: dict[str, Any] = {
            field.name: getattr(delivery, field.name) for field in dataclasses.fields(cls)
        }
        return cls(**values)
