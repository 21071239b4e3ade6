"""The operator's routes through the real app on a real store (SQLite and PostgreSQL):
tenants and their settings, suspensions, the queue, lanes and sources; who may call
them; and the same numbers as the CLI's."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin_api.app import create_app
from admin_api.services import ApiServices
from config.loader import load_settings
from engine.cli import main
from engine.clock import FakeClock
from engine.model import ApiScope
from engine.provisioning import Provisioning
from engine.store import Store
from tests.integration.api_support import (
    NODE,
    OPERATOR_TOKEN,
    bearer,
    client_of,
    error_of,
    make_tenant_key,
)
from tests.integration.test_store_contract import message, reception, shunt_all, submission

TABLES = """
[sources.s1]
address = "127.0.0.1"
ehlo_hostname = "s1.penguin.test"
[pools.default]
sources = ["s1"]
[pools.warm]
sources = ["s1"]
[tenants.acme]
daily_quota = 500
rate_quota = "10/s"
"""
OPERATOR = bearer(OPERATOR_TOKEN)


@dataclasses.dataclass
class Api:
    client: httpx.AsyncClient
    services: ApiServices
    config: Path

    async def get(self, path: str, **params: Any) -> Any:
        response = await self.client.get(path, params=params, headers=OPERATOR)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture
def api_clock() -> FakeClock:
    return FakeClock(time.time())  # the CLI reads the system clock: the same day


@pytest.fixture
async def api(api_services: ApiServices, store_url: str, tmp_path: Path) -> AsyncIterator[Api]:
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "var"}"\nhostname = "mta.penguin.test"\n'
        f'[database]\nurl = "{store_url}"\n{TABLES}'
    )
    settings = load_settings(config)
    provisioning = Provisioning(api_services.store, settings, nodeid=NODE, clock=api_services.clock)
    services = dataclasses.replace(api_services, settings=settings, provisioning=provisioning)
    async with client_of(create_app(services)) as client:
        yield Api(client, services, config)


def cli_json(config: Path, *args: str) -> Any:
    """``penguin ARGS --json`` on the same store, in this process; its output parsed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*args, "--config", str(config), "--json"])
    assert status == 0
    return json.loads(out.getvalue())


OPERATOR_ROUTES = [
    ("GET", "/v1/tenants"),
    ("POST", "/v1/tenants"),
    ("GET", "/v1/tenants/acme"),
    ("PATCH", "/v1/tenants/acme"),
    ("DELETE", "/v1/tenants/acme"),
    ("GET", "/v1/suspensions"),
    ("POST", "/v1/suspensions"),
    ("DELETE", "/v1/suspensions"),
    ("GET", "/v1/queues"),
    ("GET", "/v1/queues/default:acme@example.com/messages"),
    ("GET", "/v1/shunted"),
    ("POST", "/v1/shunted/requeue"),
    ("GET", "/v1/queue/messages/s1-0"),
    ("DELETE", "/v1/queue/messages/s1-0"),
    ("GET", "/v1/lanes"),
    ("GET", "/v1/ips"),
]


@pytest.mark.parametrize(("method", "path"), OPERATOR_ROUTES)
async def test_operator_routes_need_the_operator_token(api: Api, method: str, path: str) -> None:
    _, key = await make_tenant_key(api.services, "acme", frozenset(ApiScope))
    for headers, status in [
        ({}, 401),
        (bearer("pm_not_a_key"), 401),
        (bearer("not-the-operator-token"), 401),
        (bearer(key), 403),
    ]:
        response = await api.client.request(method, path, headers=headers, json={})
        assert response.status_code == status, (headers, response.text)
        assert error_of(response)["code"] == ("forbidden" if status == 403 else "unauthorized")
    assert await api.services.provisioning.tenant("acme")  # nothing was removed


