"""The engine secret, and sealing of secrets at rest with it.

Owns two things:

* the engine secret file: 32 random bytes, created once by
  :func:`load_or_create_secret` and then only read. The file is mode 0600 in a
  0700 directory; an existing file that group or others can read is refused,
  because anyone who reads it can unseal every DKIM private key in the store.
* the sealed format used for DKIM private keys in the store, produced by
  :class:`Sealer`::

      version (1 byte, 0x01) || nonce (12 bytes) || AES-256-GCM ciphertext+tag

  The version byte is also the associated data, so it cannot be changed
  without the tag failing. A wrong secret, a truncated or altered blob and an
  unknown version all raise :class:`SealError`; plaintext is never returned
  unless the tag verifies.

Invariants: secrets and plaintexts never appear in exception messages, reprs
or logs; a secret file is never overwritten once it exists.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.schema import EngineSettings

SECRET_SIZE = 32
"""Bytes in the engine secret (an AES-256 key)."""

_VERSION = b"\x01"
_NONCE_SIZE = 12
_TAG_SIZE = 16


class SealError(Exception):
    """A sealed blob cannot be opened: wrong secret, tampered, truncated or unknown version."""


class SecretFileError(Exception):
    """The engine secret file is unusable: too permissive, wrong size or not a regular file."""


def write_private_file(path: Path, data: bytes) -> None:
    """Create ``path`` holding ``data`` with mode 0600, atomically, never overwriting.

    The parent directory is created with mode 0700 if missing. The data is
    written to a temporary file in the same directory, flushed to disk, then
    hard-linked into place, so readers never see a partial file and a
    concurrent creator's file is never replaced.

    Raises ``FileExistsError`` if ``path`` already exists.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    _fsync_dir(path.parent)


def load_or_create_secret(path: Path) -> bytes:
    """Return the engine secret stored at ``path``, creating it if missing.

    A new secret is 32 bytes from :func:`secrets.token_bytes`. If two processes
    race to create it, both end up with the one that was linked first.

    Raises :class:`SecretFileError` if the existing file is readable or
    writable by group or others, is not a regular file, or is not exactly 32
    bytes long.
    """
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            write_private_file(path, secrets.token_bytes(SECRET_SIZE))
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SecretFileError(f"{path}: engine secret must be a regular file")
        if st.st_mode & 0o077:
            raise SecretFileError(
                f"{path}: engine secret has mode {stat.S_IMODE(st.st_mode):04o}; "
                f"it must not be accessible to group or others (run: chmod 600 {path})"
            )
        data = os.read(fd, SECRET_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_SIZE:
        raise SecretFileError(
            f"{path}: engine secret must be exactly {SECRET_SIZE} bytes, found {len(data)}"
        )
    return data


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Sealer:
    """Seals and unseals byte strings with the engine secret (AES-256-GCM)."""

    __slots__ = ("_aead",)

    def __init__(self, secret: bytes) -> None:
        if len(secret) != SECRET_SIZE:
            raise ValueError(f"engine secret must be {SECRET_SIZE} bytes, got {len(secret)}")
        self._aead = AESGCM(secret)

    def __repr__(self) -> str:
        return "Sealer(<secret hidden>)"

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` under a fresh random nonce."""
        nonce = secrets.token_bytes(_NONCE_SIZE)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _VERSION)

    def unseal(self, sealed: bytes) -> bytes:
        """Decrypt a blob made by :meth:`seal`; raise :class:`SealError` if it does not verify."""
        if len(sealed) < 1 + _NONCE_SIZE + _TAG_SIZE:
            raise SealError("sealed blob is truncated")
        if sealed[:1] != _VERSION:
            raise SealError(f"unknown sealed format version {sealed[0]}")
        nonce = sealed[1 : 1 + _NONCE_SIZE]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE_SIZE :], _VERSION)
        except InvalidTag as exc:
            raise SealError("sealed blob does not verify: wrong engine secret or altered") from exc


def secret_path(settings: EngineSettings) -> Path:
    """Where the engine secret lives: ``engine.secret_file`` or ``<data_dir>/secret.key``."""
    configured = settings.secret_file
    return Path(configured) if configured else Path(settings.data_dir) / "secret.key"
