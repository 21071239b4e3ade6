"""Throttling of failed SMTP AUTH attempts per client IP.

Pure: no clock and no I/O; every call takes ``now`` (POSIX seconds). The
submission server asks :meth:`AuthThrottle.decision` before checking a
password and reports the result with :meth:`record_failure` or
:meth:`record_success`.

Policy, with ``f`` = failures from the IP in the last ``window_seconds``:

* ``f < delay_after``: answer at once;
* ``delay_after <= f < refuse_after``: wait
  ``min(max_delay, base_delay * 2 ** (f - delay_after))`` before answering;
* ``f >= refuse_after``: refuse without checking the password, until old
  failures leave the window.

A success clears the IP's failures. The key is whatever string the caller
passes (an IPv4 address, or an IPv6 /64 prefix so one host cannot rotate
through its addresses).

Invariants: memory is bounded. Each IP keeps at most ``refuse_after``
failure times; at most ``max_tracked`` IPs are kept, the one whose latest
failure is oldest being evicted first; IPs with no failure inside the window
are pruned as new failures arrive.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

DEFAULT_MAX_TRACKED = 100_000
_MAX_DOUBLINGS = 64


@dataclass(frozen=True, slots=True)
class ThrottleDecision:
    refuse: bool
    delay_seconds: float


ALLOW = ThrottleDecision(refuse=False, delay_seconds=0.0)
REFUSE = ThrottleDecision(refuse=True, delay_seconds=0.0)


class AuthThrottle:
    """Failure counts per IP inside a sliding window, and the decision they lead to."""

    def __init__(
        self,
        delay_after: int,
        refuse_after: int,
        window_seconds: float,
        base_delay: float = 1.0,
        max_delay: float = 10.0,
        max_tracked: int = DEFAULT_MAX_TRACKED,
    ) -> None:
        if delay_after < 0 or refuse_after < 1 or delay_after > refuse_after:
            raise ValueError("need 0 <= delay_after <= refuse_after and refuse_after >= 1")
        if window_seconds <= 0 or base_delay < 0 or max_delay < base_delay or max_tracked < 1:
            raise ValueError(
                "need window_seconds > 0, 0 <= base_delay <= max_delay and max_tracked >= 1"
            )
        self._delay_after = delay_after
        self._refuse_after = refuse_after
        self._window = window_seconds
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        """The number of IPs currently tracked."""
        return len(self._failures)

    def record_failure(self, ip: str, now: float) -> None:
        times = self._failures.pop(ip, None)
        if times is None:
            times = deque(maxlen=self._refuse_after)
        times.append(now)
        self._failures[ip] = times
        self._prune(now)

    def record_success(self, ip: str, now: float) -> None:
        self._failures.pop(ip, None)
        self._prune(now)

    def failures(self, ip: str, now: float) -> int:
        """Failures from ``ip`` with ``now - window_seconds < t``."""
        times = self._failures.get(ip)
        if times is None:
            return 0
        horizon = now - self._window
        return sum(1 for t in times if t > horizon)

    def decision(self, ip: str, now: float) -> ThrottleDecision:
        count = self.failures(ip, now)
        if count >= self._refuse_after:
            return REFUSE
        if count < self._delay_after:
            return ALLOW
        doublings = min(count - self._delay_after, _MAX_DOUBLINGS)
        delay = min(self._max_delay, self._base_delay * 2.0**doublings)
        return ThrottleDecision(refuse=False, delay_seconds=delay)

    def _prune(self, now: float) -> None:
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)
        horizon = now - self._window
        while self._failures:
            oldest_ip, times = next(iter(self._failures.items()))
            if times[-1] > horizon:
                break
            del self._failures[oldest_ip]
