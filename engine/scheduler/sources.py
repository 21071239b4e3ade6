"""Sources and pools: the egress addresses mail goes out from, taken in turn.

Owns ``Source`` (a name, the local address to bind, the EHLO name that
matches the address's PTR, its weight in pools and its warmup plan name) and
``SourceRotation``, which hands out the sources of each egress pool by smooth
weighted round-robin. Built from the ``[sources.NAME]`` and ``[pools.NAME]``
tables; no I/O.

Smooth weighted round-robin, as nginx does it (``ngx_http_upstream_get_peer``
in ``src/http/ngx_http_upstream_round_robin.c``):
each pool entry keeps a current weight; a turn adds every usable entry's
weight to its current weight, takes the entry with the highest (the first in
pool order on a tie) and takes the sum of the usable weights off it. Over any
run of turns in which the same entries are usable, each is taken in
proportion to its weight, spread out rather than in bursts. An entry that is
not usable (suspended, capped by warmup) sits its turn out and keeps its
current weight. A source listed twice in a pool is two entries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import overload

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
    weight: int = 1
    """Share of the source in its pools."""
    warmup: str = ""
    """Name of the source's warmup plan; empty for none."""

    @property
    def bind_address(self) -> tuple[str, int] | None:
        """The local address to bind (any port), or None to let the kernel choose."""
        return None if self.address in UNBOUND_ADDRESSES else (self.address, 0)


class _Turns:
    """One pool's entries and their current weights."""

    def __init__(self, entries: list[Source]) -> None:
        self.entries = entries
        self.current = [0] * len(entries)

    def peek(self, usable: Callable[[Source], bool]) -> Source | None:
        """The source ``take`` would return, without taking it."""
        best = -1
        for i, source in enumerate(self.entries):
            if usable(source) and (
                best < 0
                or self.current[i] + source.weight > self.current[best] + self.entries[best].weight
            ):
                best = i
        return None if best < 0 else self.entries[best]

    def take(self, usable: Callable[[Source], bool]) -> Source | None:
        best = -1
        total = 0
        for i, source in enumerate(self.entries):
            if not usable(source):
                continue
            self.current[i] += source.weight
            total += source.weight
            if best < 0 or self.current[i] > self.current[best]:
                best = i
        if best < 0:
            return None
        self.current[best] -= total
        return self.entries[best]


def _always(_: Source) -> bool:
    return True


class SourceRotation:
    """The sources of each pool, taken in turn by weight."""

    def __init__(
        self, sources: Mapping[str, SourceSettings], pools: Mapping[str, PoolSettings]
    ) -> None:
        named = {
            name: Source(name, source.address, source.ehlo_hostname, source.weight, source.warmup)
            for name, source in sources.items()
        }
        self._turns: dict[str, _Turns] = {}
        for pool_name, pool in pools.items():
            missing = [name for name in pool.sources if name not in named]
            if missing or not pool.sources:
                raise ValueError(f"pool {pool_name!r}: unknown or no sources {missing!r}")
            self._turns[pool_name] = _Turns([named[name] for name in pool.sources])

    def __contains__(self, pool: str) -> bool:
        return pool in self._turns

    def sources(self, pool: str) -> list[Source]:
        """The distinct sources of ``pool`` in pool order; ``LookupError`` for an unknown pool."""
        return list(dict.fromkeys(self._pool(pool).entries))

    @overload
    def next(self, pool: str) -> Source: ...
    @overload
    def next(self, pool: str, usable: Callable[[Source], bool]) -> Source | None: ...
    def next(self, pool: str, usable: Callable[[Source], bool] | None = None) -> Source | None:
        """The source whose turn it is in ``pool`` among those ``usable`` accepts (all
        when None); None when it accepts none; ``LookupError`` for an unknown pool."""
        return self._pool(pool).take(usable or _always)

    def peek(self, pool: str, usable: Callable[[Source], bool]) -> Source | None:
        """The source ``next`` would return, its turn not taken."""
        return self._pool(pool).peek(usable)

    def _pool(self, pool: str) -> _Turns:
        turns = self._turns.get(pool)
        if turns is None:
            raise LookupError(f"unknown egress pool {pool!r}")
        return turns
