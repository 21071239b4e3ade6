"""Warmup: the ramp day, cap and state of a (source, provider) pair from its history,
the shipped plan, the settings, and a simulated month of sending under the caps."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import ConfigError, load_settings
from config.schema import BUILTIN_WARMUP_PLANS, SchedulerSettings, Settings, WarmupPlanSettings
from engine.scheduler.warmup import (
    BUILTIN_PLANS,
    DayCount,
    WarmupPlan,
    WarmupPolicy,
    WarmupState,
    WarmupStatus,
    plans_from_settings,
    seconds_to_next_day,
    utc_day,
    warmup_status,
)

PLAN = WarmupPlan("short", (10, 20, 30))
POLICY = WarmupPolicy()
T = 20_000
"""Today in the table tests (a UTC day number)."""

WARMING, PAUSED, WARM, RESTARTED = (
    WarmupState.WARMING,
    WarmupState.PAUSED,
    WarmupState.WARM,
    WarmupState.RESTARTED,
)


@pytest.mark.parametrize(
    ("history", "day", "cap", "state"),
    [
        pytest.param([], 1, 10, WARMING, id="never sent"),
        pytest.param([DayCount(T - 1, 5)], 2, 20, WARMING, id="one sending day"),
        pytest.param(
            [DayCount(T - 9, 5), DayCount(T - 4, 5)], 3, 30, WARMING, id="skipped days do not count"
        ),
        pytest.param([DayCount(T - 1, 0, 3)], 1, 10, WARMING, id="a day without sending"),
        pytest.param([DayCount(T, 500)], 1, 10, WARMING, id="today's counts wait for tomorrow"),
        pytest.param([DayCount(T + 1, 500)], 1, 10, WARMING, id="future days are ignored"),
        pytest.param([DayCount(T - d, 9) for d in (1, 2, 3)], 4, None, WARM, id="past the plan"),
        pytest.param(
            [DayCount(T - 2, 5), DayCount(T - 1, 100, deferred=21)], 2, 20, PAUSED, id="deferrals"
        ),
        pytest.param(
            [DayCount(T - 1, 1000, complained=4)], 1, 10, PAUSED, id="complaints above 0.3%"
        ),
        pytest.param(
            [DayCount(T - 1, 1000, deferred=200, complained=3)], 2, 20, WARMING, id="at the rates"
        ),
        pytest.param(
            [DayCount(T - 1, 19, deferred=19, complained=19)], 2, 20, WARMING, id="small sample"
        ),
        pytest.param(
            [DayCount(T - 1, 10), DayCount(T - 1, 15, deferred=15)],
            1,
            10,
            PAUSED,
            id="counts of one day add up",
        ),
        pytest.param(
            [DayCount(T - 3, 100, deferred=90), DayCount(T - 2, 100), DayCount(T - 1, 100)],
            3,
            30,
            WARMING,
            id="a pause then sending again",
        ),
        pytest.param([DayCount(T - 31, 5)], 1, 10, RESTARTED, id="idle 30 days"),
        pytest.param([DayCount(T - 30, 5)], 2, 20, WARMING, id="idle 29 days"),
        pytest.param(
            [DayCount(T - 40 - d, 5) for d in range(5)], 1, 10, RESTARTED, id="warm then idle"
        ),
        pytest.param(
            [DayCount(T - 50, 5), DayCount(T - 49, 5), DayCount(T - 2, 5), DayCount(T - 1, 5)],
            3,
            30,
            WARMING,
            id="the ramp counts from the last idle gap",
        ),
    ],
)
def test_status_of_a_history(
    history: list[DayCount], day: int, cap: int | None, state: WarmupState
) -> None:
    status = warmup_status(PLAN, history, T, POLICY)
    assert (status.day, status.cap, status.state) == (day, cap, state)
    assert warmup_status(PLAN, reversed(history), T, POLICY) == status


@pytest.mark.parametrize(
    ("history", "words"),
    [
        ([], ["day 1 of 3", "'short'"]),
        (
            [DayCount(T - 1, 100, deferred=35)],
            ["paused at day 1", "deferral rate 35.00%", "20.00%"],
        ),
        (
            [DayCount(T - 1, 1000, deferred=500, complained=10)],
            ["deferral rate 50.00%", "complaint rate 1.00% above 0.30%"],
        ),
        ([DayCount(T - d, 5) for d in (1, 2, 3)], ["done after 3 sending days"]),
        ([DayCount(T - 45, 5)], ["idle 44 days", "restart after 30", "day 1"]),
    ],
)
def test_the_reason_says_why(history: list[DayCount], words: list[str]) -> None:
    reason = warmup_status(PLAN, history, T, POLICY).reason
    assert all(word in reason for word in words), reason


def test_the_policy_is_a_parameter() -> None:
    history = [DayCount(T - 1, 10, deferred=5), DayCount(T - 20, 5)]
    strict = WarmupPolicy(deferral_pause_rate=0.4, min_day_sample=10, idle_restart_days=10)
    assert warmup_status(PLAN, history, T, strict) == WarmupStatus(
        1,
        10,
        PAUSED,
        "paused at day 1 of plan 'short': last sending day deferral rate 50.00% above 40.00%",
    )
    assert warmup_status(PLAN, history, T, POLICY).day == 3


@pytest.mark.parametrize(
    ("now", "day", "left"),
    [
        (0.0, 0, 86400.0),
        (86399.5, 0, 0.5),
        (86400.0, 1, 86400.0),
        (1_700_000_000.0, 19675, 6400.0),
        (-1.0, -1, 1.0),
    ],
)
def test_utc_days(now: float, day: int, left: float) -> None:
    assert utc_day(now) == day
    assert seconds_to_next_day(now) == left


def test_the_standard_plan_is_the_published_schedule() -> None:
    standard = BUILTIN_PLANS["standard"]
    assert tuple(BUILTIN_PLANS) == BUILTIN_WARMUP_PLANS
    assert standard.name == "standard"
    assert len(standard.daily) == 29
    assert standard.daily[:5] == (200, 500, 1_000, 2_000, 5_000)
    assert standard.daily[-1] == 10_000_000
    assert list(standard.daily) == sorted(set(standard.daily))
    history = [DayCount(T - d, 1) for d in range(1, 30)]
    assert warmup_status(standard, history, T, POLICY).state == WARM


def test_plans_and_policy_from_settings() -> None:
    settings = Settings(
        warmup_plans={"slow": WarmupPlanSettings([5, 10]), "standard": WarmupPlanSettings([1])},
        scheduler=SchedulerSettings(
            warmup_deferral_pause_rate=0.5,
            warmup_complaint_pause_rate=0.01,
            warmup_min_day_sample=7,
            warmup_idle_restart_days=9,
        ),
    )
    assert plans_from_settings(settings) == {
        "standard": WarmupPlan("standard", (1,)),
        "slow": WarmupPlan("slow", (5, 10)),
    }
    assert plans_from_settings(Settings()) == dict(BUILTIN_PLANS)
    assert WarmupPolicy.from_settings(settings) == WarmupPolicy(0.5, 0.01, 7, 9)
    assert WarmupPolicy.from_settings(Settings()) == WarmupPolicy()


def test_sources_name_their_plan_and_weight(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        "[warmup_plans.slow]\ndaily = [5, 10, 20]\n"
        '[sources.ip2]\naddress = "127.0.0.2"\nehlo_hostname = "mta2.example.com"\n'
        'warmup = "slow"\nweight = 3\n'
        '[sources.ip3]\naddress = "127.0.0.3"\nehlo_hostname = "mta3.example.com"\n'
        'warmup = "standard"\n'
        "[scheduler]\nwarmup_idle_restart_days = 45\n"
    )
    settings = load_settings(path)
    assert (settings.sources["ip2"].warmup, settings.sources["ip2"].weight) == ("slow", 3)
    assert (settings.sources["ip3"].warmup, settings.sources["ip3"].weight) == ("standard", 1)
    assert settings.sources["default"].warmup == ""
    assert plans_from_settings(settings)["slow"] == WarmupPlan("slow", (5, 10, 20))
    assert WarmupPolicy.from_settings(settings).idle_restart_days == 45


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ('[sources.default]\nwarmup = "fast"\n', "sources.default.warmup", "standard, got 'fast'"),
        (
            '[warmup_plans.slow]\ndaily = [1]\n[sources.default]\nwarmup = "Slow"\n',
            "sources.default.warmup",
            "one of slow, standard",
        ),
        ("[warmup_plans.slow]\ndaily = []\n", "warmup_plans.slow.daily", "at least one"),
        ("[warmup_plans.slow]\n", "warmup_plans.slow.daily", "at least one"),
        ("[warmup_plans.slow]\ndaily = [5, 0]\n", "warmup_plans.slow.daily[1]", "at least 1"),
        ('[warmup_plans.slow]\ndaily = ["5"]\n', "warmup_plans.slow.daily[0]", "expected int"),
        ("[warmup_plans.slow]\ndaily = [5]\nramp = 1\n", "warmup_plans.slow.ramp", "unknown"),
        ("[sources.default]\nweight = 0\n", "sources.default.weight", "at least 1"),
        ("[sources.default]\nweight = 1001\n", "sources.default.weight", "at most 1000"),
        ("[scheduler]\nwarmup_deferral_pause_rate = 1.5\n", "scheduler.", "at most 1"),
        ("[scheduler]\nwarmup_min_day_sample = 0\n", "scheduler.", "at least 1"),
        ("[scheduler]\nwarmup_idle_restart_days = 0\n", "scheduler.", "at least 1"),
    ],
)
def test_warmup_config_errors_name_the_key(
    tmp_path: Path, toml: str, key: str, problem: str
) -> None:
    path = tmp_path / "p.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.file == str(path)
    assert caught.value.key.startswith(key)
    assert problem in caught.value.problem


histories = st.lists(
    st.builds(
        DayCount,
        day=st.integers(T - 120, T + 3),
        sent=st.integers(0, 200),
        deferred=st.integers(0, 200),
        complained=st.integers(0, 5),
    ),
    max_size=60,
)


@given(histories)
def test_the_cap_never_passes_the_plan_for_the_sending_days_before(
    history: list[DayCount],
) -> None:
    status = warmup_status(PLAN, history, T, POLICY)
    sending_days = len({count.day for count in history if count.sent > 0 and count.day < T})
    assert 1 <= status.day <= sending_days + 1
    if status.cap is None:
        assert status.state == WARM and sending_days >= len(PLAN.daily)
    else:
        assert status.cap == PLAN.daily[status.day - 1]


def test_a_simulated_month_never_sends_more_than_the_plan() -> None:
    """Three providers, a fake sender that sends ``min(demand, cap)`` each day: google
    skips days and has a deferral spike, yahoo goes idle for 35 days, microsoft sends
    every day."""
    plan = BUILTIN_PLANS["standard"]
    start = 19_800
    demand = 3_000_000
    skipped = {"google": {4, 5, 11}, "yahoo": set(range(10, 45)), "microsoft": set()}
    spike = {("google", 8): 0.5}
    history: dict[str, list[DayCount]] = {provider: [] for provider in skipped}
    trace: dict[str, list[WarmupStatus]] = {provider: [] for provider in skipped}
    for offset in range(60):
        for provider, days_off in skipped.items():
            status = warmup_status(plan, history[provider], start + offset, POLICY)
            trace[provider].append(status)
            wanted = 0 if offset in days_off else demand
            sent = min(wanted, status.cap if status.cap is not None else wanted)
            deferred = int(sent * spike.get((provider, offset), 0.01))
            history[provider].append(DayCount(start + offset, sent, deferred))

    for provider in skipped:
        sending_before = 0
        for offset, (status, count) in enumerate(
            zip(trace[provider], history[provider], strict=True)
        ):
            assert count.sent <= plan.daily[min(sending_before, len(plan.daily) - 1)]
            if status.cap is not None:
                assert count.sent <= status.cap
            if offset:
                step = status.day - trace[provider][offset - 1].day
                previous = history[provider][offset - 1]
                advanced = previous.sent > 0 and (provider, offset - 1) not in spike
                assert step == (1 if advanced else 0) or status.state == RESTARTED
            sending_before += count.sent > 0

    assert _days(trace["microsoft"]) == list(range(1, 61))
    assert trace["microsoft"][29].state == WARM and trace["microsoft"][28].cap == 10_000_000
    google = _days(trace["google"])
    assert google[:13] == [1, 2, 3, 4, 5, 5, 5, 6, 7, 7, 8, 9, 9]
    assert trace["google"][9].state == PAUSED
    assert "deferral rate 50.00%" in trace["google"][9].reason
    assert [count.sent for count in history["google"][:4]] == [200, 500, 1_000, 2_000]
    yahoo = _days(trace["yahoo"])
    assert yahoo[:11] == list(range(1, 12))
    assert yahoo[38:47] == [11, 11, 1, 1, 1, 1, 1, 1, 2]
    assert {trace["yahoo"][i].state for i in range(40, 46)} == {RESTARTED}
    assert [count.sent for count in history["yahoo"][45:47]] == [200, 500]
    assert sum(c.sent for c in history["yahoo"]) == sum(plan.daily[:10]) + sum(plan.daily[:15])


def _days(trace: list[WarmupStatus]) -> list[int]:
    return [status.day for status in trace]
