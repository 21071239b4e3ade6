"""``POST /v1/messages`` served lean: the same handler, without FastAPI's machinery.

Sending is the API's hot route; per request, FastAPI's dependency resolution,
its body and response-model handling, Starlette's middleware and its routing
through every route cost more CPU than the acceptance itself. ``lean_answer``
answers the requests of the usual shape by calling what the route calls:
``auth.authorized`` (the key, its scope, its rate), ``MessageIn`` validation of
the JSON body, ``routes.messages.sent`` (the acceptance) and
``errors.handler_of`` for the error body. The route stays declared (the OpenAPI
document, and the requests passed on). Two ways lead to it:

- ``DirectSendRoute``: the admin listener answers the route itself
  (``engine.runtime.http_serving.DirectRoute``), without an ASGI round trip
  through uvicorn's proxy headers middleware, FastAPI and Starlette, in one
  write; a request it does not take, or that ``lean_answer`` passes on, goes to
  the application as any other, its body given again.
- ``SendRoute``, in front of the application's middleware stack
  (``admin_api.app.AdminApp``): the ASGI way, for the requests that reach the
  application (and for an application served without the engine's listener).

A request is answered lean only when it is ``POST /v1/messages`` with an
``application/json`` body that parses and validates as ``MessageIn``, a Bearer
credential, and an ``Idempotency-Key`` (if any) the route takes; checking that
has no effect, so every other request is passed on, its body replayed, to the
route, which answers it as it always has (401 without a credential, 422 naming
the field, ...). Either way the body is read whole first (KumoMTA's injection
route's too, then passed on), and a body larger than
``routes.messages.body_limit`` (twice the largest message, and room for the fields around it)
is refused with 413 as soon as its declared length or its bytes say so, before
anything else: no request holds more of the server's memory than that.
Authentication comes first in both ways (FastAPI solves the route's
dependencies before it validates the body): a request answered lean has
a valid body, and one passed on is authenticated by the route, never twice.
"""

from __future__ import annotations

import json
from typing import Final, NamedTuple

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin_api.auth import TENANT_HEADER, authorized
from admin_api.body_bound import refuse_body
from admin_api.errors import handler_of, internal_error
from admin_api.routes.messages import (
    IDEMPOTENCY_KEY_MAX,
    MessageIn,
    body_limit,
    peer_host,
    sent,
)
from admin_api.services import ApiServices
from engine.model import ApiScope

PATH: Final = "/v1/messages"
"""The route served here (``routes.messages.send_message`` under ``/v1``)."""
INJECT_PATH: Final = "/api/inject/v1"
"""KumoMTA's injection route, whose body is bounded here too."""
_BOUNDED: Final = frozenset({PATH, INJECT_PATH})
_AUTHORIZATION: Final = b"authorization"
_CONTENT_TYPE: Final = b"content-type"
_IDEMPOTENCY_KEY: Final = b"idempotency-key"
_TENANT: Final = TENANT_HEADER.lower().encode("latin-1")
_CONTENT_LENGTH: Final = b"content-length"
_JSON_HEADERS: Final = [(b"content-type", b"application/json")]
_RECEIPT_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class LeanAnswer(NamedTuple):
    """A whole answer of the lean route: its status, header fields and body; ``bug`` the
    exception of a 500 (our bug), to be raised on to the server once answered."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    bug: Exception | None = None


class SendRoute:
    """ASGI middleware: ``POST /v1/messages`` of the usual shape answered by the route's
    handler directly (``lean_answer``), with the application's error bodies (the 500 of
    a bug too, the exception raised on to the server as Starlette's outermost
    middleware does); everything else passed to ``app``."""

    def __init__(self, app: ASGIApp, services: ApiServices) -> None:
        self.app = app
        self._services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in _BOUNDED:
            await self.app(scope, receive, send)
            return
        limit = sending_body_limit(self._services)
        headers = _first_headers(scope["headers"])
        declared = headers.get(_CONTENT_LENGTH, "")
        if declared.isdigit() and int(declared) > limit:
            await refuse_body(scope, receive, send, limit)
            return
        body, complete = await _body(receive, limit)
        if body is None:
            await refuse_body(scope, receive, send, limit)
            return
        if not complete:
            return
        answer = None
        if scope["path"] == PATH:
            answer = await lean_answer(self._services, scope, body, headers)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        await send({"type": "http.response.body", "body": answer.body})
        if answer.bug is not None:
            raise answer.bug  # our bug: the server logs it, as the middleware's 500 does


class DirectSendRoute:
    """``POST /v1/messages`` answered by the admin listener itself
    (``engine.runtime.http_serving.DirectRoute``): ``lean_answer`` on the body the
    listener has read, without the ASGI application's layers around it."""

    method = b"POST"
    path = PATH.encode("ascii")

    def __init__(self, services: ApiServices) -> None:
        self._services = services

    @property
    def max_body(self) -> int:
        return sending_body_limit(self._services)

    async def answer(self, scope: Scope, body: bytes) -> LeanAnswer | None:
        return await lean_answer(self._services, scope, body)


