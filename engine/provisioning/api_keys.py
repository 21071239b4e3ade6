"""API key tokens: how they are made, read and checked; the short cache of known keys.

A token is ``pm_<prefix>_<secret>``. The ``prefix`` (8 base32 characters, 40
random bits) names the key in listings and logs and finds its row; the
``secret`` (52 base32 characters, 256 random bits) proves it. Only
SHA-256(secret) is stored: a 256-bit random secret cannot be guessed, so it
needs no slow KDF, and the hash is compared in constant time.

``KeyCache`` keeps the keys looked up recently for ``CACHE_SECONDS``: a key
revoked in another process stops working within that time (at once in the
process that revoked it). Unknown prefixes are not cached, so a key made in
another process works at once.

Pure: randomness and time are passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from engine.model import ApiKey, Tenant

TOKEN_START = "pm_"
PREFIX_BYTES = 5
SECRET_BYTES = 32
CACHE_SECONDS = 5.0
"""How long a looked-up key is trusted without asking the store again."""
CACHE_MAX_KEYS = 10_000
"""Keys cached at most; the cache starts afresh beyond."""

_TOKEN = re.compile(r"pm_(?P<prefix>[a-z2-7]{8})_(?P<secret>[a-z2-7]{52})")


@dataclass(frozen=True, slots=True)
class KeyToken:
    """A new key's prefix and the token to hand over once."""

    prefix: str
    secret: str

    @property
    def text(self) -> str:
        return f"{TOKEN_START}{self.prefix}_{self.secret}"


def _base32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def new_token(random_bytes: Callable[[int], bytes]) -> KeyToken:
    """A token from ``random_bytes`` (``secrets.token_bytes`` outside tests)."""
    return KeyToken(_base32(random_bytes(PREFIX_BYTES)), _base32(random_bytes(SECRET_BYTES)))


def parse_token(text: str) -> KeyToken | None:
    """The prefix and secret of ``text``; None when it is not shaped like a token."""
    found = _TOKEN.fullmatch(text)
    return None if found is None else KeyToken(found["prefix"], found["secret"])


def secret_hash(secret: str) -> bytes:
    """What is stored of a key's secret: its SHA-256."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def proves(key: ApiKey, token: KeyToken) -> bool:
    """Whether ``token`` is ``key``'s and the key is not revoked (constant-time compare)."""
    matches = hmac.compare_digest(key.secret_hash, secret_hash(token.secret))
    return matches and key.prefix == token.prefix and key.revoked_at is None


@dataclass(frozen=True, slots=True)
class KnownKey:
    """A key and its tenant, as looked up in the store."""

    key: ApiKey
    tenant: Tenant


class KeyCache:
    """Keys by prefix, each trusted for ``seconds`` after it was looked up."""

    def __init__(self, seconds: float = CACHE_SECONDS, max_keys: int = CACHE_MAX_KEYS) -> None:
        self._seconds = seconds
        self._max_keys = max_keys
        self._known: dict[str, tuple[KnownKey, float]] = {}

    def get(self, prefix: str, now: float) -> KnownKey | None:
        """The key of ``prefix`` if looked up less than ``seconds`` before ``now``."""
        entry = self._known.get(prefix)
        if entry is None or entry[1] <= now:
            return None
        return entry[0]

    def put(self, known: KnownKey, now: float) -> None:
        if len(self._known) >= self._max_keys:
            self._known.clear()
        self._known[known.key.prefix] = (known, now + self._seconds)

    def forget(self, prefix: str) -> None:
        self._known.pop(prefix, None)
