"""The tracking edge: a lean ASGI application serving opens, clicks and unsubscribes.

Routes (anything else is 404; a known route with another method is 405):

- ``GET|HEAD /o/<token>``: the 43-byte transparent GIF, never cached;
- ``GET|HEAD /c/<token>``: 302 to the token's URL (HEAD: no body);
- ``GET /u/<token>``: a page with a button that confirms (a form POST);
- ``POST /u/<token>``: the RFC 8058 one-click unsubscribe (body
  ``List-Unsubscribe=One-Click``, form-urlencoded or multipart, which the
  page's form also sends): the recipient is suppressed for the tenant at
  once, or by the flusher when the store does not answer in time.

A request is served only when its ``Host`` is a registered tracking domain
(``tenant_of``), its token verifies on that host (``TrackingTokens.decode``),
is of the route's kind and belongs to the domain's tenant; otherwise 404,
so a forged, altered or foreign token never redirects. Nothing on the path
of a pixel or a redirect waits for the store: every hit is appended to the
journal (``tracking_edge.journal``) and judged and recorded by the flusher;
an unsubscribe waits until its hit is on disk.

Responses are prebuilt where they can be; no framework sits on the path.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
from collections.abc import Callable
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, quote

from engine.clock import Clock
from engine.model import Suppression
from engine.store import Store
from tracking_edge.hits import EventIds, hit_json, hit_prefix
from tracking_edge.journal import Journal, JournalWriter, json_frame
from tracking_edge.tokens import TokenClaims, TokenKind, TrackingTokens

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]

PIXEL: Final = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00"
    b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
"""A 1x1 transparent GIF, 43 bytes."""
NO_CACHE: Final = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, private"),
    (b"pragma", b"no-cache"),
    (b"expires", b"0"),
]
BODY_MAX: Final = 16 * 1024
"""Largest unsubscribe POST body read."""
CLAIMS_CACHED: Final = 50_000
"""Decoded tokens remembered (all are forgotten at once when full)."""
STORE_SECONDS: Final = 2.0
"""How long an unsubscribe waits for the store before leaving it to the flusher."""
PREFETCH_HEADERS: Final = (b"purpose", b"sec-purpose", b"x-purpose", b"x-moz")
_ONE_CLICK_MULTIPART: Final = re.compile(
    rb'name="?List-Unsubscribe"?\s*\r?\n\r?\n\s*One-Click\s*(\r?\n|$)', re.IGNORECASE
)
_METHODS: Final = {
    TokenKind.OPEN: (b"GET, HEAD", ("GET", "HEAD")),
    TokenKind.CLICK: (b"GET, HEAD", ("GET", "HEAD")),
    TokenKind.UNSUBSCRIBE: (b"GET, HEAD, POST", ("GET", "HEAD", "POST")),
}


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _body(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body}


def _text(
    status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    body = text.encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8")] + (extra or [])
    headers.append((b"content-length", str(len(body)).encode()))
    return _start(status, [*headers, *NO_CACHE]), _body(body)


_PIXEL_START: Final = _start(
    200,
    [(b"content-type", b"image/gif"), (b"content-length", b"43"), *NO_CACHE],
)
_PIXEL_BODY: Final = _body(PIXEL)
_EMPTY_BODY: Final = _body(b"")
_NOT_FOUND: Final = _text(404, "not found\n")
_BAD_REQUEST: Final = _text(400, "expected List-Unsubscribe=One-Click\n")
_REDIRECT_HEADERS: Final = [(b"content-length", b"0"), (b"cache-control", b"private, no-store")]
"""A 302 is cached only when it says so (RFC 9111 §4.2.2); ``no-store`` says it never is,
and every header more costs each redirect (the server checks each)."""


class _Link(NamedTuple):
    """A decoded token and what serving it needs."""

    claims: TokenClaims
    prefix: str
    """The ``hit_prefix`` of its hits."""
    redirect: dict[str, Any]
    """A click's response start (302 to its URL); unused for other kinds."""


def _link(claims: TokenClaims) -> _Link:
    location = _location(claims.url or "")
    redirect = _start(302, [(b"location", location), *_REDIRECT_HEADERS])
    return _Link(claims, hit_prefix(claims), redirect)


