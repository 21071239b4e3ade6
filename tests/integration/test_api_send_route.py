"""``POST /v1/messages`` served lean (``admin_api.send_route``) on a real store (SQLite
and PostgreSQL): requests of the usual shape answered by the route's handler without
the routes, every other one passed on with its body, the same answers either way; and
the tenants' sending domains as the route sees them (cached by provisioning)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from admin_api.app import create_app
from admin_api.routes.messages import body_limit
from admin_api.send_route import INJECT_PATH, PATH, SendRoute
from admin_api.services import ApiServices
from engine.clock import FakeClock
from engine.model import ApiScope, SendingDomain, Tenant
from engine.provisioning.api_keys import CACHE_SECONDS
from engine.submission.acceptor import Acceptor
from tests.integration.api_support import bearer, error_of, make_tenant_key


async def sender_of(services: ApiServices, name: str = "acme") -> tuple[Tenant, dict[str, str]]:
    """Tenant ``name`` with the sending domain ``NAME.example`` and a send+read key."""
    tenant, token = await make_tenant_key(services, name, {ApiScope.SEND, ApiScope.READ})
    await services.store.add_domain(domain_of(tenant, f"{name}.example"))
    return tenant, bearer(token)


def domain_of(tenant: Tenant, name: str) -> SendingDomain:
    return SendingDomain(tenant.id, name, "s1", "rsa", b"", "", 0.0)


def message(sender: str = "news@acme.example", **changes: Any) -> dict[str, Any]:
    return {"from": sender, "to": ["ann@dest.example"], "subject": "Hi", "text": "Hi", **changes}


class Routes:
    """Stands for the application's routes: records what is passed on, answers 418."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            event: Message = await receive()
            body += event.get("body", b"")
            if not event.get("more_body", False):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def routes() -> Routes:
    return Routes()


