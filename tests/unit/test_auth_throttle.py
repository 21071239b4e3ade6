import pytest

from engine.auth_throttle import AuthThrottle, ThrottleDecision

IP = "192.0.2.1"
OTHER = "198.51.100.9"


def _throttle(**overrides: float) -> AuthThrottle:
    params: dict[str, float] = {
        "delay_after": 3,
        "refuse_after": 8,
        "window_seconds": 600.0,
        "base_delay": 1.0,
        "max_delay": 10.0,
    }
    params.update(overrides)
    return AuthThrottle(
        delay_after=int(params["delay_after"]),
        refuse_after=int(params["refuse_after"]),
        window_seconds=params["window_seconds"],
        base_delay=params["base_delay"],
        max_delay=params["max_delay"],
    )


@pytest.mark.parametrize(
    ("failures", "expected"),
    [
        (0, ThrottleDecision(False, 0.0)),
        (1, ThrottleDecision(False, 0.0)),
        (2, ThrottleDecision(False, 0.0)),
        (3, ThrottleDecision(False, 1.0)),
        (4, ThrottleDecision(False, 2.0)),
        (5, ThrottleDecision(False, 4.0)),
        (6, ThrottleDecision(False, 8.0)),
        (7, ThrottleDecision(False, 10.0)),
        (8, ThrottleDecision(True, 0.0)),
        (20, ThrottleDecision(True, 0.0)),
    ],
)
def test_decision_by_failure_count(failures: int, expected: ThrottleDecision) -> None:
    throttle = _throttle()
    for i in range(failures):
        throttle.record_failure(IP, 1000.0 + i)
    assert throttle.decision(IP, 1000.0 + failures) == expected
    assert throttle.decision(OTHER, 1000.0 + failures) == ThrottleDecision(False, 0.0)


# (failure times, now, expected count): a failure at t counts while now - t < window (600).
@pytest.mark.parametrize(
    ("times", "now", "count"),
    [
        ([0.0, 10.0, 20.0], 30.0, 3),
        ([0.0, 10.0, 20.0], 599.0, 3),
        ([0.0, 10.0, 20.0], 600.0, 2),
        ([0.0, 10.0, 20.0], 615.0, 1),
        ([0.0, 10.0, 20.0], 620.0, 0),
        ([0.0, 10.0, 20.0], 10_000.0, 0),
    ],
)
def test_window(times: list[float], now: float, count: int) -> None:
    throttle = _throttle()
    for t in times:
        throttle.record_failure(IP, t)
    assert throttle.failures(IP, now) == count


def test_refusal_ends_when_failures_leave_the_window() -> None:
    throttle = _throttle(delay_after=1, refuse_after=3, window_seconds=60.0)
    for t in (0.0, 1.0, 2.0):
        throttle.record_failure(IP, t)
    assert throttle.decision(IP, 30.0).refuse
    assert throttle.decision(IP, 60.5) == ThrottleDecision(False, 2.0)
    assert throttle.decision(IP, 62.0) == ThrottleDecision(False, 0.0)


def test_success_clears() -> None:
    throttle = _throttle()
    for t in range(8):
        throttle.record_failure(IP, float(t))
        throttle.record_failure(OTHER, float(t))
    throttle.record_success(IP, 9.0)
    assert throttle.decision(IP, 9.0) == ThrottleDecision(False, 0.0)
    assert throttle.decision(OTHER, 9.0).refuse


@pytest.mark.parametrize(
    ("base", "maximum", "failures", "delay"),
    [
        (0.5, 10.0, 3, 0.5),
        (0.5, 10.0, 5, 2.0),
        (2.0, 3.0, 4, 3.0),
        (1.0, 1.0, 6, 1.0),
        (0.0, 0.0, 7, 0.0),
    ],
)
def test_delay_shape(base: float, maximum: float, failures: int, delay: float) -> None:
    throttle = _throttle(base_delay=base, max_delay=maximum)
    for t in range(failures):
        throttle.record_failure(IP, float(t))
    assert throttle.decision(IP, 10.0) == ThrottleDecision(False, delay)


def test_huge_refuse_after_does_not_overflow() -> None:
    throttle = AuthThrottle(delay_after=0, refuse_after=5000, window_seconds=1e9)
    for t in range(4000):
        throttle.record_failure(IP, float(t))
    assert throttle.decision(IP, 5000.0) == ThrottleDecision(False, 10.0)


def test_per_ip_memory_is_bounded() -> None:
    throttle = _throttle(refuse_after=4, delay_after=2)
    for t in range(1000):
        throttle.record_failure(IP, float(t) / 100)
    assert throttle.failures(IP, 10.0) == 4


def test_tracked_ips_are_capped_evicting_oldest() -> None:
    throttle = AuthThrottle(delay_after=1, refuse_after=2, window_seconds=1e6, max_tracked=3)
    for i, ip in enumerate(["a", "b", "c", "a", "d"]):
        throttle.record_failure(ip, float(i))
    assert len(throttle) == 3
    assert throttle.failures("b", 5.0) == 0
    assert throttle.failures("a", 5.0) == 2
    assert throttle.failures("c", 5.0) == 1
    assert throttle.failures("d", 5.0) == 1


def test_expired_ips_are_pruned() -> None:
    throttle = _throttle(window_seconds=60.0)
    for i in range(100):
        throttle.record_failure(f"10.0.0.{i}", float(i) / 10)
    assert len(throttle) == 100
    throttle.record_failure(IP, 65.0)
    assert len(throttle) == 50
    throttle.record_failure(IP, 70.0)
    assert len(throttle) == 1
    throttle.record_success(IP, 71.0)
    assert len(throttle) == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"delay_after": -1, "refuse_after": 5, "window_seconds": 60.0},
        {"delay_after": 6, "refuse_after": 5, "window_seconds": 60.0},
        {"delay_after": 0, "refuse_after": 0, "window_seconds": 60.0},
        {"delay_after": 1, "refuse_after": 5, "window_seconds": 0.0},
        {"delay_after": 1, "refuse_after": 5, "window_seconds": 60.0, "base_delay": -1.0},
        {"delay_after": 1, "refuse_after": 5, "window_seconds": 60.0, "max_delay": 0.5},
        {"delay_after": 1, "refuse_after": 5, "window_seconds": 60.0, "max_tracked": 0},
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AuthThrottle(**kwargs)  # type: ignore[arg-type]
