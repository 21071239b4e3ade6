"""Signed return paths (VERP) and our reference header: the tokens that bring bounces home.

Each copy of a message leaves with the envelope sender
``b-<token>@<prefix>.<from domain>`` (``prefix`` is ``[bounce]
return_path_prefix``, "bounces" by default), where the token names the
message (one recipient of one submission, id ``<submission id>-<index>``).
Each body carries ``X-Penguin-Ref: <token>`` naming its submission, for
bounces and complaints that drop or redact the recipient. A bounce then
names its message through the address it was sent to, or through the header
in the original it returns.

A token is base32 (RFC 4648 §6, lowercase, no padding) of::

    key id length (1) | key id | kind (1) | id | MAC (10)

``kind`` says what ``id`` is: a message id whose submission id is lowercase
hex (the submission's bytes with their length, then the index as a
big-endian integer), any other message id (its UTF-8 text), or the same two
for a submission id. The MAC is HMAC-SHA256 (RFC 2104) under the key of the
key id over everything before it, truncated to 80 bits. Lowercase base32
survives receivers that change the case of local parts (RFC 5321 §2.4 lets
them); decoding ignores case.

Keys rotate by key id: the current one signs, the accepted (older) ones
still verify, any other is not trusted. A decoded token is trusted only
when it is the exact encoding of what its MAC covers: a forged, altered or
truncated token, an unknown key id or a token of the other kind decodes to
None. Keys are derived from the engine secret, one per key id
(``engine.token_keys``).

Pure: no I/O; the keys are given.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hmac
import re
from collections.abc import Mapping
from typing import Final

from config import Settings
from engine import token_keys
from engine.token_keys import TokenKeys

REFERENCE_HEADER: Final = "X-Penguin-Ref"
"""Our header naming the submission in every body sent."""
LOCAL_PART_PREFIX: Final = "b-"
LOCAL_PART_MAX: Final = 64
"""Longest local part (RFC 5321 §4.5.3.1.1)."""
MAC_BYTES: Final = 10
DEFAULT_PREFIX: Final = "bounces"

_MESSAGE_HEX, _MESSAGE_TEXT, _SUBMISSION_HEX, _SUBMISSION_TEXT = 1, 2, 3, 4
_BASE32: Final = re.compile(r"[a-z2-7]+")


KEY_PURPOSE: Final = "return-path"
"""The token family of return paths and reference headers (``engine.token_keys``)."""


def derive_key(secret: bytes, key_id: str) -> bytes:
    """The return-path token key of ``key_id``."""
    return token_keys.derive_key(secret, key_id, KEY_PURPOSE)


def message_id_bytes(message_id: str) -> bytes:
    """``message_id`` in the compact binary form tokens carry (``message_id_of``'s input)."""
    return _message_payload(message_id)


def message_id_of(data: bytes) -> str | None:
    """The message id ``message_id_bytes`` gave ``data`` for; None when it is not one."""
    return _message_id(data[0], data[1:]) if data else None


def return_path_domain(prefix: str, from_domain: str) -> str:
    """The envelope sender's domain for mail from ``from_domain``: ``<prefix>.<domain>``."""
    return f"{prefix}.{from_domain.lower().rstrip('.')}"


class ReturnPathCodec:
    """Makes and reads the tokens of return paths and of our reference header."""

    def __init__(
        self, keys: Mapping[str, bytes], current_key_id: str, *, prefix: str = DEFAULT_PREFIX
    ) -> None:
        self._keys = TokenKeys(keys, current_key_id)
        self._prefix = prefix

    def __repr__(self) -> str:
        return f"ReturnPathCodec({self._keys!r})"

    def local_part(self, message_id: str) -> str:
        """``b-<token>`` naming ``message_id``; ValueError when it cannot fit 64 octets."""
        local = LOCAL_PART_PREFIX + self._token(_message_payload(message_id))
        if len(local) > LOCAL_PART_MAX:
            raise ValueError(f"message id {message_id!r} does not fit a local part")
        return local

    def message_id(self, local_part: str) -> str | None:
        """The message id ``local_part`` names; None unless it is a trusted token."""
        text = local_part.lower()
        if not text.startswith(LOCAL_PART_PREFIX):
            return None
        found = self._verified(text.removeprefix(LOCAL_PART_PREFIX))
        return _message_id(*found) if found else None

    def reference(self, submission_id: str) -> str:
        """The ``X-Penguin-Ref`` value naming ``submission_id``."""
        return self._token(_submission_payload(submission_id))

    def submission_id(self, reference: str) -> str | None:
        """The submission id an ``X-Penguin-Ref`` value names; None unless trusted."""
        found = self._verified(reference.strip().lower())
        return _submission_id(*found) if found else None

    def return_path_domain(self, from_domain: str) -> str:
        """The envelope sender's domain for mail from ``from_domain``."""
        return return_path_domain(self._prefix, from_domain)

    def _token(self, payload: bytes) -> str:
        key_id = self._keys.current_id.encode("ascii")
        signed = bytes([len(key_id)]) + key_id + payload
        mac = self._keys.signing_mac()
        mac.update(signed)
        return (
            base64.b32encode(signed + mac.digest()[:MAC_BYTES]).decode("ascii").rstrip("=").lower()
        )

    def _verified(self, token: str) -> tuple[int, bytes] | None:
        """(kind, id bytes) of a lowercase token that verifies; None otherwise."""
        raw = _b32decode(token)
        if raw is None or len(raw) < 2 + MAC_BYTES:
            return None
        signed, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        key_id = signed[1 : 1 + signed[0]].decode("ascii", "replace")
        expected = self._keys.mac(key_id)
        if expected is None or len(signed) < 2 + signed[0]:
            return None
        expected.update(signed)
        if not hmac.compare_digest(expected.digest()[:MAC_BYTES], mac):
            return None
        body = signed[1 + signed[0] :]
        return body[0], body[1:]


def codec_from_settings(settings: Settings, secret: bytes) -> ReturnPathCodec:
    """The codec of ``[bounce]``: the current key id signs, the accepted ones verify."""
    bounce = settings.bounce
    keys = [bounce.token_key_id, *bounce.accepted_key_ids]
    return ReturnPathCodec(
        {key_id: derive_key(secret, key_id) for key_id in keys},
        bounce.token_key_id,
        prefix=bounce.return_path_prefix,
    )


def _b32decode(token: str) -> bytes | None:
    """The bytes of a lowercase unpadded base32 text that is their exact encoding."""
    if not _BASE32.fullmatch(token):
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * (-len(token) % 8))
    except (binascii.Error, ValueError):
        return None
    # Unused low bits of the last character are ignored by b32decode: refuse them set.
    return raw if base64.b32encode(raw).decode().rstrip("=").lower() == token else None