def sending_body_limit(services: ApiServices) -> int:
    """The largest body a sending route takes (``routes.messages.body_limit``)."""
    return body_limit(services.settings.submission.max_message_bytes)


async def lean_answer(
    services: ApiServices, scope: Scope, body: bytes, headers: dict[bytes, str] | None = None
) -> LeanAnswer | None:
    """The answer to ``POST /v1/messages`` with ``body`` (within ``sending_body_limit``,
    as both ways hold it) when the request has the usual shape (see the module
    docstring), as the route answers it; None for any other, for the route to answer.
    ``headers``: the request's ``_first_headers``, when the caller has them."""
    if headers is None:
        headers = _first_headers(scope["headers"])
    credential = _bearer(headers.get(_AUTHORIZATION))
    idempotency_key = headers.get(_IDEMPOTENCY_KEY)
    if (
        credential is None
        or not _is_json(headers.get(_CONTENT_TYPE))
        or (idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX)
    ):
        return None
    message = _message(body)
    if message is None:
        return None
    try:
        caller = await authorized(services, credential, headers.get(_TENANT), ApiScope.SEND)
        accepted = await sent(
            services, caller, message, body, idempotency_key, peer_host(scope.get("client"))
        )
    except Exception as exc:
        handler = handler_of(exc)
        response = await (handler or internal_error)(Request(scope), exc)
        bug = None if handler is not None else exc
        return LeanAnswer(response.status_code, response.raw_headers, bytes(response.body), bug)
    # The receipt has ``Accepted``'s fields, in its order, of JSON types already.
    answer = _RECEIPT_JSON.encode(accepted).encode()
    headers_out = [(b"content-length", str(len(answer)).encode("ascii")), *_JSON_HEADERS]
    return LeanAnswer(202, headers_out, answer)


def _first_headers(raw: list[tuple[bytes, bytes]]) -> dict[bytes, str]:
    """Each header's first value (as Starlette's ``Headers.get``), decoded as Latin-1."""
    headers: dict[bytes, str] = {}
    for name, value in raw:
        headers.setdefault(name.lower(), value.decode("latin-1"))
    return headers


def _bearer(authorization: str | None) -> str | None:
    """The credential of ``Authorization: Bearer <credential>``, as FastAPI's
    ``HTTPBearer`` reads it; None when there is none."""
    if not authorization:
        return None
    scheme, _, credential = authorization.partition(" ")
    credential = credential.strip()
    if not scheme or not credential or scheme.lower() != "bearer":
        return None
    return credential


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    return content_type.partition(";")[0].strip().lower() == "application/json"


def _message(body: bytes) -> MessageIn | None:
    """``body`` as the route's ``MessageIn``; None when it is not one, whatever the reason
    (the route then says why). Validated in pydantic's JSON mode: where FastAPI (the
    ``json`` module's values, then validation) takes a body, this gives the same
    message, and a body it refuses goes to the route."""
    if not body:
        return None
    try:
        return MessageIn.model_validate_json(body)
    except Exception:
        return None


async def _body(receive: Receive, limit: int) -> tuple[bytes | None, bool]:
    """The request's body (None past ``limit`` bytes, the rest unread); False when the
    client went away before sending all of it."""
    chunks = []
    size = 0
    while True:
        event = await receive()
        if event["type"] != "http.request":
            return b"", False
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None, True
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` with ``body`` (read already) given again first."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