async def test_tenants_are_created_with_settings_listed_changed_and_removed(api: Api) -> None:
    made = await api.client.post(
        "/v1/tenants", json={"name": "acme", "pool": "warm", "daily_quota": 1000}, headers=OPERATOR
    )
    assert made.status_code == 201, made.text
    tenant = made.json()
    assert tenant | {"id": 0, "created_at": 0} == {
        "id": 0,
        "name": "acme",
        "created_at": 0,
        "pool": "warm",
        "priority": "normal",
        "daily_quota": 1000,
        "rate_quota": "10/s",
        "overridden": ["pool", "daily_quota"],
        "accepted_today": 0,
    }
    again = await api.client.post("/v1/tenants", json={"name": "acme"}, headers=OPERATOR)
    assert again.status_code == 409
    refused = await api.client.post(
        "/v1/tenants", json={"name": "beta", "pool": "cold"}, headers=OPERATOR
    )
    assert refused.status_code == 422
    assert error_of(refused)["field"] == "pool"
    assert "unknown pool 'cold'" in str(error_of(refused)["message"])
    assert [t["name"] for t in (await api.get("/v1/tenants"))["tenants"]] == ["acme"]

    changed = await api.client.patch(
        "/v1/tenants/acme",
        json={"daily_quota": None, "rate_quota": "100/min,max_burst=5", "priority": "bulk"},
        headers=OPERATOR,
    )
    assert changed.status_code == 200, changed.text
    shown = await api.get("/v1/tenants/acme")
    assert shown == changed.json()
    assert (shown["pool"], shown["daily_quota"], shown["rate_quota"]) == (
        "warm",
        500,
        "100/min,max_burst=5",
    )
    assert shown["overridden"] == ["pool", "priority", "rate_quota"]
    for body, field in [
        ({"rate_quota": "fast"}, "rate_quota"),
        ({"daily_quota": -1}, "daily_quota"),
        ({"priority": "urgent"}, "priority"),
        ({"colour": "blue"}, "colour"),
    ]:
        bad = await api.client.patch("/v1/tenants/acme", json=body, headers=OPERATOR)
        assert bad.status_code == 422, body
        assert error_of(bad)["field"] == field
    missing = await api.client.get("/v1/tenants/nobody", headers=OPERATOR)
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"

    queued = [message("s1", n, tenant["id"]) for n in range(2)]
    await api.services.store.accept([submission("s1", tenant["id"], queued)], [])
    held = await api.client.delete("/v1/tenants/acme", headers=OPERATOR)
    assert held.status_code == 409 and error_of(held)["code"] == "tenant_has_mail"
    removed = await api.client.delete(
        "/v1/tenants/acme", params={"force": "true"}, headers=OPERATOR
    )
    assert removed.status_code == 200
    assert removed.json() == {"tenant": "acme", "removed_messages": [m.id for m in queued]}
    assert (await api.get("/v1/tenants"))["tenants"] == []


async def test_suspend_list_and_resume(api: Api) -> None:
    await api.services.provisioning.create_tenant("acme")
    lane = await api.client.post(
        "/v1/suspensions",
        json={"scope": "lane", "target": "s1|mx.example.net", "reason": "421s", "duration": "2h"},
        headers=OPERATOR,
    )
    assert lane.status_code == 201, lane.text
    now = api.services.clock.now()
    assert lane.json()["until"] == pytest.approx(now + 7200)
    tenant = await api.client.post(
        "/v1/suspensions",
        json={"scope": "tenant", "target": "acme", "reason": "review", "duration": "1d"},
        headers=OPERATOR,
    )
    assert tenant.status_code == 201
    listed = (await api.get("/v1/suspensions"))["suspensions"]
    assert [(s["scope"], s["target"]) for s in listed] == [
        ("lane", "s1|mx.example.net"),
        ("tenant", "acme"),
    ]
    for body, status, field in [
        ({"scope": "tenant", "target": "nobody", "reason": "x", "duration": "1h"}, 404, None),
        ({"scope": "source", "target": "s9", "reason": "x", "duration": "1h"}, 422, "target"),
        ({"scope": "source", "target": "s1", "reason": "x", "duration": "soon"}, 422, "duration"),
        ({"scope": "source", "target": "s1", "reason": " ", "duration": "1h"}, 422, "reason"),
        ({"scope": "planet", "target": "s1", "reason": "x", "duration": "1h"}, 422, "scope"),
    ]:
        bad = await api.client.post("/v1/suspensions", json=body, headers=OPERATOR)
        assert bad.status_code == status, (body, bad.text)
        assert error_of(bad)["field"] == field

    resume = {"scope": "tenant", "target": "acme"}
    resumed = await api.client.delete("/v1/suspensions", params=resume, headers=OPERATOR)
    assert resumed.json() == {"scope": "tenant", "target": "acme", "removed": 1}
    again = await api.client.delete("/v1/suspensions", params=resume, headers=OPERATOR)
    assert again.status_code == 404
    assert [s["scope"] for s in (await api.get("/v1/suspensions"))["suspensions"]] == ["lane"]


