"""``/v1/suppressions``: a tenant's suppression list, filtered, paged, added to and imported.

Listing pages by address with an opaque ``cursor`` (the answer's
``next_cursor``, null on the last page) and filters on the reason's start
(``bounce``, ``complaint``, ``unsubscribe``, ``manual``, ``import``, ...), the
address's start or domain and the time suppressed. Adding takes one address
(``address``) or a list (``suppressions``), in one transaction; an address
already suppressed keeps its reason. Importing takes a CSV (a header row naming ``address`` and
optionally ``reason``) as the body (``text/csv``) or as the ``file`` part of
a form (``multipart/form-data``), spooled to a temporary file as it arrives
(``admin_api.uploads``) and stored in batches (``Provisioning.import_suppressions``),
answering the counts and the first rows refused with their line numbers.
Reads need scope ``read``, changes ``manage``; a tenant sees and changes
only its own list.
"""

from __future__ import annotations

import base64
import binascii
import io

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field, field_validator, model_validator

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from admin_api.uploads import receive_file
from engine.model import Suppression, SuppressionFilter
from engine.provisioning import SuppressionImport
from engine.provisioning.service import IMPORT_REASON
from engine.provisioning.suppression_csv import MAX_REASON, address_problem

router = APIRouter(tags=["suppressions"])
read = tenant_caller(Scope.READ)
manage = tenant_caller(Scope.MANAGE)

PAGE_MAX = 1000
IMPORT_MAX_BYTES = 100 * 1024 * 1024
"""The largest CSV accepted (about 3 million typical rows)."""
CSV_TYPES = ("text/csv", "application/csv", "text/plain")


def _checked_address(address: str) -> str:
    cleaned = address.strip().lower()
    problem = address_problem(cleaned)
    if problem is not None:
        raise ValueError(problem)
    return cleaned


class SuppressionIn(BaseModel):
    address: str = Field(min_length=1, max_length=254, description="The recipient address.")
    reason: str = Field(default="manual", max_length=MAX_REASON, description="Why.")

    _address = field_validator("address")(_checked_address)


class SuppressionsIn(BaseModel):
    """One address (``address``, ``reason``) or a list (``suppressions``)."""

    address: str | None = Field(
        default=None, min_length=1, max_length=254, description="One address to suppress."
    )
    reason: str = Field(default="manual", max_length=MAX_REASON, description="Why, for `address`.")
    suppressions: list[SuppressionIn] | None = Field(
        default=None, max_length=PAGE_MAX, description="Several addresses (at most 1000)."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, address: str | None) -> str | None:
        return None if address is None else _checked_address(address)

    @model_validator(mode="after")
    def _one_shape(self) -> SuppressionsIn:
        if (self.address is None) == (self.suppressions is None):
            raise ValueError("give either address or suppressions")
        return self

    def wanted(self) -> list[tuple[str, str]]:
        if self.suppressions is not None:
            return [(s.address, s.reason) for s in self.suppressions]
        assert self.address is not None
        return [(self.address, self.reason)]


class SuppressionOut(BaseModel):
    address: str = Field(description="The address, lower-case.")
    reason: str = Field(description="Why it is suppressed, e.g. `bounce: 5.1.1 ...`.")
    created_at: float = Field(description="When it was suppressed (POSIX seconds).")

    @classmethod
    def of(cls, s: Suppression) -> SuppressionOut:
        return cls(address=s.address, reason=s.reason, created_at=s.created_at)


class SuppressionPage(BaseModel):
    suppressions: list[SuppressionOut] = Field(description="This page, by address.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


class SuppressionsAdded(BaseModel):
    added: int = Field(description="Addresses suppressed now.")
    duplicate: int = Field(description="Addresses suppressed already (or repeated).")


class InvalidRow(BaseModel):
    line: int = Field(description="The line of the CSV the row ended on (the header is 1).")
    text: str = Field(description="The row as read.")
    error: str = Field(description="Why it was refused.")


class SuppressionImportOut(SuppressionsAdded):
    invalid: int = Field(description="Rows refused.")
    invalid_rows: list[InvalidRow] = Field(description="The first rows refused.")

    @classmethod
    def of(cls, done: SuppressionImport) -> SuppressionImportOut:
        rows = [InvalidRow(line=r.line, text=r.text, error=r.error) for r in done.invalid_rows]
        return cls(
            added=done.added, duplicate=done.duplicate, invalid=done.invalid, invalid_rows=rows
        )


@router.get(
    "/suppressions",
    summary="List the tenant's suppressions, filtered, a page at a time",
    responses=responses(401, 403, 422, 429),
)
async def list_suppressions(
    reason: str = Query("", max_length=MAX_REASON, description="Reasons starting so."),
    address_prefix: str = Query("", max_length=254, description="Addresses starting so."),
    domain: str = Query("", max_length=253, description="Addresses at this domain."),
    since: float | None = Query(None, description="Suppressed at or after (POSIX seconds)."),
    until: float | None = Query(None, description="Suppressed before (POSIX seconds)."),
    limit: int = Query(100, ge=1, le=PAGE_MAX, description="Addresses per page."),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page."),
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> SuppressionPage:
    where = SuppressionFilter(reason, address_prefix.lower(), domain.lower(), since, until)
    listed = await services.provisioning.list_suppressions(
        caller.tenant.name, after=_after(cursor), limit=limit + 1, where=where
    )
    page = listed[:limit]
    more = len(listed) > limit
    return SuppressionPage(
        suppressions=[SuppressionOut.of(s) for s in page],
        next_cursor=_cursor(page[-1].address) if more else None,
    )


@router.post(
    "/suppressions",
    status_code=201,
    summary="Suppress one address or a list",
    responses=responses(401, 403, 422, 429),
)
async def add_suppressions(
    body: SuppressionsIn,
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> SuppressionsAdded:
    done = await services.provisioning.add_suppressions(caller.tenant.name, body.wanted())
    return SuppressionsAdded(added=done.added, duplicate=done.duplicate)


@router.delete(
    "/suppressions/{address}",
    status_code=204,
    summary="Unsuppress an address",
    responses=responses(401, 403, 404, 429),
)
async def remove_suppression(
    address: str, caller: Caller = Depends(manage), services: ApiServices = Depends(api_services)
) -> Response:
    await services.provisioning.remove_suppression(caller.tenant.name, address)
    return Response(status_code=204)


@router.post(
    "/suppressions/import",
    summary="Suppress the addresses of a CSV",
    responses=responses(401, 403, 413, 415, 422, 429),
    max_body_size=IMPORT_MAX_BYTES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "address,reason\nann@example.com,bounce\nbob@example.com,\n",
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                },
            },
        }
    },
)
async def import_suppressions(
    request: Request,
    reason: str = Query(
        IMPORT_REASON, min_length=1, max_length=MAX_REASON, description="For rows without one."
    ),
    caller: Caller = Depends(manage),
    services: ApiServices = Depends(api_services),
) -> SuppressionImportOut:
    with await receive_file(request, CSV_TYPES, IMPORT_MAX_BYTES) as received:
        text = io.TextIOWrapper(received, encoding="utf-8-sig", errors="replace", newline="")
        done = await services.provisioning.import_suppressions(
            caller.tenant.name, text, reason=reason
        )
        text.detach()
    return SuppressionImportOut.of(done)


def _cursor(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str:
    """The address a cursor continues after; 422 naming ``cursor`` for a bad one."""
    if not cursor:
        return ""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(422, "invalid", "cursor: not a cursor of this list", "cursor") from None
