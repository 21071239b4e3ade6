import pytest

from engine.submission.auth_throttle import Admission, AuthThrottle, client_key

IP = "192.0.2.1"
OTHER = "198.51.100.9"
OWN = "acme-k3j9xq2a"
VICTIM = "globex-p0q8r7s6"


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


def _fail(throttle: AuthThrottle, client: str, username: str, now: float) -> float:
    """One admitted attempt that fails; the delay before its reply."""
    assert throttle.admit(client, username, now) is Admission.CHECK
    delay = throttle.record_failure(client, username, now)
    throttle.end_turn(username)
    return delay


def _succeed(throttle: AuthThrottle, client: str, username: str, now: float) -> None:
    assert throttle.admit(client, username, now) is Admission.CHECK
    throttle.record_success(client, username)


# (failures so far, delay before the reply to the last, admission of the next attempt)
@pytest.mark.parametrize(
    ("failures", "delay", "admission"),
    [
        (1, 0.0, Admission.CHECK),
        (2, 0.0, Admission.CHECK),
        (3, 1.0, Admission.CHECK),
        (4, 2.0, Admission.CHECK),
        (5, 4.0, Admission.CHECK),
        (6, 8.0, Admission.CHECK),
        (7, 10.0, Admission.CHECK),
        (8, 10.0, Admission.REFUSE),
    ],
)
def test_delay_and_admission_by_failure_count(
    failures: int, delay: float, admission: Admission
) -> None:
    throttle = _throttle()
    delays = [_fail(throttle, IP, VICTIM, 1000.0 + i) for i in range(failures)]
    now = 1000.0 + failures
    assert delays[-1] == delay
    assert throttle.admit(IP, VICTIM, now) is admission
    assert throttle.refuses(IP, now) is (admission is Admission.REFUSE)
    assert throttle.admit(OTHER, OWN, now) is Admission.CHECK


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
        _fail(throttle, IP, VICTIM, t)
    assert throttle.failures(IP, now) == count


def test_refusal_ends_when_failures_leave_the_window() -> None:
    throttle = _throttle(delay_after=1, refuse_after=3, window_seconds=60.0)
    for t in (0.0, 1.0, 2.0):
        _fail(throttle, IP, f"user{t}", t)
    assert throttle.admit(IP, VICTIM, 30.0) is Admission.REFUSE
    assert throttle.admit(IP, VICTIM, 60.5) is Admission.CHECK
    assert throttle.record_failure(IP, VICTIM, 60.5) == 4.0
    assert throttle.admit(IP, VICTIM, 60.9) is Admission.REFUSE
    assert throttle.admit(IP, VICTIM, 61.5) is Admission.CHECK


@pytest.mark.parametrize(("parallel", "checked"), [(3, 3), (8, 8), (60, 8)])
def test_attempts_in_flight_take_slots(parallel: int, checked: int) -> None:
    throttle = _throttle(refuse_after=8)
    admissions = [throttle.admit(IP, VICTIM, 5.0) for _ in range(parallel)]
    assert admissions == [Admission.CHECK] * checked + [Admission.WAIT] * (parallel - checked)
    assert throttle.in_flight(IP) == checked
    assert not throttle.refuses(IP, 5.0)
    for _ in range(checked):
        throttle.record_failure(IP, VICTIM, 6.0)
    assert throttle.in_flight(IP) == 0
    expected = Admission.REFUSE if checked == 8 else Admission.CHECK
    assert throttle.admit(IP, VICTIM, 6.0) is expected
    assert throttle.admit(OTHER, OWN, 6.0) is Admission.CHECK


@pytest.mark.parametrize("end", ["success", "release"])
def test_an_attempt_ending_without_failure_frees_its_slot(end: str) -> None:
    throttle = _throttle(refuse_after=2, delay_after=1)
    assert [throttle.admit(IP, VICTIM, 1.0) for _ in range(3)] == [
        Admission.CHECK,
        Admission.CHECK,
        Admission.WAIT,
    ]
    if end == "success":
        throttle.record_success(IP, OWN)
    else:
        throttle.release(IP, VICTIM)
    assert throttle.in_flight(IP) == 1
    assert throttle.admit(IP, VICTIM, 1.0) is Admission.CHECK
    assert throttle.failures(IP, 1.0) == 0


def test_a_success_clears_only_failures_naming_its_username() -> None:
    throttle = _throttle(refuse_after=8)
    for t in range(3):
        _fail(throttle, IP, OWN, float(t))  # the client's own typos
    for t in range(3, 6):
        _fail(throttle, IP, VICTIM, float(t))
    _fail(throttle, OTHER, OWN, 6.0)
    _succeed(throttle, IP, OWN, 7.0)
    assert throttle.failures(IP, 7.0) == 3
    assert throttle.failures(OTHER, 7.0) == 1


def test_a_success_never_clears_failures_naming_another_username() -> None:
    throttle = _throttle(refuse_after=8)
    for t in range(7):
        _fail(throttle, IP, VICTIM, float(t))
    _succeed(throttle, IP, OWN, 7.0)
    assert throttle.failures(IP, 7.0) == 7
    _fail(throttle, IP, VICTIM, 8.0)
    assert throttle.admit(IP, VICTIM, 9.0) is Admission.REFUSE
    assert throttle.refuses(IP, 9.0)


