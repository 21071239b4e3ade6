"""The service interface: one role of an engine process, started, stopped, asked its health.

A service is the submission listener, delivery, the admin HTTP listener and,
later, bounce intake and the tracking edge. The composition root
(``engine.runtime.app``) starts the services of a process in order, runs
each one's work as a task named after it, reports their health on the
admin listener's ``/healthz``, and stops them in the reverse order.

Lifecycle: ``start`` opens what the service needs and returns once it
serves, with the addresses it listens on; ``run`` does its work until
``stop`` (a ``run`` that ends before is a failure of the process);
``stop(grace_seconds)`` stops new work and lets the work in flight finish,
after which ``run`` returns. The root cancels a ``run`` that outlives the
grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Health:
    """Whether a service does its work now; the detail says what it is doing or what is wrong."""

    ok: bool
    detail: str = ""


class Service(Protocol):
    @property
    def name(self) -> str:
        """The role it plays, unique in a process: ``submission``, ``delivery``, ``admin``."""
        ...

    async def start(self) -> list[Address]:
        """Open what the service needs; returns once it serves, with the addresses it
        listens on (none for a service that listens on nothing)."""
        ...

    async def run(self) -> None:
        """The service's work, until ``stop``."""
        ...

    async def stop(self, grace_seconds: float) -> None:
        """Take no new work; what is in flight has ``grace_seconds`` to finish."""
        ...

    def health(self) -> Health: ...
