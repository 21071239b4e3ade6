"""``GET /v1/records``: a tenant's log records, filtered, by cursor (scope ``read``).

Records come oldest first, in KumoMTA's shape (``engine.records.record``).
``next_cursor`` continues after the last record of the page; it is given even
when the page is short, so a client may keep polling with it for new
records. Filters: ``type`` (repeated or comma-separated), ``campaign``,
``recipient``, ``message_id``, ``since`` (inclusive) and ``until``
(exclusive), each a time in POSIX seconds or RFC 3339.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from admin_api.auth import Caller, Scope, api_services, tenant_caller
from admin_api.errors import ApiError, responses
from admin_api.services import ApiServices
from engine.records.record import RecordType
from engine.store import RecordQuery

router = APIRouter(tags=["records"])
read = tenant_caller(Scope.READ)
MAX_LIMIT = 1000
_CURSOR_PREFIX = "r1:"
MAX_SEQ = 2**63 - 1
"""The largest record sequence number either store can hold."""


class RecordPage(BaseModel):
    records: list[dict[str, Any]] = Field(
        description="Log records in KumoMTA's shape, oldest first."
    )
    next_cursor: str = Field(description="Pass as `cursor` for the records after these.")


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise ApiError(422, "invalid", "not a cursor this API gave", field="cursor") from exc
    seq = text.removeprefix(_CURSOR_PREFIX)
    if not text.startswith(_CURSOR_PREFIX) or not seq.isascii() or not seq.isdigit():
        raise ApiError(422, "invalid", "not a cursor this API gave", field="cursor")
    if int(seq) > MAX_SEQ:
        raise ApiError(422, "invalid", "not a cursor this API gave", field="cursor")
    return int(seq)


def parse_time(text: str | None, field: str) -> float | None:
    """POSIX seconds or RFC 3339 (with an offset or Z) as POSIX seconds."""
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise ApiError(422, "invalid", "expected a finite time", field)
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ApiError(422, "invalid", "expected POSIX seconds or RFC 3339", field) from exc
    if moment.tzinfo is None:
        raise ApiError(422, "invalid", "an RFC 3339 time needs an offset or Z", field)
    return moment.timestamp()


def record_types(values: list[str]) -> frozenset[str]:
    types = {t.strip() for value in values for t in value.split(",") if t.strip()}
    known = {t.value for t in RecordType}
    unknown = sorted(types - known)
    if unknown:
        raise ApiError(422, "invalid", f"unknown record type {unknown[0]!r}", field="type")
    return frozenset(types)


@router.get(
    "/records", summary="List the tenant's log records", responses=responses(401, 403, 422, 429)
)
async def list_records(
    type: list[str] = Query(default=[], description="Record types, e.g. `Delivery,Bounce`."),
    campaign: str | None = Query(default=None, description="The campaign of the message."),
    recipient: str | None = Query(default=None, description="Recipient address (any case)."),
    message_id: str | None = Query(default=None, description="The message's id."),
    since: str | None = Query(default=None, description="From this time (POSIX or RFC 3339)."),
    until: str | None = Query(default=None, description="Before this time (POSIX or RFC 3339)."),
    cursor: str | None = Query(default=None, description="`next_cursor` of the previous page."),
    limit: int = Query(default=100, ge=1, le=MAX_LIMIT, description="Most records returned."),
    caller: Caller = Depends(read),
    services: ApiServices = Depends(api_services),
) -> RecordPage:
    after = decode_cursor(cursor) if cursor else 0
    query = RecordQuery(
        types=record_types(type),
        campaign=campaign,
        recipient=recipient,
        message_id=message_id,
        since=parse_time(since, "since"),
        until=parse_time(until, "until"),
        after_seq=after,
    )
    found = await services.store.query_records(caller.tenant.id, query, limit)
    last = found[-1][0] if found else after
    return RecordPage(records=[data for _, data in found], next_cursor=encode_cursor(last))
