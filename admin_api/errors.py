"""The API's errors: one body shape for every failure, and where each comes from.

::

    ApiError(status, code, message, field)   raised by routes and auth
    RequestValidationError (FastAPI)         -> 422 "invalid", field = first bad field
    HTTPException (Starlette: 404, 405, ...) -> its status, code from the status;
                                                400 (a body FastAPI cannot parse) -> 422
    ProvisioningError (engine.provisioning)  -> Unknown 404, AlreadyExists 409,
                                                Invalid 422, TenantHasMail 409,
                                                SecretUnusable 503, StoreFailed 503
    StoreError (engine.store, called directly) -> 503 "unavailable"
    any other exception (our bug)            -> 500 "internal" (the server logs it)

Every failure answers ``{"error": {"code": ..., "message": ..., "field": ...}}``
(``field`` null unless a field is at fault); ``install`` registers the
handlers on an application. A field is written as a dotted path with list
indexes in brackets: ``to[1]``, ``attachments[0].content``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from engine.provisioning import (
    AlreadyExists,
    Invalid,
    ProvisioningError,
    SecretUnusable,
    StoreFailed,
    TenantHasMail,
    Unknown,
)
from engine.store import StoreError

log = logging.getLogger(__name__)

PROVISIONING_STATUS: dict[type[ProvisioningError], tuple[int, str]] = {
    Unknown: (404, "not_found"),
    AlreadyExists: (409, "conflict"),
    Invalid: (422, "invalid"),
    TenantHasMail: (409, "tenant_has_mail"),
    SecretUnusable: (503, "unavailable"),
    StoreFailed: (503, "unavailable"),
}
STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}
_LOCATIONS = ("body", "query", "path", "header", "cookie")


class ApiError(Exception):
    """A failure to answer with ``status`` and the error body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers


class ErrorDetail(BaseModel):
    code: str = Field(description="What went wrong, for programs: not_found, invalid, ...")
    message: str = Field(description="What went wrong, for people.")
    field: str | None = Field(
        default=None, description="The request field at fault, e.g. `to[1]`; null if none."
    )


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for a route's error statuses, e.g. ``responses=responses(404, 409)``."""
    return {
        status: {"model": ErrorBody, "description": HTTPStatus(status).phrase}
        for status in statuses
    }


def from_provisioning(exc: ProvisioningError) -> ApiError:
    """The API error a provisioning failure answers with."""
    for kind, (status, code) in PROVISIONING_STATUS.items():
        if isinstance(exc, kind):
            return ApiError(status, code, str(exc), getattr(exc, "field", None))
    return ApiError(500, "internal", str(exc))


def field_path(location: Sequence[int | str]) -> str | None:
    """``("body", "to", 1)`` as ``to[1]``; None for the whole body."""
    parts = list(location)
    if parts and parts[0] in _LOCATIONS:
        whole = parts[0]
        parts = parts[1:]
        if not parts:
            return None if whole == "body" else str(whole)
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or None


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)


async def _provisioning_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ProvisioningError)
    return await _api_error(request, from_provisioning(exc))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if not errors:
        return error_response(422, "invalid", "the request is not valid")
    first = errors[0]
    field = field_path(first.get("loc", ()))
    message = str(first.get("msg", "not valid"))
    return error_response(422, "invalid", f"{field}: {message}" if field else message, field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400:
        # FastAPI's answer to a body it cannot parse (not UTF-8, not the media
        # type): invalid as a request, like a body that parses but does not validate.
        return error_response(422, "invalid", "the body cannot be parsed")
    code = STATUS_CODES.get(exc.status_code, "error")
    headers = None if exc.headers is None else dict(exc.headers)
    message = str(exc.detail)
    bound = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    if exc.status_code == 413 and bound is not None:  # Starlette's body limit
        message = body_too_large(bound)
    return error_response(exc.status_code, code, message, None, headers)


def body_too_large(limit: int) -> str:
    """What a 413 for a request body past ``limit`` bytes says."""
    return f"the request body is larger than {limit} bytes"


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: the store failed: %s", request.method, request.url.path, exc)
    return error_response(503, "unavailable", "the store is unavailable; retry later")


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The answer to our bug (500)."""
    return error_response(500, "internal", "internal error; it has been logged")


ErrorHandler = Callable[[Request, Exception], Awaitable[JSONResponse]]
HANDLERS: dict[type[Exception], ErrorHandler] = {
    ApiError: _api_error,
    StoreError: _store_error,
    ProvisioningError: _provisioning_error,
    RequestValidationError: _invalid,
    HTTPException: _http_error,
}
"""The error body of each kind of failure but our bugs (``Exception``: 500, answered by
the application's outermost middleware, which also logs it)."""


def handler_of(exc: Exception) -> ErrorHandler | None:
    """The handler of ``exc`` in ``HANDLERS`` (the nearest of its classes, as Starlette
    picks); None for a bug."""
    for kind in type(exc).__mro__:
        handler = HANDLERS.get(kind)
        if handler is not None:
            return handler
    return None


def install(app: FastAPI) -> None:
    """Make every failure of ``app`` answer with the error body."""
    for kind, handler in HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(Exception, internal_error)
