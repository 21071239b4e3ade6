"""Connection reuse per lane (source x site), the lane's shared connection limits,
and what the lanes remember.

Owns ``ConnectionPool``: the connection slots of every lane, the idle
sessions kept for reuse, the waiters for a slot, the shared connection slots
each open connection holds in the limiter (``engine.limits``), the per-site
concurrency window (``smtp_out.feedback``, Postfix SCHEDULER_README) and
``TlsMemory``, the hosts whose TLS is broken. ``connection_limit``,
``max_deliveries``, ``idle_timeout_seconds`` and the rates below are those of
the lane (``engine.scheduler.shaping``), or the scaled-down shaping the last
checkout of the lane brought (``checkout(lane, shaping)``).

In: ``checkout(lane)`` before an attempt, ``admit(slot)`` before each new
connection, ``release(slot, session)`` after the attempt, ``record(lane,
outcome)`` for each outcome of a connection, ``renew()`` now and then. Out: a
``Slot`` (an idle session to reuse, or the right to open one) or a
``Congested`` refusal, which the caller turns into a delayed outcome (our own
limits, no attempt counted).

Rules:

- A lane has at most ``min(connection_limit, window of its site)``
  attempts in progress (slots out) in this process; idle sessions count
  towards ``connection_limit`` and are handed out before new connections are
  opened (Postfix connection cache, ``smtp_connection_cache_on_demand``).
- Across every process sharing the limiter, a lane has at most
  ``connection_limit`` connections open (limiter slots
  ``conn:SOURCE|SITE``) and, when its provider sets
  ``provider_connection_limit``, a source has at most that many to all of the
  provider's sites (``provider_conn:SOURCE|PROVIDER``). ``admit`` takes them
  before a slot's first new connection; the connection holds them while open,
  busy or idle (a slot whose connection failed keeps them for its next try),
  and closing it gives them back. Without them in ``wait_timeout_seconds``
  (polled with a short backoff, woken early by this process's releases) the
  answer is ``Congested``. Holds expire ``SLOT_TTL_SECONDS`` after their last
  renewal, so a process that died frees its slots.
- ``max_connection_rate`` is the limiter throttle ``conn_rate:SOURCE|SITE``,
  one unit per new connection: a wait up to ``wait_timeout_seconds`` is
  waited out, a longer one is ``Congested`` with that wait as its
  ``retry_after``.
- A session is kept idle only while ``usable`` (no 421, no session- or
  site-scope failure, RSET succeeded), below ``max_deliveries`` and for at
  most ``idle_timeout_seconds``; otherwise it is closed.
- Waiters are served first come, first served; there are at most
  ``max_waiters`` per lane, each waits at most ``wait_timeout_seconds``.
  A waiter's slot comes with the freshest idle session, so a session kept
  for a waiter is never taken for a spare one and closed.
- A session- or site-scope outcome shrinks the site's window to 1; any
  other outcome lets it grow by one (Postfix ``qmgr_feedback.c``).
- A host whose STARTTLS failed is remembered for
  ``broken_tls_memory_seconds`` (injected clock); meanwhile connections to it
  go in clear (RFC 7435 §3: opportunistic TLS falls back to cleartext).

Invariants: every slot handed out is released exactly once, and a slot given
to a waiter that has already timed out goes back to the lane; every shared
slot taken is given back exactly once, after its connection is closed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
import socket
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Final

from engine.clock import Clock
from engine.delivery.outcome import Outcome, Scope
from engine.limits import Limiter
from engine.scheduler.shaping import LaneShaping, Shaping
from smtp_out.client_session import ClientSession
from smtp_out.feedback import ConcurrencyWindow
from smtp_out.settings import ClientSettings

Lane = tuple[str, str]
"""(source name, site)."""

TLS_MEMORY_SIZE = 10_000
SLOT_TTL_SECONDS: Final = 60.0
"""How long a shared connection slot stays held without a renewal (``renew``)."""
FIRST_POLL_SECONDS: Final = 0.05
LAST_POLL_SECONDS: Final = 1.0
"""Bounds of the backoff between two tries for a shared connection slot."""


class TlsMemory:
    """Hosts whose TLS handshake failed, each remembered for a while."""

    def __init__(self, clock: Clock, seconds: float, max_entries: int = TLS_MEMORY_SIZE) -> None:
        self._clock = clock
        self._seconds = seconds
        self._max_entries = max_entries
        self._until: OrderedDict[str, float] = OrderedDict()

    def remember(self, host: str) -> None:
        self._until[host] = self._clock.now() + self._seconds
        self._until.move_to_end(host)
        while len(self._until) > self._max_entries:
            self._until.popitem(last=False)

    def broken(self, host: str) -> bool:
        until = self._until.get(host)
        if until is None:
            return False
        if until <= self._clock.now():
            del self._until[host]
            return False
        return True


@dataclass(slots=True)
class Slot:
    """The right to one connection on a lane, with an idle session to reuse if any."""

    lane: Lane
    session: ClientSession | None
    holder: str | None = None
    """Holder of the shared connection slots this slot's connection holds (``admit``)."""


