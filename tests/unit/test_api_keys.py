"""API key tokens: made, read and checked; the cache of looked-up keys."""

from __future__ import annotations

import hashlib
import random

import pytest

from engine.model import ApiKey, ApiScope, Tenant
from engine.provisioning.api_keys import (
    CACHE_SECONDS,
    KeyCache,
    KeyToken,
    KnownKey,
    new_token,
    parse_token,
    proves,
    secret_hash,
)

T0 = 1_800_000_000.0


def token(seed: int = 1) -> KeyToken:
    rng = random.Random(seed)
    return new_token(rng.randbytes)


def key_of(made: KeyToken, revoked_at: float | None = None) -> ApiKey:
    return ApiKey(
        tenant_id=1,
        prefix=made.prefix,
        name="",
        scopes=frozenset({ApiScope.SEND}),
        secret_hash=secret_hash(made.secret),
        created_at=T0,
        revoked_at=revoked_at,
    )


def test_a_token_is_pm_prefix_secret_and_reads_back() -> None:
    made = token()
    assert len(made.prefix) == 8 and len(made.secret) == 52
    assert made.text == f"pm_{made.prefix}_{made.secret}"
    assert parse_token(made.text) == made
    assert token(2) != made


SECRET = "a" * 52
NOT_TOKENS = [
    "",
    "pm_",
    "pm_abcdefgh",
    "pm_abcdefgh_short",
    "PM_ABCDEFGH_" + SECRET.upper(),
    "xx_abcdefgh_" + SECRET,
    "pm_abcdefg1_" + SECRET,
    "pm_abcdefgh_" + SECRET + "a",
    " pm_abcdefgh_" + SECRET,
]


@pytest.mark.parametrize("text", NOT_TOKENS)
def test_what_is_not_a_token_is_none(text: str) -> None:
    assert parse_token(text) is None


def test_the_stored_hash_is_the_secrets_sha256() -> None:
    made = token()
    assert secret_hash(made.secret) == hashlib.sha256(made.secret.encode()).digest()
    assert made.secret.encode() not in secret_hash(made.secret)


def test_a_token_proves_its_key_unless_revoked() -> None:
    made, other = token(1), token(2)
    assert proves(key_of(made), made)
    assert not proves(key_of(made), KeyToken(made.prefix, other.secret))
    assert not proves(key_of(made), KeyToken(other.prefix, made.secret))
    assert not proves(key_of(made, revoked_at=T0), made)


def test_the_cache_keeps_a_key_for_its_seconds_and_forgets_on_demand() -> None:
    cache = KeyCache()
    known = KnownKey(key_of(token()), Tenant(1, "acme", T0))
    prefix = known.key.prefix
    assert cache.get(prefix, T0) is None
    cache.put(known, T0)
    assert cache.get(prefix, T0 + CACHE_SECONDS - 0.01) == known
    assert cache.get(prefix, T0 + CACHE_SECONDS) is None
    cache.put(known, T0)
    cache.forget(prefix)
    assert cache.get(prefix, T0) is None


def test_a_full_cache_starts_afresh() -> None:
    cache = KeyCache(max_keys=2)
    known = [KnownKey(key_of(token(n)), Tenant(1, "acme", T0)) for n in range(3)]
    for entry in known:
        cache.put(entry, T0)
    assert [cache.get(k.key.prefix, T0) is not None for k in known] == [False, False, True]
