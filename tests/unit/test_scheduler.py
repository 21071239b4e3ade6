"""Sources taken in turn per pool, and where a source binds."""

from __future__ import annotations

import pytest

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