@dataclass(frozen=True, slots=True)
class Congested:
    """No slot: too many waiters, the wait ran out, or the connection rate is spent."""

    reason: str
    retry_after: float
    """Seconds until a new try is worth it."""


@dataclass(slots=True)
class _Idle:
    session: ClientSession
    since: float
    holder: str | None


@dataclass(slots=True)
class _LaneState:
    busy: int = 0
    idle: deque[_Idle] = field(default_factory=deque)
    waiters: deque[asyncio.Future[_Idle | None]] = field(default_factory=deque)
    """Each gets its slot, with the idle session to reuse (if any) handed over with it."""
    shaping: LaneShaping | None = None
    """The shaping the last checkout brought; None: the lane's configured shaping."""

    @property
    def unused(self) -> bool:
        return self.busy == 0 and not self.idle and not self.waiters


class ConnectionPool:
    """Slots, idle sessions, shared limits and feedback for every lane (see the module
    docstring)."""

    def __init__(
        self, settings: ClientSettings, shaping: Shaping, clock: Clock, limiter: Limiter
    ) -> None:
        self._settings = settings
        self.shaping = shaping
        self._clock = clock
        self._limiter = limiter
        self._lanes: dict[Lane, _LaneState] = {}
        self._windows: dict[str, ConcurrencyWindow] = {}
        self.tls_memory = TlsMemory(clock, settings.broken_tls_memory_seconds)
        self._closed = False
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._holder_ids = itertools.count(1)
        self._holds: dict[str, tuple[str, ...]] = {}
        """Shared slot keys by holder: those of every open connection."""
        self._freed = asyncio.Event()
        """Set (and replaced) whenever this pool gives shared slots back."""

    @property
    def idle_connections(self) -> int:
        return sum(len(state.idle) for state in self._lanes.values())

    def lane_connections(self) -> dict[Lane, int]:
        """Connections open per lane (busy or idle), lanes with none left out."""
        counts = {lane: state.busy + len(state.idle) for lane, state in self._lanes.items()}
        return {lane: count for lane, count in counts.items() if count}

    def limits(self, lane: Lane) -> LaneShaping:
        """The lane's shaping: the one its last checkout brought, else as configured."""
        state = self._lanes.get(lane)
        if state is not None and state.shaping is not None:
            return state.shaping
        return self.shaping.for_lane(*lane)

    def window(self, lane: Lane) -> int:
        """Connections the lane may have at once: its ``connection_limit``, less while
        its site is failing."""
        limit = self.limits(lane).connection_limit
        feedback = self._windows.get(lane[1])
        return limit if feedback is None else min(limit, feedback.window)

    def record(self, lane: Lane, outcome: Outcome) -> None:
        """Feedback from one outcome of a connection on ``lane``."""
        site = lane[1]
        feedback = self._windows.get(site)
        if outcome.scope in (Scope.SESSION, Scope.SITE):
            if feedback is None:
                limit = self.limits(lane).connection_limit
                feedback = self._windows[site] = ConcurrencyWindow(limit)
            feedback.failure()
        elif feedback is not None:
            feedback.success()
            if feedback.window == feedback.limit:
                del self._windows[site]
        state = self._lanes.get(lane)
        if state is not None:
            self._wake(state, lane)

    async def checkout(self, lane: Lane, shaping: LaneShaping | None = None) -> Slot | Congested:
        """A slot on ``lane``, waiting for one if the lane is full. ``shaping`` (the
        lane's, scaled down) replaces the configured one for the lane from now on;
        None returns to the configured one."""
        state = self._lanes.setdefault(lane, _LaneState())
        state.shaping = shaping
        if not state.waiters and state.busy < self.window(lane):
            state.busy += 1
            return await self._slot(lane, state)
        if len(state.waiters) >= self._settings.max_waiters:
            waiting = len(state.waiters)
            return self._congested(
                f"connection limit: {waiting} deliveries already wait on lane {_name(lane)}"
            )
        granted: asyncio.Future[_Idle | None] = asyncio.get_running_loop().create_future()
        state.waiters.append(granted)
        seconds = self._settings.wait_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                idle = await granted
        except TimeoutError:
            await self._withdraw(lane, state, granted)
            return self._congested(
                f"connection limit: no connection free on lane {_name(lane)} within {seconds:g} s"
            )
        except BaseException:
            await self._withdraw(lane, state, granted)
            raise
        return _slot_with(lane, idle)

    async def admit(self, slot: Slot) -> Congested | None:
        """Before a new connection for ``slot``: the lane's shared connection slots (once
        per slot; its later connections reuse them) and a unit of its connection rate.
        None when the connection may be opened."""
        limits = self.limits(slot.lane)
        if slot.holder is None:
            held = await self._hold(slot.lane, limits)
            if isinstance(held, Congested):
                return held
            slot.holder = held
        return await self._pace(slot.lane, limits)

    async def release(self, slot: Slot, session: ClientSession | None) -> None:
        """Give the slot back, keeping ``session`` idle if it may be reused; a connection
        not kept is closed and its shared slots given back."""
        state = self._lanes[slot.lane]
        state.busy -= 1
        limits = self.limits(slot.lane)
        keep = (
            session is not None
            and not self._closed
            and session.usable
            and session.deliveries < limits.max_deliveries_per_connection
            and state.busy + len(state.idle) < limits.connection_limit
        )
        if session is not None and keep:
            state.idle.append(_Idle(session, self._clock.now(), slot.holder))
        self._wake(state, slot.lane)
        if state.unused:
            del self._lanes[slot.lane]
        if not keep:
            try:
                if session is not None:
                    await session.close()
            finally:
                await self._unhold(slot.holder)

    async def renew(self) -> None:
        """Extend the shared slots of every open connection by ``SLOT_TTL_SECONDS``."""
        held = [(key, holder) for holder, keys in self._holds.items() for key in keys]
        if held:
            await self._limiter.renew_slots(held, self._clock.now(), SLOT_TTL_SECONDS)

    async def close_idle(self, *, expired_only: bool = False) -> None:
        """Close idle sessions: all of them, or only those idle too long or no longer usable."""
        stale: list[_Idle] = []
        for lane, state in list(self._lanes.items()):
            stale.extend(self._drop_stale(lane, state, everything=not expired_only))
            if state.unused:
                del self._lanes[lane]
        await self._close_all(stale)

    async def close(self) -> None:
        """Close every idle session; sessions released later are closed too."""
        self._closed = True
        await self.close_idle()

    async def _slot(self, lane: Lane, state: _LaneState) -> Slot:
        """The slot already counted in ``busy``, with the freshest usable idle session."""
        stale = self._drop_stale(lane, state, everything=False)
        idle = state.idle.pop() if state.idle else None
        await self._close_all(stale)
        return _slot_with(lane, idle)

    def _drop_stale(self, lane: Lane, state: _LaneState, *, everything: bool) -> list[_Idle]:
        oldest = self._clock.now() - self.limits(lane).idle_timeout_seconds
        keep: deque[_Idle] = deque()
        stale: list[_Idle] = []
        for idle in state.idle:
            fresh = idle.since > oldest and idle.session.usable
            if fresh and not everything:
                keep.append(idle)
            else:
                stale.append(idle)
        state.idle = keep
        return stale

    def _wake(self, state: _LaneState, lane: Lane) -> None:
        """Hand free slots to waiters, first come first served, each with the freshest
        idle session: one kept for a waiter is never counted as spare and closed."""
        while state.waiters and state.busy < self.window(lane):
            granted = state.waiters.popleft()
            if not granted.done():
                state.busy += 1
                granted.set_result(self._take_idle(lane, state))

    def _take_idle(self, lane: Lane, state: _LaneState) -> _Idle | None:
        """The freshest idle session, if it may be reused now (stale ones wait for
        ``_drop_stale``)."""
        if not state.idle:
            return None
        idle = state.idle[-1]
        if idle.since <= self._clock.now() - self.limits(lane).idle_timeout_seconds:
            return None
        if not idle.session.usable:
            return None
        return state.idle.pop()

    async def _withdraw(
        self, lane: Lane, state: _LaneState, granted: asyncio.Future[_Idle | None]
    ) -> None:
        """A waiter gives up: leave the queue, or hand back the slot it was just given."""
        if granted.done() and not granted.cancelled():
            slot = _slot_with(lane, granted.result())
            await self.release(slot, slot.session)
            return
        granted.cancel()
        if granted in state.waiters:
            state.waiters.remove(granted)
        if state.unused:
            del self._lanes[lane]

    async def _hold(self, lane: Lane, limits: LaneShaping) -> str | Congested:
        """A new holder of the lane's shared connection slots, waiting for them up to
        ``wait_timeout_seconds``."""
        source, site = lane
        wanted = [(f"conn:{source}|{site}", limits.connection_limit, "connection limit")]
        if limits.provider and limits.provider_connection_limit is not None:
            wanted.append(
                (
                    f"provider_conn:{source}|{limits.provider}",
                    limits.provider_connection_limit,
                    f"provider connection limit ({limits.provider})",
                )
            )
        holder = f"{self._owner}:{next(self._holder_ids)}"
        seconds = self._settings.wait_timeout_seconds
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pause = FIRST_POLL_SECONDS
        while True:
            freed = self._freed
            refused = await self._acquire(wanted, holder)
            if refused is None:
                self._holds[holder] = tuple(key for key, _, _ in wanted)
                return holder
            left = deadline - loop.time()
            if left <= 0:
                return self._congested(
                    f"{refused}: no slot on lane {_name(lane)} within {seconds:g} s"
                )
            try:
                async with asyncio.timeout(min(pause, left)):
                    await freed.wait()
            except TimeoutError:
                pause = min(pause * 2, LAST_POLL_SECONDS)

    async def _acquire(self, wanted: list[tuple[str, int, str]], holder: str) -> str | None:
        """Take every slot of ``wanted`` for ``holder``, or none of them: None, or the
        name of the limit that is full."""
        taken: list[str] = []
        try:
            for key, limit, name in wanted:
                now = self._clock.now()
                if not await self._limiter.acquire_slot(key, limit, holder, now, SLOT_TTL_SECONDS):
                    await self._give_back(taken, holder, freed=False)
                    return name
                taken.append(key)
        except BaseException:
            await asyncio.shield(self._give_back(taken, holder, freed=False))
            raise
        return None

    async def _pace(self, lane: Lane, limits: LaneShaping) -> Congested | None:
        """A unit of the lane's connection rate, waiting up to ``wait_timeout_seconds``."""
        spec = limits.max_connection_rate
        if spec is None:
            return None
        source, site = lane
        key = f"conn_rate:{source}|{site}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.wait_timeout_seconds
        while True:
            grant = await self._limiter.throttle(key, spec, self._clock.now())
            if grant.granted:
                return None
            if grant.retry_after > deadline - loop.time():
                reason = (
                    f"connection rate {spec}: next connection on lane {_name(lane)}"
                    f" in {grant.retry_after:.3g} s"
                )
                return Congested(reason, grant.retry_after)
            await asyncio.sleep(grant.retry_after)

    async def _unhold(self, holder: str | None) -> None:
        """Give back the shared slots of ``holder`` (a closed connection's)."""
        keys = self._holds.pop(holder, ()) if holder is not None else ()
        if keys:
            await self._give_back(list(keys), holder or "")

    async def _give_back(self, keys: list[str], holder: str, *, freed: bool = True) -> None:
        """Release ``holder``'s slots of ``keys``; ``freed``: wake this pool's waiters for
        shared slots (not for a partial take rolled back, which would spin them)."""
        for key in keys:
            await self._limiter.release_slot(key, holder)
        if keys and freed:
            self._freed.set()
            self._freed = asyncio.Event()

    async def _close_all(self, idle: list[_Idle]) -> None:
        """Close idle sessions, then give back their shared slots."""
        if not idle:
            return
        try:
            await asyncio.gather(*(entry.session.close() for entry in idle))
        finally:
            for entry in idle:
                await self._unhold(entry.holder)

    def _congested(self, reason: str) -> Congested:
        return Congested(reason, self._settings.delayed_retry_seconds)


def _slot_with(lane: Lane, idle: _Idle | None) -> Slot:
    if idle is None:
        return Slot(lane, None)
    return Slot(lane, idle.session, idle.holder)


def _name(lane: Lane) -> str:
    source, site = lane
    return f"{source} -> {site}"
