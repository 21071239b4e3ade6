import os
import stat
from pathlib import Path

import pytest

from engine.sealing import (
    SECRET_SIZE,
    Sealer,
    SealError,
    SecretFileError,
    load_or_create_secret,
    write_private_file,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_creates_secret_with_private_modes(tmp_path: Path) -> None:
    path = tmp_path / "state" / "engine.secret"
    secret = load_or_create_secret(path)
    assert len(secret) == SECRET_SIZE
    assert _mode(path) == 0o600
    assert _mode(path.parent) == 0o700
    assert path.read_bytes() == secret
    assert [p.name for p in path.parent.iterdir()] == ["engine.secret"]


def test_existing_secret_is_reused(tmp_path: Path) -> None:
    path = tmp_path / "engine.secret"
    first = load_or_create_secret(path)
    assert load_or_create_secret(path) == first


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644, 0o620])
def test_refuses_secret_accessible_to_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "engine.secret"
    load_or_create_secret(path)
    os.chmod(path, mode)
    with pytest.raises(SecretFileError, match="chmod 600"):
        load_or_create_secret(path)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_refuses_secret_of_wrong_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "engine.secret"
    write_private_file(path, b"x" * size)
    with pytest.raises(SecretFileError, match="exactly 32 bytes"):
        load_or_create_secret(path)


def test_refuses_directory_as_secret(tmp_path: Path) -> None:
    path = tmp_path / "engine.secret"
    path.mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="regular file"):
        load_or_create_secret(path)


def test_write_private_file_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_private_file(path, b"one")
    with pytest.raises(FileExistsError):
        write_private_file(path, b"two")
    assert path.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_seal_round_trip_and_fresh_nonces() -> None:
    sealer = Sealer(bytes(range(32)))
    plaintext = b"-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n"
    a, b = sealer.seal(plaintext), sealer.seal(plaintext)
    assert a != b
    assert a[0] == 1
    assert plaintext not in a
    assert len(a) == 1 + 12 + len(plaintext) + 16
    assert sealer.unseal(a) == plaintext
    assert sealer.unseal(b) == plaintext
    assert sealer.unseal(sealer.seal(b"")) == b""


def test_wrong_secret_fails() -> None:
    sealed = Sealer(b"\x01" * 32).seal(b"key")
    with pytest.raises(SealError, match="wrong engine secret"):
        Sealer(b"\x02" * 32).unseal(sealed)


def _flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: _flip(s, 0), id="version"),
        pytest.param(lambda s: _flip(s, 5), id="nonce"),
        pytest.param(lambda s: _flip(s, 14), id="ciphertext"),
        pytest.param(lambda s: _flip(s, -1), id="tag"),
        pytest.param(lambda s: s[:-1], id="truncated-tag"),
        pytest.param(lambda s: s[:20], id="truncated"),
        pytest.param(lambda s: b"", id="empty"),
        pytest.param(lambda s: s + b"\x00", id="extended"),
    ],
)
def test_tampering_fails(tamper: object) -> None:
    sealer = Sealer(b"\x07" * 32)
    sealed = sealer.seal(b"private key bytes")
    assert callable(tamper)
    with pytest.raises(SealError):
        sealer.unseal(tamper(sealed))


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_secret_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"\x00" * size)


def test_repr_hides_secret() -> None:
    secret = b"S" * 32
    assert "SSSS" not in repr(Sealer(secret))
