"""Throttling of SMTP AUTH attempts per client.

Pure: no clock and no I/O; every call takes ``now`` (POSIX seconds). An AUTH
attempt asks :meth:`AuthThrottle.admit` before checking a password. Admitted,
it holds a slot of its client until it reports :meth:`record_failure` (the
slot becomes a failure), :meth:`record_success` or :meth:`release` (no
verdict).

The client is the IPv4 address, or the IPv6 /64 so one host cannot rotate
through its addresses (:func:`client_key`). With ``f`` = the client's failures
in the last ``window_seconds`` and ``a`` = its attempts in flight:

* ``f >= refuse_after``: refuse without checking the password, until old
  failures leave the window;
* ``f + a >= refuse_after``: wait until an attempt ends, then ask again, so
  parallel connections check no more passwords than the limit;
* otherwise admit.

After a failure the reply waits ``min(max_delay, base_delay * 2 ** (f -
delay_after))`` when ``f >= delay_after`` (this failure included).

Each failure is kept with the username it named. A success clears only the
client's failures naming that same username (its own earlier typos): failures
naming any other username stay until they leave the window, so logging in to
one account never buys guesses at another.

Invariants: memory is bounded. A client keeps at most ``refuse_after``
failures, each a time and a fixed-size hash of the username (Python's string
hash, keyed per process, so nobody can aim a collision); at most
``max_tracked`` clients are kept, the one whose latest failure is oldest being
evicted first; clients with no failure inside the window are pruned as new
failures arrive; attempts in flight are kept only while in flight.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter, OrderedDict, deque
from typing import NamedTuple

DEFAULT_MAX_TRACKED = 100_000
_MAX_DOUBLINGS = 64


class Admission(enum.Enum):
    """What an AUTH attempt may do now."""

    CHECK = "check"
    """A slot is held: check the password, then report the result."""
    WAIT = "wait"
    """Attempts in flight fill the limit: ask again when one ends."""
    REFUSE = "refuse"
    """Too many failures: answer without checking the password."""


def client_key(host: str) -> str:
    """The key a client's attempts count under: its IPv4 address, or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address.packed, 64), strict=False))
    return str(address)


class _Failure(NamedTuple):
    time: float
    username_hash: int


class AuthThrottle:
    """Failures and attempts in flight per client, and what they allow."""

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
        self._failures: OrderedDict[str, deque[_Failure]] = OrderedDict()
        self._in_flight: Counter[str] = Counter()

    def __len__(self) -> int:
        """The number of clients with failures kept."""
        return len(self._failures)

    def failures(self, client: str, now: float) -> int:
        """Failures of ``client`` with ``now - window_seconds < t``."""
        kept = self._failures.get(client)
        if kept is None:
            return 0
        horizon = now - self._window
        return sum(1 for failure in kept if failure.time > horizon)

    def in_flight(self, client: str) -> int:
        """Admitted attempts of ``client`` not yet reported."""
        return self._in_flight[client]

    def refuses(self, client: str, now: float) -> bool:
        """Whether ``client`` has reached the failure limit (checked at connect)."""
        return self.failures(client, now) >= self._refuse_after

    def admit(self, client: str, now: float) -> Admission:
        """May an attempt of ``client`` check its password now; ``CHECK`` holds a slot."""
        failures = self.failures(client, now)
        if failures >= self._refuse_after:
            return Admission.REFUSE
        if failures + self._in_flight[client] >= self._refuse_after:
            return Admission.WAIT
        self._in_flight[client] += 1
        return Admission.CHECK

    def record_failure(self, client: str, username: str, now: float) -> float:
        """The admitted attempt failed: its slot becomes a failure. Returns the
        seconds to wait before answering."""
        self.release(client)
        kept = self._failures.pop(client, None)
        if kept is None:
            kept = deque(maxlen=self._refuse_after)
        kept.append(_Failure(now, hash(username)))
        self._failures[client] = kept
        self._prune(now)
        count = self.failures(client, now)
        if count < self._delay_after:
            return 0.0
        doublings = min(count - self._delay_after, _MAX_DOUBLINGS)
        return min(self._max_delay, self._base_delay * 2.0**doublings)

    def record_success(self, client: str, username: str) -> None:
        """The admitted attempt succeeded: its slot is free, and the client's
        failures naming ``username`` are forgotten; no others are."""
        self.release(client)
        kept = self._failures.get(client)
        if kept is None:
            return
        named = hash(username)
        others = [failure for failure in kept if failure.username_hash != named]
        if not others:
            del self._failures[client]
        elif len(others) < len(kept):
            self._failures[client] = deque(others, maxlen=self._refuse_after)

    def release(self, client: str) -> None:
        """The admitted attempt ended without a verdict: its slot is free."""
        count = self._in_flight.pop(client, 0)
        if count > 1:
            self._in_flight[client] = count - 1

    def _prune(self, now: float) -> None:
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)
        horizon = now - self._window
        while self._failures:
            oldest, kept = next(iter(self._failures.items()))
            if kept[-1].time > horizon:
                break
            del self._failures[oldest]
