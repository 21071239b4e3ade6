from engine.model import Tenant
from engine.submission.handler import Account, CredentialCache

ACCOUNT = Account(Tenant(1, "acme", 0.0), "acme-user", frozenset({"acme.test"}))


def test_a_verified_password_is_remembered_until_the_ttl() -> None:
    cache = CredentialCache(ttl_seconds=60)
    assert cache.hit("acme-user", "pw", 0.0) is None
    cache.remember("acme-user", "pw", ACCOUNT, 0.0)
    assert cache.hit("acme-user", "pw", 59.0) == ACCOUNT
    assert cache.hit("acme-user", "other", 59.0) is None
    assert cache.hit("someone", "pw", 59.0) is None
    assert cache.hit("acme-user", "pw", 61.0) is None


def test_the_cache_is_bounded_and_holds_no_password() -> None:
    cache = CredentialCache(ttl_seconds=60, max_entries=2)
    for n in range(3):
        cache.remember(f"user{n}", f"secret-{n}", ACCOUNT, 0.0)
    assert cache.hit("user0", "secret-0", 1.0) is None
    assert cache.hit("user2", "secret-2", 1.0) == ACCOUNT
    assert "secret-2" not in repr(vars(cache))
