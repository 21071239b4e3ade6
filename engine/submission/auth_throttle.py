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

Failures are also counted per username, from every client, so guesses spread
over many addresses are held back too. A username named by ``refuse_after``
failures in the window is *paced*, not locked: one attempt at it is checked at
a time, and a failed one holds that turn for ``max_delay`` before its reply
(:meth:`end_turn`). Guessing at it from any number of clients then costs
``max_delay`` a guess, while its owner, whose attempt succeeds, is answered at
once; nobody can lock an account out by failing at it. A success does not
clear these failures: they leave with the window.

Invariants: memory is bounded. A client keeps at most ``refuse_after``
failures, each a time and a fixed-size hash of the username (Python's string
hash, keyed per process, so nobody can aim a collision); at most
``max_tracked`` clients are kept, the one whose latest failure is oldest being
evicted first; clients with no failure inside the window are pruned as new
failures arrive; attempts in flight are kept only while in flight. The same
bounds hold for usernames, kept by hash.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections import Counter, OrderedDict, deque
from typing import NamedTuple, TypeVar

DEFAULT_MAX_TRACKED = 100_000
_MAX_DOUBLINGS = 64


class Admission(enum.Enum):
    """What an AUTH attempt may do now."""

    CHECK = "check"
    """A slot is held: check the password, then report the result."""
    WAIT = "wait"
    """Attempts in flight fill the limit, or a paced username's turn is taken:
    ask again when an attempt ends."""
    REFUSE = "refuse"
    """Too many failures: answer without checking the password."""


@functools.lru_cache(maxsize=4096)
def client_key(host: str) -> str:
    """The key a client's attempts count under: its IPv4 address, or its IPv6 /64
    (kept for the most recent clients: parsing addresses costs more than a session)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address.packed, 64), strict=False))
    return str(address)


_Key = TypeVar("_Key", str, int)


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
        self._username_failures: OrderedDict[int, deque[_Failure]] = OrderedDict()
        self._username_in_flight: Counter[int] = Counter()

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

    def username_failures(self, username: str, now: float) -> int:
        """Failures naming ``username``, from any client, inside the window."""
        kept = self._username_failures.get(hash(username))
        if kept is None:
            return 0
        horizon = now - self._window
        return sum(1 for failure in kept if failure.time > horizon)

    def admit(self, client: str, username: str, now: float) -> Admission:
        """May an attempt of ``client`` at ``username`` check its password now;
        ``CHECK`` holds a slot of the client and a turn of the username."""
        failures = self.failures(client, now)
        if failures >= self._refuse_after:
            return Admission.REFUSE
        if failures + self._in_flight[client] >= self._refuse_after:
            return Admission.WAIT
        named = hash(username)
        if self._username_in_flight[named] and self._paced(username, now):
            return Admission.WAIT
        self._in_flight[client] += 1
        self._username_in_flight[named] += 1
        return Admission.CHECK

    def record_failure(self, client: str, username: str, now: float) -> float:
        """The admitted attempt failed: its client slot becomes a failure, and
        the username keeps its turn until :meth:`end_turn`. Returns the seconds
        to wait before answering (and ending the turn)."""
        self._release_client(client)
        failure = _Failure(now, hash(username))
        _append_latest(self._failures, client, failure, self._refuse_after)
        _append_latest(self._username_failures, failure.username_hash, failure, self._refuse_after)
        self._prune(now)
        if self._paced(username, now):
            return self._max_delay
        count = self.failures(client, now)
        if count < self._delay_after:
            return 0.0
        doublings = min(count - self._delay_after, _MAX_DOUBLINGS)
        return min(self._max_delay, self._base_delay * 2.0**doublings)

    def end_turn(self, username: str) -> None:
        """A failed attempt's reply has gone out: the username's turn is free."""
        self._release_username(username)

    def record_success(self, client: str, username: str) -> None:
        """The admitted attempt succeeded: its slot and turn are free, and the
        client's failures naming ``username`` are forgotten; no others are."""
        self.release(client, username)
        kept = self._failures.get(client)
        if kept is None:
            return
        named = hash(username)
        others = [failure for failure in kept if failure.username_hash != named]
        if not others:
            del self._failures[client]
        elif len(others) < len(kept):
            self._failures[client] = deque(others, maxlen=self._refuse_after)

    def release(self, client: str, username: str) -> None:
        """The admitted attempt ended without a verdict: its slot and turn are free."""
        self._release_client(client)
        self._release_username(username)

    def _paced(self, username: str, now: float) -> bool:
        return self.username_failures(username, now) >= self._refuse_after

    def _release_client(self, client: str) -> None:
        count = self._in_flight.pop(client, 0)
        if count > 1:
            self._in_flight[client] = count - 1

    def _release_username(self, username: str) -> None:
        named = hash(username)
        count = self._username_in_flight.pop(named, 0)
        if count > 1:
            self._username_in_flight[named] = count - 1

    def _prune(self, now: float) -> None:
        horizon = now - self._window
        _prune_oldest(self._failures, horizon, self._max_tracked)
        _prune_oldest(self._username_failures, horizon, self._max_tracked)


def _append_latest(
    kept: OrderedDict[_Key, deque[_Failure]], key: _Key, failure: _Failure, most: int
) -> None:
    """Add ``failure`` under ``key`` (keeping its ``most`` latest) and move the key last."""
    failures = kept.pop(key, None)
    if failures is None:
        failures = deque(maxlen=most)
    failures.append(failure)
    kept[key] = failures


def _prune_oldest(kept: OrderedDict[_Key, deque[_Failure]], horizon: float, most: int) -> None:
    """Keep at most ``most`` entries, dropping from the stalest (the first) and
    every leading entry whose latest failure is at or before ``horizon``."""
    while len(kept) > most:
        kept.popitem(last=False)
    while kept and next(iter(kept.values()))[-1].time <= horizon:
        kept.popitem(last=False)
