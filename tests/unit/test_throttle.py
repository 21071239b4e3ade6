"""``throttle.take`` and ``gcra`` at epoch times, where doubles are exact to ~2e-7 s."""

from __future__ import annotations

import pytest

from engine.limits.throttle import ThrottleSpec, gcra, take

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("spec", "tat", "wanted", "granted", "tat_after", "retry_after"),
    [
        ("10/s,max_burst=2", None, 2, 2, NOW + 0.2, 0.0),
        ("10/s,max_burst=2", None, 5, 2, NOW + 0.2, 0.1),
        ("10/s,max_burst=2", NOW + 0.2, 1, 0, NOW + 0.2, 0.1),
        ("10/s,max_burst=2", NOW - 50, 1, 1, NOW + 0.1, 0.0),
        ("1000/s", None, 1000, 1000, NOW + 1.0, 0.0),
        ("1000/s", NOW + 0.5, 600, 500, NOW + 1.0, 0.001),
        ("30/5min", None, 31, 30, NOW + 300, 10.0),
        ("5/s", None, 0, 0, NOW, 0.0),
    ],
)
def test_take(
    spec: str, tat: float | None, wanted: int, granted: int, tat_after: float, retry_after: float
) -> None:
    taken = take(ThrottleSpec.parse(spec), tat, NOW, wanted)
    assert taken.granted == granted
    assert taken.tat == pytest.approx(tat_after, abs=1e-6)
    assert taken.retry_after == pytest.approx(retry_after, abs=1e-6)


def test_a_full_burst_passes_at_epoch_times() -> None:
    spec = ThrottleSpec.parse("10/s,max_burst=2")
    assert gcra(spec, None, NOW, 2).allowed
    assert not gcra(spec, NOW + 0.2, NOW, 1).allowed
