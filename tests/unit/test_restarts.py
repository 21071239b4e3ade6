"""The supervisor's restart decisions: backoff, the crash window and giving up."""

from __future__ import annotations

import dataclasses

import pytest

from config.schema import EngineSettings
from engine.clock import FakeClock
from engine.runtime.restarts import RestartPolicy, RestartSchedule

POLICY = RestartPolicy(
    first_delay_seconds=1.0, max_delay_seconds=5.0, crash_limit=5, crash_window_seconds=60.0
)


@pytest.mark.parametrize(
    ("crash_times", "delays"),
    [
        ([0], [1.0]),
        ([0, 10, 20, 30], [1.0, 2.0, 4.0, 5.0]),  # doubling, capped
        ([0, 10, 20, 30, 40], [1.0, 2.0, 4.0, 5.0, None]),  # the fifth within 60 s gives up
        ([0, 10, 20, 30, 60], [1.0, 2.0, 4.0, 5.0, 5.0]),  # the first has left the window
        ([0, 100, 200, 300, 400, 500], [1.0] * 6),  # crashes far apart never add up
        ([0, 59.9, 119.8], [1.0, 2.0, 2.0]),
    ],
)
def test_delay_doubles_within_the_window_and_the_limit_gives_up(
    crash_times: list[float], delays: list[float | None]
) -> None:
    clock = FakeClock(start=0.0)
    schedule = RestartSchedule(POLICY)
    got = []
    for at in crash_times:
        clock.advance(at - clock.now())
        got.append(schedule.crashed(0, clock.now()))
    assert got == delays


def test_restarts_come_due_in_time_and_once() -> None:
    clock = FakeClock(start=1000.0)
    schedule = RestartSchedule(POLICY)
    assert schedule.next_due() is None
    assert schedule.crashed(2, clock.now()) == 1.0
    clock.advance(0.5)
    assert schedule.crashed(0, clock.now()) == 2.0
    assert schedule.next_due() == 1001.0
    assert schedule.due(clock.now()) == []  # later
    clock.advance(0.5)
    assert schedule.due(clock.now()) == [2]  # now
    assert schedule.due(clock.now()) == []
    assert schedule.next_due() == 1002.5
    clock.advance(10)
    assert schedule.due(clock.now()) == [0]
    assert schedule.next_due() is None


def test_a_limit_of_one_gives_up_at_the_first_crash() -> None:
    schedule = RestartSchedule(dataclasses.replace(POLICY, crash_limit=1))
    assert schedule.crashed(0, 0.0) is None
    assert schedule.next_due() is None


def test_the_policy_comes_from_the_engine_settings() -> None:
    engine = EngineSettings()
    assert RestartPolicy.of(engine) == RestartPolicy(
        first_delay_seconds=1.0, max_delay_seconds=30.0, crash_limit=5, crash_window_seconds=60.0
    )
