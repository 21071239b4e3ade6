"""Sources and pools: the egress addresses mail goes out from, taken in turn.

Owns ``Source`` (a name, the local address to bind, the EHLO name that
matches the address's PTR) and ``SourceRotation``, which hands out the
sources of each egress pool round-robin. Pure: built from the
``[sources.NAME]`` and ``[pools.NAME]`` tables, no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from config.schema import PoolSettings, SourceSettings

DEFAULT_POOL = "default"
"""The pool of every message until messages name their own."""

UNBOUND_ADDRESSES = frozenset({"", "0.0.0.0", "::"})
"""Source addresses that leave the choice of local address to the kernel."""


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    address: str
    ehlo_hostname: str

    @property
    def bind_address(self) -> tuple[str, int] | None:
        """The local address to bind (any port), or None to let the kernel choose."""
        return None if self.address in UNBOUND_ADDRESSES else (self.address, 0)


class SourceRotation:
    """The sources of each pool, one after the other."""

    def __init__(
        self, sources: Mapping[str, SourceSettings], pools: Mapping[str, PoolSettings]
    ) -> None:
        named = {
            name: Source(name, source.address, source.ehlo_hostname)
            for name, source in sources.items()
        }
        self._turns: dict[str, Iterator[Source]] = {}
        for pool_name, pool in pools.items():
            missing = [name for name in pool.sources if name not in named]
            if missing or not pool.sources:
                raise ValueError(f"pool {pool_name!r}: unknown or no sources {missing!r}")
            self._turns[pool_name] = itertools.cycle([named[name] for name in pool.sources])

    def __contains__(self, pool: str) -> bool:
        return pool in self._turns

    def next(self, pool: str) -> Source:
        """The source whose turn it is in ``pool``; ``LookupError`` for an unknown pool."""
        turns = self._turns.get(pool)
        if turns is None:
            raise LookupError(f"unknown egress pool {pool!r}")
        return next(turns)