@pytest.fixture
async def lean_client(
    api_services: ApiServices, routes: Routes
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on ``SendRoute`` alone, in front of ``routes``."""
    transport = httpx.ASGITransport(app=SendRoute(routes, api_services), client=("10.0.0.9", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        yield client


async def test_a_request_of_the_usual_shape_is_answered_without_the_routes(
    api_services: ApiServices, lean_client: httpx.AsyncClient, routes: Routes
) -> None:
    tenant, auth = await sender_of(api_services)
    sent = await lean_client.post(PATH, json=message(), headers=auth)
    assert sent.status_code == 202, sent.text
    assert sent.headers["content-type"] == "application/json"
    [queued] = sent.json()["messages"]
    assert queued["recipient"] == "ann@dest.example"
    found = await api_services.store.tenant_message(tenant.id, queued["id"])
    assert found is not None
    [reception] = [r for r in found[1] if r["type"] == "Reception"]
    assert reception["peer_address"]["addr"] == "10.0.0.9"
    assert routes.bodies == []


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"Authorization": ""}, json.dumps(message())),
        ({"Authorization": "Bearer "}, json.dumps(message())),
        ({"Authorization": "Basic abc"}, json.dumps(message())),
        ({"Content-Type": "text/plain"}, json.dumps(message())),
        ({"Content-Type": "application/merge-patch+json"}, json.dumps(message())),
        ({"Idempotency-Key": "k" * 256}, json.dumps(message())),
        ({}, '{"from": "news@acme.example", "to": '),
        ({}, json.dumps(message(to="not a list"))),
        ({}, json.dumps(message(surprise=1))),
        ({}, ""),
    ],
)
async def test_every_other_request_is_passed_on_to_the_routes_with_its_body(
    api_services: ApiServices,
    lean_client: httpx.AsyncClient,
    routes: Routes,
    headers: dict[str, str],
    body: str,
) -> None:
    _, auth = await sender_of(api_services)
    sent_headers = {**auth, "Content-Type": "application/json", **headers}
    sent = await lean_client.post(PATH, content=body.encode(), headers=sent_headers)
    assert sent.status_code == 418
    assert routes.bodies == [body.encode()]


async def test_other_routes_are_passed_on(
    api_services: ApiServices, lean_client: httpx.AsyncClient, routes: Routes
) -> None:
    _, auth = await sender_of(api_services)
    assert (await lean_client.post(f"{PATH}/", json=message(), headers=auth)).status_code == 418
    assert (await lean_client.put(PATH, json=message(), headers=auth)).status_code == 418
    assert (await lean_client.post(INJECT_PATH, json={"a": 1}, headers=auth)).status_code == 418
    assert routes.bodies[-1] == b'{"a":1}'
    assert len(routes.bodies) == 3


CASES = [
    ("accepted", message(), 202),
    ("not a sending domain", message("news@elsewhere.example"), 422),
    ("header at fault", message(headers={"From": "x@acme.example"}), 422),
    ("bad recipient", message(to=["ann@dest.example", "bob@@dest.example"]), 422),
    (
        "too many recipients",
        message(to=[f"r{n}@dest.example" for n in range(1000)], cc=["c@dest.example"]),
        422,
    ),
    ("raw with subject", message(raw="Subject: x\r\n\r\nbody\r\n", subject="x"), 422),
]


@pytest.mark.parametrize(("case", "body", "status"), CASES, ids=[c[0] for c in CASES])
async def test_the_lean_way_answers_as_the_route(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    case: str,
    body: dict[str, Any],
    status: int,
) -> None:
    _, auth = await sender_of(api_services)
    # application/json is served lean; the route alone takes other JSON media types.
    lean = await api_client.post(PATH, json=body, headers=auth)
    route = await api_client.post(
        PATH,
        content=json.dumps(body).encode(),
        headers={**auth, "Content-Type": "application/merge-patch+json"},
    )
    assert (lean.status_code, route.status_code) == (status, status), (lean.text, route.text)
    assert lean.headers.items() == route.headers.items() or status == 202
    if status == 202:
        assert lean.headers.keys() == route.headers.keys()
        assert lean.headers["content-type"] == route.headers["content-type"]
        assert shape(lean.json()) == shape(route.json())
    else:
        assert error_of(lean) == error_of(route)


def shape(answer: dict[str, Any]) -> dict[str, Any]:
    """An answer without its ids."""
    return {
        "keys": list(answer),
        "messages": [(list(m), m["recipient"]) for m in answer["messages"]],
        "suppressed": answer["suppressed"],
    }


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"Authorization": "Bearer pm_aaaaaaaa_" + "a" * 52}, 401, "unauthorized"),
        ({"Authorization": "Bearer not-a-key"}, 401, "unauthorized"),
        ("read only", 403, "forbidden"),
        ("operator without tenant", 422, "invalid"),
    ],
)
async def test_authentication_failures_answer_as_the_route(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    headers: dict[str, str] | str,
    status: int,
    code: str,
) -> None:
    await sender_of(api_services)
    if headers == "read only":
        _, token = await make_tenant_key(api_services, "acme", {ApiScope.READ})
        headers = bearer(token)
    elif headers == "operator without tenant":
        assert api_services.operator_token is not None
        headers = bearer(api_services.operator_token)
    assert isinstance(headers, dict)
    lean = await api_client.post(PATH, json=message(), headers=headers)
    route = await api_client.post(
        PATH,
        content=json.dumps(message()).encode(),
        headers={**headers, "Content-Type": "application/merge-patch+json"},
    )
    assert lean.status_code == route.status_code == status
    assert error_of(lean) == error_of(route)
    assert error_of(lean)["code"] == code
    assert lean.headers.get("www-authenticate") == route.headers.get("www-authenticate")


async def test_a_domain_added_by_another_process_is_usable_at_once(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, auth = await sender_of(api_services)
    assert (await api_client.post(PATH, json=message(), headers=auth)).status_code == 202
    await api_services.store.add_domain(domain_of(tenant, "later.example"))
    sent = await api_client.post(PATH, json=message("news@later.example"), headers=auth)
    assert sent.status_code == 202, sent.text


async def test_a_removed_domain_is_refused_at_once_here_and_within_the_cache_time_elsewhere(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    tenant, auth = await sender_of(api_services)
    await api_services.store.add_domain(domain_of(tenant, "other.example"))
    for sender in ("news@acme.example", "news@other.example"):
        assert (await api_client.post(PATH, json=message(sender), headers=auth)).status_code == 202

    await api_services.provisioning.remove_domain("acme.example", tenant="acme")
    refused = await api_client.post(PATH, json=message(), headers=auth)
    assert refused.status_code == 422
    assert error_of(refused)["field"] == "from"

    assert await api_services.store.remove_domain("other.example", tenant.id)  # elsewhere
    other = message("news@other.example")
    assert (await api_client.post(PATH, json=other, headers=auth)).status_code == 202
    api_clock.advance(CACHE_SECONDS)
    refused = await api_client.post(PATH, json=other, headers=auth)
    assert refused.status_code == 422
    assert error_of(refused)["field"] == "from"


async def test_a_bug_answers_500_with_the_error_body_and_reaches_the_server(
    api_services: ApiServices,
) -> None:
    _, auth = await sender_of(api_services)
    broken = dataclasses.replace(api_services, acceptor=cast(Acceptor, object()))
    transport = httpx.ASGITransport(app=create_app(broken), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        answer = await client.post(PATH, json=message(), headers=auth)
    assert answer.status_code == 500
    assert error_of(answer)["code"] == "internal"
    transport = httpx.ASGITransport(app=create_app(broken))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        with pytest.raises(AttributeError):
            await client.post(PATH, json=message(), headers=auth)


def small_messages(services: ApiServices) -> ApiServices:
    """``services`` taking messages of 1 KiB at most (a request body of 2 KiB + room)."""
    submission = dataclasses.replace(services.settings.submission, max_message_bytes=1024)
    return dataclasses.replace(
        services, settings=dataclasses.replace(services.settings, submission=submission)
    )


async def test_a_body_over_the_limit_is_refused_before_it_is_read_or_routed(
    api_services: ApiServices, routes: Routes
) -> None:
    _, auth = await sender_of(api_services)
    limit = body_limit(1024)
    transport = httpx.ASGITransport(app=SendRoute(routes, small_messages(api_services)))
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        declared = await client.post(PATH, content=b"x" * (limit + 1), headers=auth)
        pieces_read = 0

        async def streamed() -> AsyncIterator[bytes]:
            nonlocal pieces_read
            for _ in range(limit // 1000 + 10):
                pieces_read += 1
                yield b"y" * 1000

        chunked = await client.post(PATH, content=streamed(), headers=auth)
        at_limit = await client.post(PATH, content=b"z" * limit, headers=auth)
        injected = await client.post(INJECT_PATH, content=b"i" * (limit + 1), headers=auth)
    for refused in (declared, chunked, injected):
        assert refused.status_code == 413, refused.text
        assert error_of(refused)["code"] == "too_large"
    assert pieces_read <= limit // 1000 + 2  # refused as the limit passed, not at the end
    assert at_limit.status_code == 418  # not JSON: passed on, whole
    assert routes.bodies == [b"z" * limit]


def test_fastapi_looks_for_no_opentelemetry_provider_per_request(
    api_services: ApiServices,
) -> None:
    telemetry = create_app(api_services)._native_telemetry
    assert not (telemetry.config["tracing"] or telemetry.config["metrics"])
    assert not telemetry.config["logs"] and not telemetry.enabled()
