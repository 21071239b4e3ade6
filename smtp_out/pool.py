"""Connection reuse per lane (source x site), and what the lanes remember.

Owns ``ConnectionPool``: the connection slots of every lane, the idle
sessions kept for reuse, the waiters for a slot, the per-site concurrency
window (``smtp_out.feedback``, Postfix SCHEDULER_README) and ``TlsMemory``,
the hosts whose TLS is broken. ``connection_limit``, ``max_deliveries`` and
``idle_timeout_seconds`` below are those of the lane
(``engine.scheduler.shaping``).

In: ``checkout(lane)`` before an attempt, ``release(slot, session)`` after
it, ``record(lane, outcome)`` for each outcome of a connection. Out: a
``Slot`` (an idle session to reuse, or the right to open one) or a
``Congested`` refusal, which the caller turns into a transient outcome.

Rules:

- A lane has at most ``min(connection_limit, window of its site)``
  attempts in progress (slots out); idle sessions count towards
  ``connection_limit`` and are handed out before new connections are
  opened (Postfix connection cache, ``smtp_connection_cache_on_demand``).
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

Invariant: every slot handed out is released exactly once, and a slot given
to a waiter that has already timed out goes back to the lane.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from engine.clock import Clock
from engine.delivery.outcome import Outcome, Scope
from engine.scheduler.shaping import LaneShaping, Shaping
from smtp_out.client_session import ClientSession
from smtp_out.feedback import ConcurrencyWindow
from smtp_out.settings import ClientSettings

Lane = tuple[str, str]
"""(source name, site)."""

TLS_MEMORY_SIZE = 10_000


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


@dataclass(frozen=True, slots=True)
class Congested:
    """No slot: too many waiters, or the wait ran out."""

    reason: str


@dataclass(slots=True)
class _Idle:
    session: ClientSession
    since: float


@dataclass(slots=True)
class _LaneState:
    busy: int = 0
    idle: deque[_Idle] = field(default_factory=deque)
    waiters: deque[asyncio.Future[ClientSession | None]] = field(default_factory=deque)
    """Each gets its slot, with the idle session to reuse (if any) handed over with it."""

    @property
    def unused(self) -> bool:
        return self.busy == 0 and not self.idle and not self.waiters


class ConnectionPool:
    """Slots, idle sessions and feedback for every lane (see the module docstring)."""

    def __init__(self, settings: ClientSettings, shaping: Shaping, clock: Clock) -> None:
        self._settings = settings
        self.shaping = shaping
        self._clock = clock
        self._lanes: dict[Lane, _LaneState] = {}
        self._windows: dict[str, ConcurrencyWindow] = {}
        self.tls_memory = TlsMemory(clock, settings.broken_tls_memory_seconds)
        self._closed = False

    @property
    def idle_connections(self) -> int:
        return sum(len(state.idle) for state in self._lanes.values())

    def limits(self, lane: Lane) -> LaneShaping:
        """The lane's shaping."""
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

    async def checkout(self, lane: Lane) -> Slot | Congested:
        """A slot on ``lane``, waiting for one if the lane is full."""
        state = self._lanes.setdefault(lane, _LaneState())
        if not state.waiters and state.busy < self.window(lane):
            state.busy += 1
            return await self._slot(lane, state)
        if len(state.waiters) >= self._settings.max_waiters:
            return Congested(f"{len(state.waiters)} deliveries already wait for a connection")
        granted: asyncio.Future[ClientSession | None] = asyncio.get_running_loop().create_future()
        state.waiters.append(granted)
        seconds = self._settings.wait_timeout_seconds
        try:
            async with asyncio.timeout(seconds):
                session = await granted
        except TimeoutError:
            await self._withdraw(lane, state, granted)
            return Congested(f"no connection slot free within {seconds:g} s")
        except BaseException:
            await self._withdraw(lane, state, granted)
            raise
        return Slot(lane, session)

    async def release(self, slot: Slot, session: ClientSession | None) -> None:
        """Give the slot back, keeping ``session`` idle if it may be reused."""
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
            state.idle.append(_Idle(session, self._clock.now()))
        self._wake(state, slot.lane)
        if state.unused:
            del self._lanes[slot.lane]
        if session is not None and not keep:
            await session.close()

    async def close_idle(self, *, expired_only: bool = False) -> None:
        """Close idle sessions: all of them, or only those idle too long or no longer usable."""
        stale: list[ClientSession] = []
        for lane, state in list(self._lanes.items()):
            stale.extend(self._drop_stale(lane, state, everything=not expired_only))
            if state.unused:
                del self._lanes[lane]
        await _close_all(stale)

    async def close(self) -> None:
        """Close every idle session; sessions released later are closed too."""
        self._closed = True
        await self.close_idle()

    async def _slot(self, lane: Lane, state: _LaneState) -> Slot:
        """The slot already counted in ``busy``, with the freshest usable idle session."""
        stale = self._drop_stale(lane, state, everything=False)
        session = state.idle.pop().session if state.idle else None
        await _close_all(stale)
        return Slot(lane, session)

    def _drop_stale(
        self, lane: Lane, state: _LaneState, *, everything: bool
    ) -> list[ClientSession]:
        oldest = self._clock.now() - self.limits(lane).idle_timeout_seconds
        keep: deque[_Idle] = deque()
        stale: list[ClientSession] = []
        for idle in state.idle:
            fresh = idle.since > oldest and idle.session.usable
            if fresh and not everything:
                keep.append(idle)
            else:
                stale.append(idle.session)
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

    def _take_idle(self, lane: Lane, state: _LaneState) -> ClientSession | None:
        """The freshest idle session, if it may be reused now (stale ones wait for
        ``_drop_stale``)."""
        if not state.idle:
            return None
        idle = state.idle[-1]
        if idle.since <= self._clock.now() - self.limits(lane).idle_timeout_seconds:
            return None
        if not idle.session.usable:
            return None
        state.idle.pop()
        return idle.session

    async def _withdraw(
        self, lane: Lane, state: _LaneState, granted: asyncio.Future[ClientSession | None]
    ) -> None:
        """A waiter gives up: leave the queue, or hand back the slot it was just given."""
        if granted.done() and not granted.cancelled():
            await self.release(Slot(lane, None), granted.result())
            return
        granted.cancel()
        if granted in state.waiters:
            state.waiters.remove(granted)
        if state.unused:
            del self._lanes[lane]


async def _close_all(sessions: list[ClientSession]) -> None:
    if sessions:
        await asyncio.gather(*(session.close() for session in sessions))
