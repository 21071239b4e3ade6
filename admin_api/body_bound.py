"""Request bodies bounded in the API's error body: ``BodyLimitErrors`` and ``refuse_body``.

Every route of the admin application has a body bound: its own ``max_body_size``
(the uploads', the sending routes') or the application's (``app.JSON_BODY_MAX_BYTES``),
enforced by Starlette's body limit before the body is held: a declared
``Content-Length`` past the bound is refused before the body is read, other bodies as
their bytes pass it. Where that refusal reaches the error handlers it is answered in
the API's error body; where Starlette answers it itself (a declared length past the
bound), it answers in plain text, which ``BodyLimitErrors`` turns into the error body.
"""

from __future__ import annotations

from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from admin_api.errors import ApiError, body_too_large, handler_of


async def refuse_body(scope: Scope, receive: Receive, send: Send, limit: int) -> None:
    """Answer 413 in the API's error body: the body is larger than ``limit`` bytes."""
    refused = ApiError(413, "too_large", body_too_large(limit))
    handler = handler_of(refused)
    assert handler is not None
    response = await handler(Request(scope), refused)
    await response(scope, receive, send)


class BodyLimitErrors:
    """ASGI middleware: a 413 in plain text (the body limit's own answer; every answer
    of the API is JSON) is sent in the API's error body, naming the bound."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        replacing = False

        async def sent(message: Message) -> None:
            nonlocal replacing
            if message["type"] == "http.response.start" and _plain_413(message, scope):
                replacing = True
            elif not replacing:
                await send(message)
            elif not message.get("more_body", False):
                await refuse_body(scope, receive, send, scope[MAX_BODY_SIZE_SCOPE_KEY])

        await self.app(scope, receive, sent)


def _plain_413(start: Message, scope: Scope) -> bool:
    if start["status"] != 413 or MAX_BODY_SIZE_SCOPE_KEY not in scope:
        return False
    for name, value in start.get("headers", ()):
        if name.lower() == b"content-type":
            return bool(value.startswith(b"text/plain"))
    return False