async def test_the_queue_is_inspected_and_shunted_mail_requeued(api: Api) -> None:
    tenant = await api.services.provisioning.create_tenant("acme")
    now = api.services.clock.now()
    queued = [message("s1", n, tenant.id, due_at=now + n, created_at=now) for n in range(3)]
    stuck = [message("s2", n, tenant.id, due_at=now - 10, created_at=now) for n in range(2)]
    store: Store = api.services.store
    await store.accept(
        [submission("s1", tenant.id, queued), submission("s2", tenant.id, stuck)], []
    )
    await shunt_all(store, stuck, [now - 5, now - 4])

    rows = (await api.get("/v1/queues"))["queues"]
    assert [(r["queue"], r["state"], r["count"]) for r in rows] == [
        ("default:acme@example.com", "queued", 3),
        ("default:acme@example.com", "shunted", 2),
    ]
    waiting = await api.get("/v1/queues/default:acme@example.com/messages", limit=2)
    assert [m["id"] for m in waiting["messages"]] == [queued[0].id, queued[1].id]
    shunted = (await api.get("/v1/shunted"))["messages"]
    assert [m["id"] for m in shunted] == [m.id for m in stuck]
    assert shunted[0]["last_error"] == f"boom {stuck[0].id}"
    too_many = await api.client.get("/v1/shunted", params={"limit": 0}, headers=OPERATOR)
    assert too_many.status_code == 422 and error_of(too_many)["field"] == "limit"

    one = await api.client.post("/v1/shunted/requeue", json={"id": stuck[0].id}, headers=OPERATOR)
    assert one.json() == {"requeued": [stuck[0].id]}
    not_shunted = await api.client.post(
        "/v1/shunted/requeue", json={"id": stuck[0].id}, headers=OPERATOR
    )
    assert not_shunted.status_code == 422
    unknown = await api.client.post("/v1/shunted/requeue", json={"id": "nope"}, headers=OPERATOR)
    assert unknown.status_code == 404
    rest = await api.client.post("/v1/shunted/requeue", json={}, headers=OPERATOR)
    assert rest.json() == {"requeued": [stuck[1].id]}
    assert (await api.get("/v1/shunted"))["messages"] == []


