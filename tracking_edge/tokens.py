"""Signed tracking tokens: the path of every open pixel, click and unsubscribe link.

A link is ``<scheme>://<tracking domain>/<o|c|u>/<token>``; the edge serves it
from the token alone, with no database. A token is base64url (RFC 4648 §5,
no padding) of::

    key id length (1) | key id | kind (1) | sent at (4) | tenant id (4)
    | message id length (1) | message id | recipient length (2) | recipient
    | URL (the rest; clicks only) | MAC (12)

``kind`` is ``o``, ``c`` or ``u``; ``sent at`` is whole POSIX seconds of the
send (what bot detection measures click delays from); the message id is in
``engine.return_path``'s compact form. Only an unsubscribe token carries the
recipient (the edge suppresses it without the store); open and click tokens
carry it empty, so the links of a forwarded message, a proxy's log or a
scanner's report do not give the address away (their records name the
message, whose recipient it is). The MAC is HMAC-SHA256 (RFC 2104)
under the key of the key id over everything before it, then a zero byte and
the tracking domain (lowercase), truncated to 96 bits: a token made for one
tracking domain does not verify on another, so one tenant's domain cannot
serve another tenant's links, and a changed URL does not verify, so the edge
is never an open redirect.

Keys rotate by key id like return paths': the current one signs, the
accepted ones still verify, any other is not trusted. A token is trusted
only when it is the exact (canonical) encoding of bytes whose MAC verifies:
any altered character, a foreign key id, the wrong host decode to None.
Keys derive from the engine secret (``engine.token_keys.derive_key``,
purpose ``tracking``).

Pure: no I/O; the keys and the send time are given.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hmac
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from config import Settings
from engine.model import QueuedMessage
from engine.return_path import message_id_bytes, message_id_of
from engine.token_keys import TokenKeys, derive_key

MAC_BYTES: Final = 12
KEY_PURPOSE: Final = "tracking"
_HEAD: Final = struct.Struct(">cII")
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")


class TokenKind(enum.StrEnum):
    """What a token's link does; its value is the path segment and the kind byte."""

    OPEN = "o"
    CLICK = "c"
    UNSUBSCRIBE = "u"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a trusted token says."""

    kind: TokenKind
    message_id: str
    tenant_id: int
    recipient: str
    domain: str
    sent_at: int
    """POSIX seconds of the send."""
    url: str | None = None
    """The original link of a click token."""
    key_id: str = ""


class TrackingTokens:
    """Makes the tracking links of a message and reads their tokens back."""

    def __init__(
        self, keys: Mapping[str, bytes], current_key_id: str, *, scheme: str = "https"
    ) -> None:
        if scheme not in ("https", "http"):
            raise ValueError(f"scheme {scheme!r}: expected https or http")
        self._keys = TokenKeys(keys, current_key_id)
        self._scheme = scheme

    def __repr__(self) -> str:
        return f"TrackingTokens({self._keys!r})"

    def open_url(self, message: QueuedMessage, domain: str, *, sent_at: float | None = None) -> str:
        """The open pixel's URL (``/o/<token>``) for ``message`` on ``domain``."""
        return self._url(TokenKind.OPEN, message, domain, "", sent_at)

    def click_url(
        self, message: QueuedMessage, domain: str, url: str, *, sent_at: float | None = None
    ) -> str:
        """The URL (``/c/<token>``) that records a click and redirects to ``url``."""
        return self._url(TokenKind.CLICK, message, domain, url, sent_at)

    def unsubscribe_url(
        self, message: QueuedMessage, domain: str, *, sent_at: float | None = None
    ) -> str:
        """The one-click unsubscribe URL (``/u/<token>``, RFC 8058) for ``message``."""
        return self._url(TokenKind.UNSUBSCRIBE, message, domain, "", sent_at)

    def click_urls(
        self, message: QueuedMessage, domain: str, *, sent_at: float | None = None
    ) -> Callable[[str], str]:
        """``click_url`` of ``message`` on ``domain`` for any link: what the links of one
        message share (the token's head, the MAC's key and head) is made once."""
        host = _host(domain)
        head = self._head(TokenKind.CLICK, message, sent_at)
        signing = self._keys.signing_mac()
        signing.update(head)
        tail = _mac_tail(host)
        prefix = f"{self._scheme}://{host}/{TokenKind.CLICK.value}/"

        def click_url(url: str) -> str:
            target = url.encode("utf-8")
            mac = signing.copy()
            mac.update(target + tail)
            return prefix + _b64encode(head + target + mac.digest()[:MAC_BYTES])

        return click_url

    def token(
        self,
        kind: TokenKind,
        message: QueuedMessage,
        domain: str,
        url: str = "",
        sent_at: float | None = None,
    ) -> str:
        """The token of a link; ``sent_at`` defaults to the message's due time."""
        signed = self._head(kind, message, sent_at) + url.encode("utf-8")
        mac = self._keys.signing_mac()
        mac.update(signed + _mac_tail(_host(domain)))
        return _b64encode(signed + mac.digest()[:MAC_BYTES])

    def decode(self, token: str, host: str) -> TokenClaims | None:
        """The claims of ``token`` presented on ``host``; None unless trusted there."""
        raw = _b64decode(token)
        if raw is None or len(raw) < 2 + MAC_BYTES:
            return None
        signed, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        key_id = signed[1 : 1 + signed[0]].decode("ascii", "replace")
        domain = _host(host)
        expected = self._keys.mac(key_id)
        if expected is None:
            return None
        expected.update(signed + _mac_tail(domain))
        if not hmac.compare_digest(expected.digest()[:MAC_BYTES], mac):
            return None
        return _claims(signed[1 + signed[0] :], domain, key_id)

    def _head(self, kind: TokenKind, message: QueuedMessage, sent_at: float | None) -> bytes:
        """The token's bytes before the URL (all of them but the MAC, for no click)."""
        when = message.due_at if sent_at is None else sent_at
        key_id = self._keys.current_id.encode("ascii")
        mid = message_id_bytes(message.id)
        rcpt = message.recipient.encode("utf-8") if kind is TokenKind.UNSUBSCRIBE else b""
        if len(mid) > 255 or len(rcpt) > 65535:
            raise ValueError(f"message {message.id!r} does not fit a tracking token")
        return b"".join(
            (
                bytes([len(key_id)]),
                key_id,
                _HEAD.pack(kind.value.encode("ascii"), max(0, int(when)), message.tenant_id),
                bytes([len(mid)]),
                mid,
                len(rcpt).to_bytes(2, "big"),
                rcpt,
            )
        )

    def _url(
        self,
        kind: TokenKind,
        message: QueuedMessage,
        domain: str,
        url: str,
        sent_at: float | None,
    ) -> str:
        token = self.token(kind, message, domain, url, sent_at)
        return f"{self._scheme}://{_host(domain)}/{kind.value}/{token}"