def test_guesses_interleaved_with_valid_logins_stop_at_the_limit() -> None:
    throttle = _throttle(refuse_after=10)
    guesses = 0
    for t in range(60):
        if throttle.admit(IP, VICTIM, float(t)) is Admission.CHECK:
            throttle.record_success(IP, OWN)
        if throttle.admit(IP, VICTIM, float(t)) is Admission.CHECK:
            throttle.record_failure(IP, VICTIM, float(t))
            guesses += 1
    assert guesses == 10


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:a:b:c:d", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_client_key(host: str, key: str) -> None:
    assert client_key(host) == key


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
    delays = [_fail(throttle, IP, VICTIM, float(t)) for t in range(failures)]
    assert delays[-1] == delay


def test_huge_refuse_after_does_not_overflow() -> None:
    throttle = AuthThrottle(delay_after=0, refuse_after=5000, window_seconds=1e9)
    delays = [_fail(throttle, IP, VICTIM, float(t)) for t in range(4000)]
    assert delays[-1] == 10.0


def test_per_client_memory_is_bounded() -> None:
    throttle = _throttle(refuse_after=4, delay_after=2)
    for t in range(1000):
        throttle.record_failure(IP, f"user{t}", float(t) / 100)
    assert throttle.failures(IP, 10.0) == 4


def test_tracked_clients_are_capped_evicting_oldest() -> None:
    throttle = AuthThrottle(delay_after=1, refuse_after=2, window_seconds=1e6, max_tracked=3)
    for i, ip in enumerate(["a", "b", "c", "a", "d"]):
        throttle.record_failure(ip, VICTIM, float(i))
    assert len(throttle) == 3
    assert throttle.failures("b", 5.0) == 0
    assert throttle.failures("a", 5.0) == 2
    assert throttle.failures("c", 5.0) == 1
    assert throttle.failures("d", 5.0) == 1


def test_expired_clients_are_pruned() -> None:
    throttle = _throttle(window_seconds=60.0)
    for i in range(100):
        _fail(throttle, f"10.0.0.{i}", VICTIM, float(i) / 10)
    assert len(throttle) == 100
    _fail(throttle, IP, VICTIM, 65.0)
    assert len(throttle) == 50
    _fail(throttle, IP, VICTIM, 70.0)
    assert len(throttle) == 1
    _succeed(throttle, IP, VICTIM, 71.0)
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


def test_guesses_from_many_clients_at_one_username_are_paced() -> None:
    throttle = _throttle(delay_after=3, refuse_after=4, max_delay=10.0)
    clients = [f"203.0.113.{i}" for i in range(1, 40)]
    # Below the limit, guesses from fresh clients are answered at once.
    assert [_fail(throttle, client, VICTIM, 1.0) for client in clients[:3]] == [0.0] * 3
    # The guess that reaches the limit, and every later one, holds the turn for max_delay.
    assert throttle.admit(clients[3], VICTIM, 2.0) is Admission.CHECK
    assert throttle.record_failure(clients[3], VICTIM, 2.0) == 10.0
    assert throttle.username_failures(VICTIM, 2.0) == 4
    # While that turn is held, no other client's guess at the username is checked.
    assert [throttle.admit(client, VICTIM, 3.0) for client in clients[4:]] == [
        Admission.WAIT
    ] * len(clients[4:])
    # Other usernames, and the clients themselves, are not held back.
    assert throttle.admit(clients[4], OWN, 3.0) is Admission.CHECK
    throttle.end_turn(VICTIM)
    # One turn at a time: the next client is checked, the one after waits.
    assert throttle.admit(clients[5], VICTIM, 12.0) is Admission.CHECK
    assert throttle.admit(clients[6], VICTIM, 12.0) is Admission.WAIT


def test_a_paced_username_is_never_locked_against_its_owner() -> None:
    throttle = _throttle(delay_after=3, refuse_after=4, window_seconds=600.0)
    for i in range(50):
        if throttle.admit(f"203.0.113.{i}", VICTIM, float(i)) is Admission.CHECK:
            throttle.record_failure(f"203.0.113.{i}", VICTIM, float(i))
            throttle.end_turn(VICTIM)
    assert throttle.username_failures(VICTIM, 60.0) == 4  # the most kept per username
    # The owner's attempt is checked when no guess holds the turn, and a success is not delayed.
    assert throttle.admit(OTHER, VICTIM, 60.0) is Admission.CHECK
    throttle.record_success(OTHER, VICTIM)
    assert throttle.admit(OTHER, VICTIM, 61.0) is Admission.CHECK
    throttle.release(OTHER, VICTIM)
    # A success does not clear the username's failures: the pacing holds.
    assert throttle.admit(IP, VICTIM, 62.0) is Admission.CHECK
    assert throttle.record_failure(IP, VICTIM, 62.0) == 10.0
    # Pacing ends when the failures leave the window.
    throttle.end_turn(VICTIM)
    assert throttle.username_failures(VICTIM, 700.0) == 0
    assert _fail(throttle, "198.18.0.1", VICTIM, 700.0) == 0.0
