"""How much of a request body the admin API holds: every route is bounded. JSON routes by
``JSON_BODY_MAX_BYTES``, refused with 413 as soon as the declared length or the bytes
pass it; the uploads and the sending routes by their own, larger bounds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from admin_api.app import JSON_BODY_MAX_BYTES
from admin_api.services import ApiServices
from tests.integration.api_support import bearer, error_of, make_tenant_key

URL = "/v1/suppressions"
PIECE = 64 * 1024


def over_the_bound() -> bytes:
    """A JSON suppression list just over the bound, valid but for its size."""
    rows = [{"address": f"u{n}@big.test", "reason": "r" * 200} for n in range(6000)]
    body = json.dumps({"suppressions": rows}).encode()
    assert len(body) > JSON_BODY_MAX_BYTES
    return body


async def test_a_json_body_past_the_bound_is_refused_with_413_naming_it(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    refused = await api_client.post(URL, content=over_the_bound(), headers=bearer(token))
    assert refused.status_code == 413, refused.text
    error = error_of(refused)
    assert error["code"] == "too_large"
    assert error["message"] == f"the request body is larger than {JSON_BODY_MAX_BYTES} bytes"
    listed = await api_client.get(URL, headers=bearer(token))
    assert listed.json()["suppressions"] == []


async def test_a_streamed_body_is_read_no_further_than_the_bound(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    endless = 10 * JSON_BODY_MAX_BYTES // PIECE
    given = 0

    async def streamed() -> AsyncIterator[bytes]:
        nonlocal given
        for _ in range(endless):
            given += 1
            yield b" " * PIECE

    refused = await api_client.post(
        URL, content=streamed(), headers={**bearer(token), "Content-Type": "application/json"}
    )
    assert refused.status_code == 413, refused.text
    assert given <= JSON_BODY_MAX_BYTES // PIECE + 2


async def test_a_declared_length_past_the_bound_is_refused_before_the_body_is_read(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    given = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal given
        for _ in range(2 * JSON_BODY_MAX_BYTES // PIECE):
            given += 1
            yield b" " * PIECE

    headers = {
        **bearer(token),
        "Content-Type": "application/json",
        "Content-Length": str(2 * JSON_BODY_MAX_BYTES),
    }
    refused = await api_client.post(URL, content=body(), headers=headers)
    assert refused.status_code == 413, refused.text
    assert given <= 1


async def test_an_upload_takes_more_than_the_json_bound(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    note = "n" * 1000
    rows = "".join(f"u{n}@big.test,{note}\r\n" for n in range(1200))
    csv = ("address,note\r\n" + rows).encode()
    assert len(csv) > JSON_BODY_MAX_BYTES
    done = await api_client.post(
        f"{URL}/import", content=csv, headers={**bearer(token), "Content-Type": "text/csv"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["added"] == 1200


async def test_a_large_message_passed_on_to_the_route_is_judged_on_its_fields(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    text = "x" * (2 * JSON_BODY_MAX_BYTES)
    bad_recipients = {"from": "news@acme.example", "to": 5, "subject": "Hi", "text": text}
    refused = await api_client.post("/v1/messages", json=bad_recipients, headers=bearer(token))
    assert refused.status_code == 422, refused.text
    assert error_of(refused)["field"] == "to"
