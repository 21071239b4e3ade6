"""One timer per connection for the deadlines of its successive waits.

A connection waits many times (for each command line, each reply, each
chunk of a DATA body), each wait with a deadline. A timer handle per wait
costs more than the wait itself, so one timer serves them all: it is armed
again only when it would fire after a new, sooner deadline, or when it
fires before the deadline of the wait under way. Shared by the server's
listener (``engine.smtp.server``), the client's connection
(``smtp_out.connection``) and the HTTP listeners' connections
(``engine.runtime.http_serving``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class DeadlineTimer:
    """Calls ``expire`` when a wait's deadline (event loop time) passes before
    the wait ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expire: Callable[[], None]) -> None:
        self._loop = loop
        self._expire = expire
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self, deadline: float) -> None:
        """A wait begins that must end by ``deadline``."""
        self._deadline = deadline
        if self._timer is None or self._due > deadline:
            self._arm(deadline)

    def stop(self) -> None:
        """The wait ended in time; the timer stays armed for the next one."""
        self._deadline = None

    def cancel(self) -> None:
        """The connection is gone: no wait, no timer."""
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(due, self._on_timer)
        self._due = due

    def _on_timer(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None:  # not waiting: the next wait arms a new timer
            return
        if deadline > self._due:  # the wait began after the timer was armed
            self._arm(deadline)
            return
        self._expire()
