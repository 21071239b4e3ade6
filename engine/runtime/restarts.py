"""When the supervisor restarts an engine process that died, and when it gives up.

Postfix's master restarts a daemon process that dies and holds back a
service whose processes keep failing (master_spawn.c, master_avail.c,
``service_throttle_time``); here the service gives up instead of holding
back forever, so that systemd, which restarts the whole unit, takes over:

- a worker that dies is restarted after ``engine.restart_delay_seconds``,
  doubled for each earlier crash still inside ``engine.crash_window_seconds``,
  at most ``engine.restart_delay_max_seconds``;
- the ``engine.crash_limit``-th crash inside the window gives up: the
  supervisor stops the other workers and exits 1.

Crashes of all workers count together: a store or a disk that makes every
worker fail is one problem. Pure: ``now`` (monotonic seconds) is a
parameter; no processes, no clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from config.schema import EngineSettings


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_seconds: float
    max_delay_seconds: float
    crash_limit: int
    crash_window_seconds: float

    @classmethod
    def of(cls, engine: EngineSettings) -> RestartPolicy:
        return cls(
            first_delay_seconds=engine.restart_delay_seconds,
            max_delay_seconds=engine.restart_delay_max_seconds,
            crash_limit=engine.crash_limit,
            crash_window_seconds=engine.crash_window_seconds,
        )


class RestartSchedule:
    """The crashes inside the window, and the workers waiting to be restarted."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._crashes: deque[float] = deque()
        self._due: dict[int, float] = {}

    def crashed(self, worker: int, now: float) -> float | None:
        """Record that ``worker`` died at ``now``: the delay before its restart, or None
        when this crash is one too many and the service gives up."""
        policy = self.policy
        while self._crashes and now - self._crashes[0] >= policy.crash_window_seconds:
            self._crashes.popleft()
        self._crashes.append(now)
        if len(self._crashes) >= policy.crash_limit:
            return None
        earlier = len(self._crashes) - 1
        delay = min(policy.max_delay_seconds, policy.first_delay_seconds * 2.0 ** min(earlier, 64))
        self._due[worker] = now + delay
        return delay

    def due(self, now: float) -> list[int]:
        """The workers whose restart time has come, in order; they leave the schedule."""
        ready = sorted(worker for worker, at in self._due.items() if at <= now)
        for worker in ready:
            del self._due[worker]
        return ready

    def next_due(self) -> float | None:
        """When the next restart is due; None when no worker waits."""
        return min(self._due.values(), default=None)
