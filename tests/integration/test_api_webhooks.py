"""``/v1/webhooks`` and ``/v1/records`` through the real app on a real store (both backends),
test POSTs to a real endpoint on loopback, and the README's verification code."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin_api.app import create_app
from admin_api.routes.records import encode_cursor
from admin_api.services import ApiServices
from config.schema import WebhookSettings
from engine.clock import FakeClock
from engine.model import ApiScope
from engine.provisioning import Provisioning
from engine.records.record import Record, RecordType
from tests.harness.webhook_receiver import WebhookReceiver, webhook_receiver
from tests.integration.api_support import NODE, bearer, client_of, error_of, make_tenant_key

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_verify() -> Any:
    """The ``verify`` function of the README's Webhooks section, as written there."""
    text = README.read_text()
    section = text[text.index("## Webhooks") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(code.group(1), namespace)
    return namespace["verify"]


@pytest.fixture
async def receiver(api_clock: FakeClock) -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver(api_clock.now) as running:
        yield running


@pytest.fixture
async def client(
    api_services: ApiServices, api_clock: FakeClock
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app whose webhooks may post to http on loopback."""
    settings = dataclasses.replace(
        api_services.settings,
        webhooks=WebhookSettings(allow_http=True, allow_private=True, request_timeout_seconds=2),
    )
    services = dataclasses.replace(
        api_services,
        settings=settings,
        provisioning=Provisioning(api_services.store, settings, nodeid=NODE, clock=api_clock),
    )
    async with client_of(create_app(services)) as running:
        yield running


async def test_a_webhook_is_made_listed_changed_probed_and_removed(
    client: httpx.AsyncClient,
    api_services: ApiServices,
    receiver: WebhookReceiver,
    api_clock: FakeClock,
) -> None:
    api_clock.advance(time.time() - api_clock.now())  # the README's code reads the real time
    _, key = await make_tenant_key(api_services, "acme")
    made = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url("/ok"), "record_types": ["Delivery", "Bounce"]},
        headers=bearer(key),
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    secret = hook.pop("secret")
    assert secret.startswith("whsec_")
    assert hook["record_types"] == ["Bounce", "Delivery"] and hook["format"] == "single"
    got = await client.get(f"/v1/webhooks/{hook['id']}", headers=bearer(key))
    assert got.json() == hook and "secret" not in got.json()
    listed = await client.get("/v1/webhooks", headers=bearer(key))
    assert listed.json() == {"webhooks": [hook]}

    changed = await client.patch(
        f"/v1/webhooks/{hook['id']}",
        json={"format": "batch", "batch_size": 10, "enabled": False},
        headers=bearer(key),
    )
    assert changed.status_code == 200
    assert (changed.json()["format"], changed.json()["enabled"]) == ("batch", False)

    probed = await client.post(f"/v1/webhooks/{hook['id']}/test", headers=bearer(key))
    assert probed.json() == {"status": 200, "ok": True, "error": None}
    [request] = receiver.on("/ok")
    assert [r["type"] for r in json.loads(request.body)] == ["Test"]
    verify = readme_verify()
    assert verify(secret, request.headers["penguin-signature"], request.body)
    assert not verify(secret, request.headers["penguin-signature"], request.body + b"x")
    assert request.headers["penguin-webhook-id"] == hook["id"]

    await client.patch(
        f"/v1/webhooks/{hook['id']}", json={"url": receiver.url("/fail")}, headers=bearer(key)
    )
    failed = await client.post(f"/v1/webhooks/{hook['id']}/test", headers=bearer(key))
    assert failed.json() == {"status": 500, "ok": False, "error": None}

    log = await client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=bearer(key))
    assert log.json() == {"deliveries": []}
    for before in ["0", str(2**64)]:
        bad = await client.get(
            f"/v1/webhooks/{hook['id']}/deliveries", params={"before": before}, headers=bearer(key)
        )
        assert (bad.status_code, error_of(bad)["field"]) == (422, "before")
    removed = await client.delete(f"/v1/webhooks/{hook['id']}", headers=bearer(key))
    assert removed.status_code == 204
    gone = await client.get(f"/v1/webhooks/{hook['id']}", headers=bearer(key))
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://x.example/"}, "url"),
        ({"url": "https://x.example/", "record_types": ["Nope"]}, "record_types"),
        ({"url": "https://x.example/", "batch_size": 0}, "batch_size"),
        ({"url": "https://x.example/", "format": "zip"}, "format"),
    ],
)
async def test_bad_webhooks_are_refused_naming_the_field(
    client: httpx.AsyncClient, api_services: ApiServices, body: dict[str, Any], field: str
) -> None:
    _, key = await make_tenant_key(api_services, "acme")
    answer = await client.post("/v1/webhooks", json=body, headers=bearer(key))
    assert answer.status_code == 422
    assert error_of(answer)["field"] == field


async def test_private_addresses_are_refused_unless_the_operator_allows_them(
    api_client: httpx.AsyncClient, api_services: ApiServices
) -> None:
    _, key = await make_tenant_key(api_services, "acme")
    for url in ["https://127.0.0.1/", "https://169.254.169.254/", "http://hooks.example/"]:
        answer = await api_client.post("/v1/webhooks", json={"url": url}, headers=bearer(key))
        assert answer.status_code == 422, url


async def test_another_tenants_webhook_is_not_found_on_every_route(
    client: httpx.AsyncClient, api_services: ApiServices, receiver: WebhookReceiver
) -> None:
    _, acme = await make_tenant_key(api_services, "acme")
    _, beta = await make_tenant_key(api_services, "beta")
    made = await client.post(
        "/v1/webhooks", json={"url": receiver.url("/ok")}, headers=bearer(acme)
    )
    webhook_id = made.json()["id"]
    missing = await client.get("/v1/webhooks/wh_0000000000000000", headers=bearer(beta))
    assert missing.status_code == 404
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("DELETE", "", None),
        ("POST", "/test", None),
        ("GET", "/deliveries", None),
    ]:
        answer = await client.request(
            method, f"/v1/webhooks/{webhook_id}{path}", json=body, headers=bearer(beta)
        )
        assert answer.status_code == 404, (method, path)
        assert error_of(answer)["code"] == "not_found"
        assert error_of(answer)["message"] == str(error_of(missing)["message"]).replace(
            "wh_0000000000000000", webhook_id
        )
    assert (await client.get("/v1/webhooks", headers=bearer(beta))).json() == {"webhooks": []}
    assert receiver.requests == []
    assert (await client.get(f"/v1/webhooks/{webhook_id}", headers=bearer(acme))).json()["enabled"]


async def test_reading_needs_read_and_changing_needs_manage(
    client: httpx.AsyncClient, api_services: ApiServices
) -> None:
    _, reader = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    assert (await client.get("/v1/webhooks", headers=bearer(reader))).status_code == 200
    answer = await client.post(
        "/v1/webhooks", json={"url": "https://x.example/"}, headers=bearer(reader)
    )
    assert answer.status_code == 403
    _, sender = await make_tenant_key(api_services, "acme", {ApiScope.SEND})
    assert (await client.get("/v1/records", headers=bearer(sender))).status_code == 403


async def test_records_are_listed_filtered_and_paged_for_their_tenant_only(
    client: httpx.AsyncClient, api_services: ApiServices, api_clock: FakeClock
) -> None:
    acme, key = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    beta, beta_key = await make_tenant_key(api_services, "beta", {ApiScope.READ})
    t = api_clock.now()
    await api_services.store.add_records(
        [
            Record(RecordType.DELIVERY, t, acme.id, id="m1", recipient="a@x.example"),
            Record(RecordType.BOUNCE, t + 10, acme.id, id="m2", recipient="b@x.example"),
            Record(RecordType.OPEN, t + 20, acme.id, id="m1", recipient="a@x.example"),
            Record(RecordType.DELIVERY, t + 30, beta.id, id="m9", recipient="a@x.example"),
        ]
    )

    async def ids(params: dict[str, Any], token: str = key) -> list[str]:
        answer = await client.get("/v1/records", params=params, headers=bearer(token))
        assert answer.status_code == 200, answer.text
        return [f"{r['type']}:{r['id']}" for r in answer.json()["records"]]

    assert await ids({}) == ["Delivery:m1", "Bounce:m2", "Open:m1"]
    assert await ids({}, beta_key) == ["Delivery:m9"]
    assert await ids({"type": "Delivery,Bounce"}) == ["Delivery:m1", "Bounce:m2"]
    assert await ids({"type": ["Open", "Bounce"]}) == ["Bounce:m2", "Open:m1"]
    assert await ids({"recipient": "A@X.example"}) == ["Delivery:m1", "Open:m1"]
    assert await ids({"message_id": "m9"}) == []
    assert await ids({"since": str(t + 10), "until": str(t + 20)}) == ["Bounce:m2"]
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + 10))
    assert await ids({"since": rfc}) == ["Bounce:m2", "Open:m1"]

    first = (await client.get("/v1/records", params={"limit": 2}, headers=bearer(key))).json()
    assert [r["id"] for r in first["records"]] == ["m1", "m2"]
    rest = await client.get(
        "/v1/records", params={"cursor": first["next_cursor"]}, headers=bearer(key)
    )
    assert [r["id"] for r in rest.json()["records"]] == ["m1"]
    again = await client.get(
        "/v1/records", params={"cursor": rest.json()["next_cursor"]}, headers=bearer(key)
    )
    assert again.json()["records"] == []

    for params, field in [
        ({"cursor": "bogus!"}, "cursor"),
        ({"cursor": encode_cursor(2**64)}, "cursor"),
        ({"type": "Nope"}, "type"),
        ({"since": "yesterday"}, "since"),
        ({"until": "nan"}, "until"),
        ({"since": "2026-12-01T00:00:00"}, "since"),
        ({"limit": "1001"}, "limit"),
    ]:
        answer = await client.get("/v1/records", params=params, headers=bearer(key))
        assert answer.status_code == 422, params
        assert error_of(answer)["field"] == field