def tokens_from_settings(settings: Settings, secret: bytes) -> TrackingTokens:
    """The tokens of ``[tracking]``: the current key id signs, the accepted ones verify."""
    tracking = settings.tracking
    key_ids = [tracking.token_key_id, *tracking.accepted_key_ids]
    return TrackingTokens(
        {key_id: derive_key(secret, key_id, KEY_PURPOSE) for key_id in key_ids},
        tracking.token_key_id,
        scheme=tracking.scheme,
    )


def _host(domain: str) -> str:
    return domain.lower().rstrip(".")


def _mac_tail(domain: str) -> bytes:
    """What the MAC covers after the token's bytes: a zero byte and the tracking domain."""
    return b"\0" + domain.encode("utf-8", "surrogateescape")


def _b64encode(raw: bytes) -> str:
    """``raw`` in unpadded base64url."""
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _b64decode(token: str) -> bytes | None:
    """The bytes ``token`` is the canonical unpadded base64url encoding of, else None."""
    if not token.isascii() or not _BASE64URL.fullmatch(token) or len(token) % 4 == 1:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    # Unused low bits of the last character are ignored by the decoder: refuse them set.
    return raw if _b64encode(raw) == token else None


def _claims(body: bytes, domain: str, key_id: str) -> TokenClaims | None:
    """The claims of the verified bytes after the key id; None if they are malformed."""
    if len(body) < _HEAD.size + 3:
        return None
    kind_byte, sent_at, tenant_id = _HEAD.unpack_from(body)
    at = _HEAD.size
    mid_end = at + 1 + body[at]
    rcpt_at = mid_end + 2
    if rcpt_at > len(body):
        return None
    rcpt_end = rcpt_at + int.from_bytes(body[mid_end:rcpt_at], "big")
    try:
        kind = TokenKind(kind_byte.decode("ascii"))
        message_id = message_id_of(body[at + 1 : mid_end])
        recipient = body[rcpt_at:rcpt_end].decode("utf-8")
        url = body[rcpt_end:].decode("utf-8")
    except (UnicodeDecodeError, ValueError):
        return None
    if message_id is None or rcpt_end > len(body) or (kind is TokenKind.CLICK) != bool(url):
        return None
    return TokenClaims(
        kind=kind,
        message_id=message_id,
        tenant_id=tenant_id,
        recipient=recipient,
        domain=domain,
        sent_at=sent_at,
        url=url or None,
        key_id=key_id,
    )
