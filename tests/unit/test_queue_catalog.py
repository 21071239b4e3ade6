"""The queue catalogue and the suspension book: the scheduler's pure bookkeeping."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.model import QueueInfo, Suspension, SuspensionScope
from engine.scheduler.catalog import NEVER, QueueCatalog
from engine.scheduler.suspensions import SuspensionBook


def info(name: str, bump: int = 1) -> QueueInfo:
    return QueueInfo(name, 1, "", name.partition("@")[2], bump)


def drain(catalog: QueueCatalog, now: float) -> list[str]:
    names = []
    while (entry := catalog.next_due(now)) is not None:
        names.append(entry.name)
    return names


def test_queues_due_at_the_same_time_take_turns() -> None:
    catalog = QueueCatalog()
    catalog.learn([info("a@x"), info("b@x"), info("c@x")], 10.0)
    first = catalog.next_due(10.0)
    assert first is not None and first.name == "a@x"
    catalog.check_at(first, 10.0)  # it had more: back of the line
    assert drain(catalog, 10.0) == ["b@x", "c@x", "a@x"]


def test_a_queue_is_not_due_before_its_time_and_never_once_idle() -> None:
    catalog = QueueCatalog()
    catalog.learn([info("a@x")], 0.0)
    entry = catalog.next_due(0.0)
    assert entry is not None
    catalog.check_at(entry, 30.0)
    assert catalog.next_due(29.9) is None and catalog.next_time() == 30.0
    again = catalog.next_due(30.0)
    assert again is not None
    catalog.check_at(again, NEVER)
    assert catalog.next_time() == NEVER and catalog.next_due(1e12) is None
    catalog.learn([info("a@x", bump=2)], 40.0)
    assert drain(catalog, 40.0) == ["a@x"]


def test_a_parked_queue_waits_for_its_lane_and_only_that() -> None:
    catalog = QueueCatalog()
    catalog.learn([info("a@x"), info("b@y")], 0.0)
    a = catalog.next_due(0.0)
    b = catalog.next_due(0.0)
    assert a is not None and b is not None
    catalog.park(a, [("s1", "x")])
    catalog.park(b, [("s1", "y"), ("s2", "y")])
    assert catalog.next_due(100.0) is None
    catalog.lane_freed(("s1", "zzz"), 5.0)
    assert catalog.next_due(100.0) is None
    catalog.lane_freed(("s2", "y"), 5.0)
    assert drain(catalog, 5.0) == ["b@y"]
    assert catalog.parked_count(("s1", "y")) == 0, "unparked from every lane it waited on"
    catalog.lane_freed(("s1", "x"), 6.0)
    assert drain(catalog, 6.0) == ["a@x"]


@given(st.lists(st.tuples(st.sampled_from("abcde"), st.floats(0, 100)), max_size=60))
def test_each_queue_is_handed_out_once_per_check(checks: list[tuple[str, float]]) -> None:
    catalog = QueueCatalog()
    catalog.learn([info(f"{name}@x") for name in "abcde"], 0.0)
    drain(catalog, 0.0)
    latest: dict[str, float] = {}
    for name, when in checks:
        entry = catalog.get(f"{name}@x")
        assert entry is not None
        catalog.check_at(entry, when)
        latest[entry.name] = when
    handed = drain(catalog, 100.0)
    assert sorted(handed) == sorted(latest)


def suspension(scope: SuspensionScope, target: str, until: float) -> Suspension:
    return Suspension(scope, target, "why", 0.0, until, "admin")


def test_the_book_answers_what_holds_a_path_back() -> None:
    book = SuspensionBook(
        [
            suspension(SuspensionScope.TENANT, "acme", 100.0),
            suspension(SuspensionScope.CAMPAIGN, "beta:promo", 100.0),
            suspension(SuspensionScope.SOURCE_PROVIDER, "ip1|microsoft", 100.0),
            suspension(SuspensionScope.LANE, "ip2|example.net", 100.0),
            suspension(SuspensionScope.SOURCE, "ip3", 100.0),
        ]
    )
    assert book.for_queue("acme", "", 50.0) is not None
    assert book.for_queue("beta", "", 50.0) is None
    assert book.for_queue("beta", "promo", 50.0) is not None
    assert book.for_queue("acme", "", 100.0) is None, "expired at its end"
    site = "mx1.example.net,mx2.example.net"
    assert book.for_lane("ip1", site, "example.net", "microsoft", 50.0) is not None
    assert book.for_lane("ip1", site, "example.net", "google", 50.0) is None
    assert book.for_lane("ip2", site, "example.net", "", 50.0) is not None, "domain names a lane"
    assert book.for_lane("ip2", site, "other.net", "", 50.0) is None
    assert book.for_lane("ip3", site, "other.net", "", 50.0) is not None