class TrackingEdge:
    """The ASGI application of the tracking edge."""

    def __init__(
        self,
        *,
        tokens: TrackingTokens,
        tenant_of: Callable[[str], int | None],
        journal: Journal | JournalWriter,
        store: Store,
        clock: Clock,
    ) -> None:
        self._tokens = tokens
        self._tenant_of = tenant_of
        self._journal = journal
        self._store = store
        self._clock = clock
        self._claims: dict[tuple[str, str], _Link | None] = {}
        self._event_ids = EventIds(os.urandom(8).hex())
        self._not_allowed = {
            kind: _text(405, "method not allowed\n", [(b"allow", allow)])
            for kind, (allow, _) in _METHODS.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        kind = _ROUTES.get(path[:3])
        token = path[3:]
        if kind is None or not token or "/" in token:
            return await _send(send, _NOT_FOUND)
        host, agent, prefetch = _headers(scope["headers"])
        tenant = self._tenant_of(host)
        decoded = self._decoded(token, host) if tenant is not None else None
        if decoded is None:
            return await _send(send, _NOT_FOUND)
        claims, prefix, start = decoded
        if claims.kind is not kind or claims.tenant_id != tenant:
            return await _send(send, _NOT_FOUND)
        method: str = scope["method"]
        if kind is TokenKind.CLICK and not _REDIRECTABLE.match(claims.url or ""):
            return await _send(send, _NOT_FOUND)
        if method not in _METHODS[kind][1]:
            return await _send(send, self._not_allowed[kind])
        if kind is TokenKind.UNSUBSCRIBE:
            return await self._unsubscribe(scope, receive, send, decoded, agent)
        self._hit(scope, prefix, agent, method, prefetch)
        if kind is TokenKind.OPEN:
            await send(_PIXEL_START)
            await send(_EMPTY_BODY if method == "HEAD" else _PIXEL_BODY)
            return
        await send(start)
        await send(_EMPTY_BODY)

    def _decoded(self, token: str, host: str) -> _Link | None:
        """``token`` on ``host`` decoded, remembered: a link is fetched again and again
        (every open of a newsletter, every scanner), its MAC checked once."""
        key = (token, host)
        try:
            return self._claims[key]
        except KeyError:
            pass
        if len(self._claims) >= CLAIMS_CACHED:
            self._claims.clear()
        claims = self._tokens.decode(token, host)
        decoded = self._claims[key] = None if claims is None else _link(claims)
        return decoded

    def _hit(self, scope: Scope, prefix: str, agent: str, method: str, prefetch: bool) -> None:
        client = scope.get("client")
        data = hit_json(
            prefix,
            at=self._clock.now(),
            address=client[0] if client else "",
            user_agent=agent,
            method=method,
            prefetch=prefetch,
            event_id=self._event_ids.next(),
        )
        self._journal.append_frame(json_frame(data))

    async def _unsubscribe(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        decoded: _Link,
        agent: str,
    ) -> None:
        claims, prefix, _ = decoded
        method: str = scope["method"]
        if method != "POST":
            page = _page(_CONFIRM, html.escape(claims.recipient))
            await send(_start(200, _html_headers(page)))
            await send(_EMPTY_BODY if method == "HEAD" else _body(page))
            return
        body = await _read_body(receive)
        if body is None or not _one_click(body):
            return await _send(send, _BAD_REQUEST)
        how = "one-click" if b"confirm" not in body else "page"
        self._hit(scope, prefix, agent, how, False)
        await self._journal.durable()
        await self._suppress(claims)
        page = _page(_DONE, html.escape(claims.recipient))
        await send(_start(200, _html_headers(page)))
        await send(_body(page))

    async def _suppress(self, claims: TokenClaims) -> None:
        suppression = Suppression(
            claims.tenant_id, claims.recipient.lower(), "unsubscribe", self._clock.now()
        )
        try:
            await asyncio.wait_for(self._store.add_suppression(suppression), STORE_SECONDS)
        except Exception as exc:  # the store's failures; the flusher suppresses from the journal
            log.warning("unsubscribe of message %s left to the flusher: %s", claims.message_id, exc)


_ROUTES: Final = {f"/{kind.value}/": kind for kind in TokenKind}
_REDIRECTABLE: Final = re.compile(r"https?://", re.IGNORECASE)
_URL_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F))


def _location(url: str) -> bytes:
    """``url`` as a header value: ASCII as it is, anything else percent-encoded."""
    if url.isascii() and url.isprintable() and " " not in url:
        return url.encode("ascii")
    return quote(url, safe=_URL_SAFE).encode("ascii")


async def _send(send: Send, response: tuple[dict[str, Any], dict[str, Any]]) -> None:
    await send(response[0])
    await send(response[1])


def _headers(headers: list[tuple[bytes, bytes]]) -> tuple[str, str, bool]:
    """The host (no port, lowercase), the user agent and whether it is a prefetch."""
    host = agent = b""
    prefetch = False
    for name, value in headers:
        if name == b"host":
            host = value
        elif name == b"user-agent":
            agent = value
        elif name in PREFETCH_HEADERS:
            prefetch = prefetch or b"prefetch" in value.lower() or b"preview" in value.lower()
    text = host.decode("latin-1").lower()
    text = text[: text.find("]") + 1] if text.startswith("[") else text.partition(":")[0]
    return text, agent.decode("latin-1"), prefetch


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, None when it is larger than ``BODY_MAX``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > BODY_MAX:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _one_click(body: bytes) -> bool:
    """Whether ``body`` says ``List-Unsubscribe=One-Click`` (RFC 8058 §3.1)."""
    if _ONE_CLICK_MULTIPART.search(body):
        return True
    pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    return ("List-Unsubscribe", "One-Click") in pairs


_CONFIRM: Final = (
    "<p>Unsubscribe <b>{address}</b> from these emails?</p>"
    '<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">'
    '<input type="hidden" name="confirm" value="1">'
    '<button type="submit">Unsubscribe</button></form>'
)
_DONE: Final = "<p><b>{address}</b> is unsubscribed and will get no more of these emails.</p>"


def _page(template: str, address: str) -> bytes:
    content = template.format(address=address)
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        "<title>Unsubscribe</title></head>"
        f"<body>{content}</body></html>\n"
    ).encode()


def _html_headers(page: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(page)).encode()),
        *NO_CACHE,
    ]
