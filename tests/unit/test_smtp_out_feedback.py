"""The per-site concurrency window (Postfix SCHEDULER_README feedback), as a table."""

from __future__ import annotations

import pytest

from smtp_out.feedback import ConcurrencyWindow


@pytest.mark.parametrize(
    ("limit", "initial", "events", "window", "failures"),
    [
        (10, None, "", 10, 0),
        (10, 3, "", 3, 0),
        (10, None, "s", 10, 0),
        (10, None, "f", 1, 1),
        (10, None, "fff", 1, 3),
        (10, None, "fs", 2, 0),
        (10, None, "fsss", 4, 0),
        (10, None, "f" + "s" * 20, 10, 0),
        (10, None, "fssf", 1, 1),
        (10, 1, "sss", 4, 0),
        (1, None, "fsss", 1, 0),
        (5, None, "ffsfs", 2, 0),
    ],
)
def test_window_after_events(
    limit: int, initial: int | None, events: str, window: int, failures: int
) -> None:
    feedback = ConcurrencyWindow(limit, initial)
    for event in events:
        if event == "s":
            feedback.success()
        else:
            feedback.failure()
    assert feedback.window == window
    assert feedback.consecutive_failures == failures
    assert feedback.failing is (failures > 0)
    assert feedback.limit == limit


@pytest.mark.parametrize(("limit", "initial"), [(0, None), (-1, None), (5, 0), (5, 6)])
def test_rejects_bad_bounds(limit: int, initial: int | None) -> None:
    with pytest.raises(ValueError):
        ConcurrencyWindow(limit, initial)
