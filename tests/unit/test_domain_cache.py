"""The cache of tenants' sending domains: trusted for its time, read again when it lacks
the domain asked for, forgotten on demand."""

from __future__ import annotations

import pytest

from engine.provisioning.domain_cache import DomainCache

DOMAINS = frozenset({"acme.example", "news.acme.example"})


@pytest.mark.parametrize(
    ("tenant_id", "later", "including", "expected"),
    [
        (1, 0.0, None, DOMAINS),
        (1, 4.9, "acme.example", DOMAINS),
        (1, 4.9, "other.example", None),
        (1, 5.0, None, None),
        (2, 0.0, None, None),
    ],
)
def test_a_tenants_domains_are_trusted_for_the_cache_time(
    tenant_id: int, later: float, including: str | None, expected: frozenset[str] | None
) -> None:
    cache = DomainCache(seconds=5.0)
    cache.put(1, DOMAINS, 100.0)
    assert cache.get(tenant_id, 100.0 + later, including) == expected


def test_forgotten_domains_and_a_full_cache_are_read_again() -> None:
    cache = DomainCache(seconds=5.0, max_tenants=2)
    cache.put(1, DOMAINS, 0.0)
    cache.forget(1)
    assert cache.get(1, 0.0) is None
    cache.put(1, DOMAINS, 0.0)
    cache.put(2, DOMAINS, 0.0)
    cache.put(3, DOMAINS, 0.0)
    assert [cache.get(t, 0.0) for t in (1, 2, 3)] == [None, None, DOMAINS]