def as_api(shown: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``penguin queue show --json`` without the lease fields the API leaves out."""
    return [
        {k: v for k, v in m.items() if not k.startswith("lease_") and k != "domain"} for m in shown
    ]


async def test_a_queued_message_is_shown_and_deleted_as_the_cli_does(api: Api) -> None:
    tenant = await api.services.provisioning.create_tenant("acme", {})
    store = api.services.store
    now = time.time()
    first = [message("s1", n, tenant.id, due_at=now + 60, created_at=now) for n in range(3)]
    second = [message("s2", n, tenant.id, due_at=now + 60, created_at=now) for n in range(2)]
    await store.accept(
        [submission("s1", tenant.id, first), submission("s2", tenant.id, second)],
        [reception(m) for m in first + second],
    )

    def cli(*args: str) -> Any:
        return cli_json(api.config, "queue", *args)

    one = (await api.get("/v1/queue/messages/s1-1"))["messages"]
    assert one == as_api([await asyncio.to_thread(cli, "show", "s1-1")])
    assert [r["type"] for r in one[0]["records"]] == ["Reception"]
    whole = (await api.get("/v1/queue/messages/s1"))["messages"]
    assert whole == as_api(await asyncio.to_thread(cli, "show", "s1"))
    assert [m["id"] for m in whole] == [m.id for m in first]

    removed = await api.client.delete("/v1/queue/messages/s1-0", headers=OPERATOR)
    assert removed.json() == {"removed": ["s1-0"]}, removed.text
    rest = await api.client.delete("/v1/queue/messages/s1", headers=OPERATOR)
    assert rest.json() == {"removed": ["s1-1", "s1-2"]}
    assert await asyncio.to_thread(cli, "delete", "s2") == {"removed": ["s2-0", "s2-1"]}
    for gone in ("s1-0", "s2-1"):
        records = await store.list_records(gone)
        assert [r["type"] for r in records] == ["Reception", "AdminBounce"]
    assert (await api.get("/v1/queues"))["queues"] == []

    leased = message("s3", 0, tenant.id, due_at=now, created_at=now)
    await store.accept([submission("s3", tenant.id, [leased])], [])
    assert [m.id for m in await store.claim("w1", now, 60.0, 1)] == ["s3-0"]
    in_flight = await api.client.delete("/v1/queue/messages/s3", headers=OPERATOR)
    assert in_flight.status_code == 422 and error_of(in_flight)["code"] == "invalid"
    assert (await api.get("/v1/queue/messages/s3-0"))["messages"][0]["state"] == "leased"
    for method, removed_id in [("GET", "s1-0"), ("DELETE", "s1"), ("GET", "nope")]:
        path = f"/v1/queue/messages/{removed_id}"
        unknown = await api.client.request(method, path, headers=OPERATOR)
        assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"


async def test_lanes_and_sources_as_the_engines_report_them(api: Api) -> None:
    now = api.services.clock.now()
    lane = {
        "source": "s1",
        "site": "mx.example.net",
        "connections": 2,
        "connection_limit": 10,
        "in_flight": 3,
        "max_message_rate": "100/s",
        "backoff_level": 1,
        "queues": ["default:acme@example.com"],
    }
    await api.services.store.put_status("node/1", json.dumps({"lanes": [lane]}), now)
    [row] = (await api.get("/v1/lanes"))["lanes"]
    assert row | {"next_due": None} == {**lane, "queued": 0, "next_due": None}
    sources = (await api.get("/v1/ips"))["sources"]
    assert {s["source"] for s in sources} == {"default", "s1"}
    assert all(s["state"] == "no plan" and s["sent_today"] == 0 for s in sources)


async def test_the_api_and_the_cli_show_the_same_numbers(api: Api) -> None:
    tenant = await api.services.provisioning.create_tenant("acme", {"pool": "warm"})
    now = time.time()
    accepted = [message("s1", n, tenant.id, due_at=now + 60, created_at=now) for n in range(4)]
    await api.services.store.accept([submission("s1", tenant.id, accepted)], [])
    await api.services.operations.suspend("source", "s1", reason="blocked", duration="1h")

    def cli(*args: str) -> Any:
        return cli_json(api.config, *args)

    shown = await asyncio.to_thread(cli, "tenant", "show", "acme")
    assert shown == await api.get("/v1/tenants/acme")
    assert shown["accepted_today"] == 4
    assert (
        await asyncio.to_thread(cli, "queue", "summary") == (await api.get("/v1/queues"))["queues"]
    )
    assert (
        await asyncio.to_thread(cli, "suspensions")
        == (await api.get("/v1/suspensions"))["suspensions"]
    )
    assert await asyncio.to_thread(cli, "ips") == (await api.get("/v1/ips"))["sources"]


async def test_the_openapi_document_describes_every_operator_route(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    for method, path in OPERATOR_ROUTES:
        templated = (
            path.replace("/acme", "/{name}")
            .replace("/default:acme@example.com/", "/{queue}/")
            .replace("/messages/s1-0", "/messages/{id}")
        )
        operation = document["paths"][templated][method.lower()]
        assert {"401", "403"} <= set(operation["responses"]), (method, path)
        assert operation["security"] == [{"HTTPBearer": []}]
        assert operation["summary"]
    tenant = document["components"]["schemas"]["TenantOut"]
    assert all(field.get("description") for field in tenant["properties"].values())