def _hex_bytes(text: str) -> bytes | None:
    """``text`` as bytes when it is lowercase hex of at most 255 bytes, else None."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw and raw.hex() == text and len(raw) <= 255 else None


@functools.lru_cache(maxsize=1024)
def _message_payload(message_id: str) -> bytes:
    # Cached: the return path and each tracking link of a message name it.
    submission, _, index = message_id.rpartition("-")
    raw = _hex_bytes(submission)
    if raw is not None and index.isascii() and index.isdigit() and str(int(index)) == index:
        number = int(index)
        return bytes([_MESSAGE_HEX, len(raw)]) + raw + number.to_bytes(_size(number), "big")
    return bytes([_MESSAGE_TEXT]) + message_id.encode("utf-8")


def _submission_payload(submission_id: str) -> bytes:
    raw = _hex_bytes(submission_id)
    if raw is not None:
        return bytes([_SUBMISSION_HEX]) + raw
    return bytes([_SUBMISSION_TEXT]) + submission_id.encode("utf-8")


def _size(number: int) -> int:
    return max(1, (number.bit_length() + 7) // 8)


def _message_id(kind: int, body: bytes) -> str | None:
    if kind == _MESSAGE_TEXT:
        return _text(body)
    if kind != _MESSAGE_HEX or not body or len(body) < 2 + body[0]:
        return None
    length = body[0]
    submission, index = body[1 : 1 + length], body[1 + length :]
    return f"{submission.hex()}-{int.from_bytes(index, 'big')}"


def _submission_id(kind: int, body: bytes) -> str | None:
    if kind == _SUBMISSION_HEX:
        return body.hex()
    return _text(body) if kind == _SUBMISSION_TEXT else None


def _text(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None
