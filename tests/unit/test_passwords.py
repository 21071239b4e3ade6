import asyncio
import base64
import re

import pytest

from engine.submission.passwords import (
    generate_password,
    generate_username,
    hash_password,
    verify_password,
    verify_password_async,
)

ENCODED_HUNTER2 = hash_password("hunter2")


def test_hash_format() -> None:
    parts = ENCODED_HUNTER2.split("$")
    assert parts[:4] == ["scrypt", str(2**14), "8", "1"]
    assert len(base64.b64decode(parts[4], validate=True)) == 16
    assert len(base64.b64decode(parts[5], validate=True)) == 32
    assert "hunter2" not in ENCODED_HUNTER2


def test_salts_differ() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize(
    ("password", "expected"),
    [("hunter2", True), ("hunter3", False), ("", False), ("Hunter2", False), ("hunter2 ", False)],
)
def test_verify(password: str, expected: bool) -> None:
    assert verify_password(password, ENCODED_HUNTER2) is expected


def test_unicode_and_empty_passwords() -> None:
    assert verify_password("pässwörd🐧", hash_password("pässwörd🐧"))
    assert verify_password("", hash_password(""))
    assert not verify_password("\udcff", ENCODED_HUNTER2)


def _with(index: int, value: str) -> str:
    parts = ENCODED_HUNTER2.split("$")
    parts[index] = value
    return "$".join(parts)


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("", id="empty"),
        pytest.param("hunter2", id="plaintext"),
        pytest.param(ENCODED_HUNTER2 + "$x", id="extra-field"),
        pytest.param(ENCODED_HUNTER2.rsplit("$", 1)[0], id="missing-field"),
        pytest.param(_with(0, "bcrypt"), id="scheme"),
        pytest.param(_with(1, "x"), id="n-not-int"),
        pytest.param(_with(1, "1000"), id="n-not-power-of-two"),
        pytest.param(_with(1, str(2**30)), id="n-too-large"),
        pytest.param(_with(2, "0"), id="r-zero"),
        pytest.param(_with(2, "1000"), id="r-too-large"),
        pytest.param(_with(3, "-1"), id="p-negative"),
        pytest.param(_with(4, "!!!"), id="salt-not-base64"),
        pytest.param(_with(4, ""), id="salt-empty"),
        pytest.param(_with(5, "!!!"), id="hash-not-base64"),
        pytest.param(_with(5, "AAAA"), id="hash-too-short"),
        pytest.param(_with(5, base64.b64encode(bytes(32)).decode()), id="hash-wrong"),
    ],
)
def test_malformed_or_wrong_encoded_is_false(encoded: str) -> None:
    assert verify_password("hunter2", encoded) is False


def test_other_cost_parameters_still_verify() -> None:
    import hashlib

    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=4, p=2, dklen=32)
    encoded = "$".join(
        [
            "scrypt",
            "1024",
            "4",
            "2",
            base64.b64encode(salt).decode(),
            base64.b64encode(digest).decode(),
        ]
    )
    assert verify_password("pw", encoded)
    assert not verify_password("pw2", encoded)


async def test_verify_async_does_not_block_the_loop() -> None:
    task = asyncio.create_task(verify_password_async("hunter2", ENCODED_HUNTER2))
    loop_turns = 0
    while not task.done():
        await asyncio.sleep(0)
        loop_turns += 1
    assert task.result() is True
    assert loop_turns > 2
    assert await verify_password_async("nope", ENCODED_HUNTER2) is False


@pytest.mark.parametrize(
    ("tenant", "prefix"),
    [
        ("acme", "acme"),
        ("Acme Corp", "acme-corp"),
        ("  ACME!!Corp--Ltd. ", "acme-corp-ltd"),
        ("Bücher & Co", "b-cher-co"),
        ("", "user"),
        ("!!!", "user"),
        ("x" * 50, "x" * 32),
    ],
)
def test_generate_username(tenant: str, prefix: str) -> None:
    name = generate_username(tenant)
    assert re.fullmatch(re.escape(prefix) + r"-[a-z2-7]{8}", name), name


def test_generated_usernames_differ() -> None:
    assert len({generate_username("acme") for _ in range(50)}) == 50


def test_generate_password() -> None:
    passwords = {generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)
