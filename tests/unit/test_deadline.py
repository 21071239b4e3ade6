"""One timer serves a connection's successive deadlines (engine.smtp.deadline)."""

from __future__ import annotations

import asyncio

from engine.smtp.deadline import DeadlineTimer


async def test_a_wait_past_its_deadline_expires_and_one_ended_in_time_does_not() -> None:
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    timer = DeadlineTimer(loop, lambda: expired.append(loop.time()))

    timer.start(loop.time() + 0.05)
    timer.stop()  # ended in time: the armed timer fires into no wait
    await asyncio.sleep(0.08)
    assert expired == []

    deadline = loop.time() + 0.05
    timer.start(deadline)
    await asyncio.sleep(0.1)
    assert len(expired) == 1 and expired[0] >= deadline
    timer.cancel()


async def test_a_later_wait_rearms_the_timer_that_fired_early() -> None:
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    timer = DeadlineTimer(loop, lambda: expired.append(loop.time()))
    timer.start(loop.time() + 0.02)
    timer.stop()
    deadline = loop.time() + 0.1  # armed for the first deadline, waiting for this one
    timer.start(deadline)
    await asyncio.sleep(0.2)
    # The timer fired at the first deadline, into this wait, and was armed again:
    # it expired once, not before this wait's deadline.
    assert len(expired) == 1 and expired[0] >= deadline
    timer.cancel()


async def test_cancel_ends_the_wait_and_the_timer() -> None:
    loop = asyncio.get_running_loop()
    expired: list[float] = []
    timer = DeadlineTimer(loop, lambda: expired.append(loop.time()))
    timer.start(loop.time() + 0.02)
    timer.cancel()
    await asyncio.sleep(0.05)
    assert expired == []
