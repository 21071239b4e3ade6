"""Durations as operators write them: ``90s``, ``30min``, ``2h``, ``1d``, ``1h30min``.

Pure. Used by suspensions (``penguin suspend --for``), backoff rules and the
periods of throttle specs (``engine.limits.throttle``).
"""

from __future__ import annotations

import re

UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
}
_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]+)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (one or more NUMBER UNIT parts; a bare number is seconds);
    ``ValueError`` naming the problem otherwise."""
    stripped = text.strip()
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", stripped):
        seconds = float(stripped)
    else:
        seconds, pos = 0.0, 0
        while pos < len(stripped):
            part = _PART.match(stripped, pos)
            unit = _unit(part.group(2)) if part else None
            if part is None or unit is None:
                raise ValueError(f"not a duration (e.g. 90s, 30min, 2h, 1d): {text!r}")
            seconds += float(part.group(1)) * unit
            pos = part.end()
    if seconds <= 0:
        raise ValueError(f"a duration must be positive: {text!r}")
    return seconds


def _unit(name: str) -> float | None:
    lowered = name.lower()
    return UNITS.get(lowered, UNITS.get(lowered.removesuffix("s")))
