"""The concurrency window of a site: how many connections it may have at once.

Owns ``ConcurrencyWindow``, the pure arithmetic behind connection feedback
(Postfix ``qmgr_feedback.c``, SCHEDULER_README "concurrency feedback"): a
site that keeps failing at the session or site level (refused connections,
timeouts, ``421``, TLS breakage) is given a single connection until it
answers again, and is then allowed one more connection per success, up to
the configured limit.

In: ``success()`` after an attempt the site answered (delivered, or a reply
about the message or the recipient), ``failure()`` after a session- or
site-scope failure. Out: ``window``, the number of connections the site may
have open at once, and ``consecutive_failures``.

Invariants: pure (no clock, no I/O); ``1 <= window <= limit``; a failure sets
the window to 1 at once; a success resets the failure count and adds exactly
one to the window (never above ``limit``).
"""

from __future__ import annotations


class ConcurrencyWindow:
    """Per-site connection window: shrink to 1 on failure, grow by one per success."""

    __slots__ = ("_consecutive_failures", "_limit", "_window")

    def __init__(self, limit: int, initial: int | None = None) -> None:
        if limit < 1:
            raise ValueError(f"connection limit must be at least 1, got {limit}")
        start = limit if initial is None else initial
        if not 1 <= start <= limit:
            raise ValueError(f"initial window must be within 1..{limit}, got {start}")
        self._limit = limit
        self._window = start
        self._consecutive_failures = 0

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> int:
        """Connections the site may have open at once."""
        return self._window

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    @property
    def failing(self) -> bool:
        return self._consecutive_failures > 0

    def success(self) -> None:
        self._consecutive_failures = 0
        self._window = min(self._limit, self._window + 1)

    def failure(self) -> None:
        self._consecutive_failures += 1
        self._window = 1
