"""Throttle specs and their arithmetic: ``N/period[,max_burst=B]`` with GCRA semantics.

Owns ``ThrottleSpec`` (parsed from the KumoMTA spelling: ``100/s``,
``1,000/h``, ``10_000/d``, ``30/5min``, ``local:50/min,max_burst=10``) and
``gcra``, the pure decision of the generic cell rate algorithm: each unit
moves a *theoretical arrival time* (TAT) on by one emission interval
(period / N); a request passes while that time stays within ``max_burst``
intervals of now. A limiter keeps the TAT per key (in-process, or in Redis
for every process at once) and calls nothing else.

Times are POSIX seconds (about 1.8e9), whose doubles are only exact to a
few 1e-7 s: comparisons allow ``TOLERANCE`` seconds.

Invariants: pure; over any window of length ``w`` a key passes at most
``max_burst + N * w / period`` units; an idle key refills to ``max_burst``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.durations import UNITS

PERIODS = UNITS
"""Period units: those of durations (s, min, h, d...)."""
LOCAL_PREFIX = "local:"
TOLERANCE = 1e-6
"""Seconds by which a unit may come early and still pass (rounding of epoch times)."""

_SPEC = re.compile(
    r"(?P<limit>[0-9][0-9,_]*)\s*/\s*(?P<count>[0-9]+(?:\.[0-9]+)?)?\s*(?P<unit>[a-z]+?)s?"
    r"(?:\s*,\s*max_burst\s*=\s*(?P<burst>[0-9][0-9_]*))?",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ThrottleSpec:
    """At most ``limit`` units per ``period_seconds``, ``max_burst`` of them at once."""

    limit: int
    period_seconds: float
    max_burst: int
    local: bool = False
    """Kept by each process alone, never shared across processes or nodes."""

    @classmethod
    def parse(cls, text: str) -> ThrottleSpec:
        """The spec written as ``text``; ``ValueError`` naming the problem otherwise."""
        body = text.strip()
        local = body.lower().startswith(LOCAL_PREFIX)
        if local:
            body = body[len(LOCAL_PREFIX) :]
        found = _SPEC.fullmatch(body.strip())
        if found is None:
            raise ValueError(f"not a throttle spec (N/period[,max_burst=B]): {text!r}")
        limit = int(found["limit"].replace(",", "").replace("_", ""))
        unit = PERIODS.get(found["unit"].lower())
        if unit is None:
            raise ValueError(f"unknown period {found['unit']!r} in {text!r} (s, min, h or d)")
        period = unit * float(found["count"] or 1)
        burst = int(found["burst"].replace("_", "")) if found["burst"] else limit
        if limit < 1 or period <= 0 or burst < 1:
            raise ValueError(f"a throttle needs a positive rate and burst: {text!r}")
        return cls(limit, period, burst, local)

    @property
    def interval(self) -> float:
        """Seconds between two units at the sustained rate."""
        return self.period_seconds / self.limit

    @property
    def per_second(self) -> float:
        return self.limit / self.period_seconds

    def __str__(self) -> str:
        prefix = LOCAL_PREFIX if self.local else ""
        burst = f",max_burst={self.max_burst}" if self.max_burst != self.limit else ""
        return f"{prefix}{self.limit}/{self.period_seconds:g}s{burst}"


@dataclass(frozen=True, slots=True)
class GcraDecision:
    """Whether the units pass, the key's TAT after the decision, and how long to wait."""

    allowed: bool
    tat: float
    retry_after: float
    """0 when allowed; otherwise seconds until the same request would pass."""


def gcra(spec: ThrottleSpec, tat: float | None, now: float, quantity: int = 1) -> GcraDecision:
    """Admit ``quantity`` units at ``now`` for a key whose TAT is ``tat`` (None: idle).

    Allowed units move the TAT on; a refusal leaves it where it was.
    """
    start = now if tat is None or tat < now else tat
    new_tat = start + quantity * spec.interval
    excess = new_tat - now - spec.max_burst * spec.interval
    if excess > TOLERANCE:
        return GcraDecision(False, start if tat is not None else now, excess)
    return GcraDecision(True, new_tat, 0.0)


def admissible(spec: ThrottleSpec, tat: float | None, now: float, wanted: int) -> int:
    """How many of ``wanted`` units would pass at ``now`` (0..wanted)."""
    start = now if tat is None or tat < now else tat
    room = (now + spec.max_burst * spec.interval - start + TOLERANCE) / spec.interval
    return max(0, min(wanted, int(room)))


@dataclass(frozen=True, slots=True)
class GcraTake:
    """Units taken from a throttle, the key's TAT after them, and how long to wait."""

    granted: int
    tat: float
    retry_after: float
    """0 when all units wanted were granted; else seconds until one more unit passes."""


def take(spec: ThrottleSpec, tat: float | None, now: float, wanted: int) -> GcraTake:
    """Take the ``admissible`` units of ``wanted`` at ``now``: what a limiter does per key
    (the Redis limiter's script is this function in Lua)."""
    granted = admissible(spec, tat, now, wanted)
    start = now if tat is None or tat < now else tat
    new_tat = start + granted * spec.interval
    if granted == wanted:
        return GcraTake(granted, new_tat, 0.0)
    burst_end = now + spec.max_burst * spec.interval
    return GcraTake(granted, new_tat, max(0.0, new_tat + spec.interval - burst_end))
