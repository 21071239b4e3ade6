"""Sources taken in turn per pool by weight, skipping unusable ones, and where a
source binds."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.schema import PoolSettings, SourceSettings
from engine.scheduler.sources import Source, SourceRotation

SOURCES = {
    name: SourceSettings(address=f"127.0.0.{n}", ehlo_hostname=f"{name}.mta.test")
    for n, name in enumerate(("a", "b", "c"), start=7)
}


@pytest.mark.parametrize(
    ("pools", "asked", "names"),
    [
        ({"default": ["a"]}, ["default"] * 3, ["a", "a", "a"]),
        ({"default": ["a", "b"]}, ["default"] * 5, ["a", "b", "a", "b", "a"]),
        (
            {"default": ["a", "b"], "bulk": ["c", "b"]},
            ["default", "bulk"] * 3,
            ["a", "c", "b", "b", "a", "c"],
        ),
        ({"default": ["b", "b", "a"]}, ["default"] * 4, ["b", "b", "a", "b"]),
    ],
)
def test_each_pool_takes_its_sources_in_turn(
    pools: dict[str, list[str]], asked: list[str], names: list[str]
) -> None:
    rotation = SourceRotation(SOURCES, {n: PoolSettings(sources=s) for n, s in pools.items()})
    chosen = [rotation.next(pool) for pool in asked]
    assert [source.name for source in chosen] == names
    assert all(s.address == SOURCES[s.name].address for s in chosen)
    assert all(s.ehlo_hostname == f"{s.name}.mta.test" for s in chosen)


def test_an_unknown_pool_is_a_lookup_error() -> None:
    rotation = SourceRotation(SOURCES, {"default": PoolSettings(sources=["a"])})
    assert "default" in rotation and "bulk" not in rotation
    with pytest.raises(LookupError, match="bulk"):
        rotation.next("bulk")


@pytest.mark.parametrize("members", [[], ["a", "ghost"]])
def test_a_pool_needs_known_sources(members: list[str]) -> None:
    with pytest.raises(ValueError, match="main"):
        SourceRotation(SOURCES, {"main": PoolSettings(sources=members)})


@pytest.mark.parametrize(
    ("address", "bound"),
    [
        ("0.0.0.0", None),
        ("::", None),
        ("", None),
        ("127.0.0.7", ("127.0.0.7", 0)),
        ("::1", ("::1", 0)),
    ],
)
def test_an_unspecified_address_binds_nothing(address: str, bound: tuple[str, int] | None) -> None:
    assert Source("s", address, "mta.test").bind_address == bound


def _rotation(weights: dict[str, int], warmup: str = "") -> SourceRotation:
    sources = {
        name: SourceSettings(address="0.0.0.0", weight=weight, warmup=warmup)
        for name, weight in weights.items()
    }
    return SourceRotation(sources, {"default": PoolSettings(sources=list(weights))})


@pytest.mark.parametrize(
    ("weights", "names"),
    [
        ({"a": 5, "b": 1, "c": 1}, "aabacaa"),
        ({"a": 2, "b": 1}, "abaaba"),
        ({"a": 1, "b": 3}, "babbbabb"),
        ({"a": 1, "b": 1, "c": 1}, "abcabc"),
    ],
)
def test_weighted_turns_are_smooth(weights: dict[str, int], names: str) -> None:
    rotation = _rotation(weights)
    assert "".join(rotation.next("default").name for _ in names) == names


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=6), st.integers(1, 3))
def test_each_source_takes_its_weights_share(weights: list[int], rounds: int) -> None:
    rotation = _rotation({f"s{i}": weight for i, weight in enumerate(weights)})
    chosen = Counter(rotation.next("default").name for _ in range(sum(weights) * rounds))
    assert chosen == {f"s{i}": weight * rounds for i, weight in enumerate(weights)}


def test_unusable_sources_are_skipped() -> None:
    rotation = _rotation({"a": 5, "b": 1, "c": 1})
    without_a = "".join(_name(rotation.next("default", lambda s: s.name != "a")) for _ in range(4))
    assert without_a == "bcbc"
    only_c = [_name(rotation.next("default", lambda s: s.name == "c")) for _ in range(3)]
    assert only_c == ["c", "c", "c"]
    assert rotation.next("default", lambda s: False) is None
    chosen = Counter(rotation.next("default").name for _ in range(70))
    assert chosen == {"a": 50, "b": 10, "c": 10}


def test_a_pool_lists_its_sources_with_weight_and_plan() -> None:
    sources = {
        "a": SourceSettings(address="127.0.0.7", ehlo_hostname="a.mta.test", weight=4),
        "b": SourceSettings(ehlo_hostname="b.mta.test", warmup="standard"),
    }
    rotation = SourceRotation(sources, {"main": PoolSettings(sources=["b", "a", "b"])})
    assert rotation.sources("main") == [
        Source("b", "0.0.0.0", "b.mta.test", weight=1, warmup="standard"),
        Source("a", "127.0.0.7", "a.mta.test", weight=4, warmup=""),
    ]
    with pytest.raises(LookupError, match="bulk"):
        rotation.sources("bulk")
    with pytest.raises(LookupError, match="bulk"):
        rotation.next("bulk", lambda s: True)


def _name(source: Source | None) -> str:
    assert source is not None
    return source.name
