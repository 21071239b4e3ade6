"""SMTP submission credentials: generating them, hashing and verifying passwords.

Owns the stored password format::

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

(scrypt, RFC 7914; n=2**14, r=8, p=1, 16-byte random salt, 32-byte hash;
standard base64 with padding). The cost parameters travel with each hash, so
they can be raised later without invalidating stored hashes.

Invariants: passwords are never logged, printed or put in exception messages;
:func:`verify_password` compares in constant time, returns ``False`` (never
raises) for a malformed stored value, and refuses cost parameters beyond
fixed bounds so a corrupted row cannot make verification exhaust memory.
Verification costs tens of milliseconds of CPU: code on the event loop uses
:func:`verify_password_async`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import re
import secrets

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_SIZE = 16
HASH_SIZE = 32

_SCHEME = "scrypt"
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16
_MAXMEM = 256 * 1024 * 1024
_USERNAME_PREFIX_MAX = 32


def hash_password(password: str) -> str:
    """Hash ``password`` with a fresh random salt, in the stored format."""
    salt = secrets.token_bytes(SALT_SIZE)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        (_SCHEME, str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(digest))
    )


def verify_password(password: str, encoded: str) -> bool:
    """Return whether ``password`` matches the stored ``encoded`` hash."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _SCHEME:
        return False
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        return False
    if not _cost_ok(n, r, p) or not salt or not 16 <= len(expected) <= 64:
        return False
    try:
        actual = _scrypt(password, salt, n, r, p, dklen=len(expected))
    except ValueError:  # includes UnicodeEncodeError and scrypt's memory limit
        return False
    return hmac.compare_digest(actual, expected)


async def verify_password_async(password: str, encoded: str) -> bool:
    """:func:`verify_password` in a worker thread, keeping the event loop free."""
    return await asyncio.to_thread(verify_password, password, encoded)


def generate_username(tenant_name: str) -> str:
    """A new SMTP username: the tenant's name as a DNS-like label, a dash, 8 random chars.

    ``"Acme Corp"`` gives e.g. ``"acme-corp-k3j9xq2a"``. The random part is
    lowercase base32 (40 bits).
    """
    prefix = re.sub(r"[^a-z0-9]+", "-", tenant_name.lower()).strip("-")
    prefix = prefix[:_USERNAME_PREFIX_MAX].rstrip("-") or "user"
    suffix = base64.b32encode(secrets.token_bytes(5)).decode("ascii").lower()
    return f"{prefix}-{suffix}"


def generate_password() -> str:
    """A new random SMTP password (192 bits, URL-safe base64)."""
    return secrets.token_urlsafe(24)


def _cost_ok(n: int, r: int, p: int) -> bool:
    is_power_of_two = n > 1 and n & (n - 1) == 0
    return is_power_of_two and n <= _MAX_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = HASH_SIZE) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
