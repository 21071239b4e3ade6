"""The admin API's authentication on a real store (SQLite and PostgreSQL): API keys
(shown once, stored hashed, scoped, revocable), the operator token, rates, what is
public, and the error body."""

from __future__ import annotations

import dataclasses
import hashlib

import httpx
import pytest

from admin_api.app import create_app
from admin_api.services import ApiServices
from config.schema import RedisSettings
from engine.clock import FakeClock
from engine.limits import open_limiter
from engine.limits.throttle import ThrottleSpec
from engine.model import ApiScope
from engine.provisioning import Provisioning
from engine.provisioning.api_keys import CACHE_SECONDS, parse_token
from engine.store import Store, StoreError
from tests.integration.api_support import (
    NODE,
    OPERATOR_TOKEN,
    as_operator,
    bearer,
    client_of,
    error_of,
    make_tenant_key,
)

KEYS = "/v1/api-keys"


async def test_a_key_is_shown_once_and_stored_hashed(
    api_services: ApiServices, api_client: httpx.AsyncClient, store: Store
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    made = await api_client.post(
        KEYS, json={"scopes": ["send", "read"], "name": "app"}, headers=bearer(token)
    )
    assert made.status_code == 201, made.text
    body = made.json()
    parsed = parse_token(body["token"])
    assert parsed is not None and parsed.prefix == body["prefix"]
    assert body["scopes"] == ["read", "send"] and body["name"] == "app"
    assert body["revoked_at"] is None

    listed = await api_client.get(KEYS, headers=bearer(token))
    assert listed.status_code == 200
    assert all("token" not in key for key in listed.json()["api_keys"])
    assert body["prefix"] in [key["prefix"] for key in listed.json()["api_keys"]]

    stored = await store.get_api_key(body["prefix"])
    assert stored is not None
    assert stored.secret_hash == hashlib.sha256(parsed.secret.encode()).digest()
    assert parsed.secret not in repr(stored) and body["token"] not in repr(stored)


async def test_a_key_works_for_its_tenant_and_scopes_only(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, reader = await make_tenant_key(api_services, "acme", {ApiScope.READ, ApiScope.SEND})
    refused = await api_client.get(KEYS, headers=bearer(reader))
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "forbidden"
    assert "manage" in str(error_of(refused)["message"])


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        bearer(""),
        bearer("pm_notakey"),
        bearer("pm_aaaaaaaa_" + "b" * 52),
        bearer("not-the-operator-token"),
    ],
    ids=["none", "basic", "empty", "malformed", "unknown", "wrong-operator"],
)
async def test_no_or_a_bad_credential_is_401(
    api_services: ApiServices, api_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    await make_tenant_key(api_services, "acme")
    refused = await api_client.get(KEYS, headers=headers)
    assert refused.status_code == 401
    assert error_of(refused)["code"] == "unauthorized"
    assert refused.headers["WWW-Authenticate"] == "Bearer"


async def test_a_wrong_secret_for_a_real_prefix_is_401(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert (await api_client.get(KEYS, headers=bearer(forged))).status_code == 401
    assert (await api_client.get(KEYS, headers=bearer(token))).status_code == 200


async def test_a_revoked_key_is_refused(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, admin = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    _, doomed = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    prefix = doomed.split("_")[1]
    assert (await api_client.get(KEYS, headers=bearer(doomed))).status_code == 200

    gone = await api_client.delete(f"{KEYS}/{prefix}", headers=bearer(admin))
    assert gone.status_code == 204
    assert (await api_client.get(KEYS, headers=bearer(doomed))).status_code == 401
    [listed] = [
        key
        for key in (await api_client.get(KEYS, headers=bearer(admin))).json()["api_keys"]
        if key["prefix"] == prefix
    ]
    assert listed["revoked_at"] == api_services.clock.now()


async def test_a_key_revoked_by_another_process_stops_within_the_cache_time(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    assert (await api_client.get(KEYS, headers=bearer(token))).status_code == 200
    elsewhere = Provisioning(
        api_services.store, api_services.settings, nodeid=NODE, clock=api_clock
    )
    await elsewhere.revoke_api_key(token.split("_")[1])

    api_clock.advance(CACHE_SECONDS / 2)
    assert (await api_client.get(KEYS, headers=bearer(token))).status_code == 200
    api_clock.advance(CACHE_SECONDS / 2)
    assert (await api_client.get(KEYS, headers=bearer(token))).status_code == 401


async def test_another_tenants_key_is_answered_as_absent(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, acme = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    _, beta = await make_tenant_key(api_services, "beta", {ApiScope.MANAGE})
    beta_prefix = beta.split("_")[1]

    theirs = await api_client.delete(f"{KEYS}/{beta_prefix}", headers=bearer(acme))
    absent = await api_client.delete(f"{KEYS}/zzzzzzzz", headers=bearer(acme))
    assert theirs.status_code == absent.status_code == 404
    assert error_of(theirs)["code"] == "not_found"
    assert theirs.json() == absent.json() | {
        "error": absent.json()["error"] | {"message": f"no API key {beta_prefix!r}"}
    }
    assert (await api_client.get(KEYS, headers=bearer(beta))).status_code == 200

    listed = (await api_client.get(KEYS, headers=bearer(acme))).json()["api_keys"]
    assert [key["prefix"] for key in listed] == [acme.split("_")[1]]


async def test_the_operator_acts_for_the_tenant_it_names(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.SEND})
    await api_services.provisioning.create_tenant("beta")

    listed = await api_client.get(KEYS, headers=as_operator("acme"))
    assert listed.status_code == 200
    assert [key["prefix"] for key in listed.json()["api_keys"]] == [token.split("_")[1]]
    assert (await api_client.get(KEYS, headers=as_operator("beta"))).json() == {"api_keys": []}

    made = await api_client.post(KEYS, json={"scopes": ["read"]}, headers=as_operator("beta"))
    assert made.status_code == 201
    assert (await api_services.provisioning.list_api_keys("beta"))[0].prefix == made.json()[
        "prefix"
    ]

    unknown = await api_client.get(KEYS, headers=as_operator("nobody"))
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    unnamed = await api_client.get(KEYS, headers=bearer(OPERATOR_TOKEN))
    assert unnamed.status_code == 422
    assert error_of(unnamed)["field"] == "Penguin-Tenant"


async def test_without_an_operator_token_configured_none_is_accepted(
    api_services: ApiServices,
) -> None:
    await api_services.provisioning.create_tenant("acme")
    app = create_app(dataclasses.replace(api_services, operator_token=None))
    async with client_of(app) as client:
        refused = await client.get(KEYS, headers=as_operator("acme"))
    assert refused.status_code == 401


async def test_a_key_over_its_rate_gets_429_with_retry_after(
    api_services: ApiServices, api_clock: FakeClock
) -> None:
    tight = dataclasses.replace(api_services, key_rate=ThrottleSpec.parse("2/min"))
    _, token = await make_tenant_key(tight, "acme", {ApiScope.MANAGE})
    _, other = await make_tenant_key(tight, "acme", {ApiScope.MANAGE})
    async with client_of(create_app(tight)) as client:
        for _ in range(2):
            assert (await client.get(KEYS, headers=bearer(token))).status_code == 200
        over = await client.get(KEYS, headers=bearer(token))
        assert over.status_code == 429
        assert error_of(over)["code"] == "rate_limited"
        assert over.headers["Retry-After"] == "30"
        assert (await client.get(KEYS, headers=bearer(other))).status_code == 200
        for _ in range(3):
            assert (await client.get(KEYS, headers=as_operator("acme"))).status_code == 200

        api_clock.advance(29)
        assert (await client.get(KEYS, headers=bearer(token))).headers["Retry-After"] == "1"
        api_clock.advance(1)
        assert (await client.get(KEYS, headers=bearer(token))).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/openapi.json", "/docs", "/redoc"])
async def test_public_paths_need_no_credential(api_services: ApiServices, path: str) -> None:
    async with client_of(create_app(api_services), ("10.0.0.1", 1234)) as client:
        response = await client.get(path)
    assert response.status_code == 200


async def test_metrics_need_the_operator_token_off_loopback(api_services: ApiServices) -> None:
    app = create_app(api_services)
    async with client_of(app) as local:
        assert (await local.get("/metrics")).status_code == 200
    async with client_of(app, ("10.0.0.1", 1234)) as remote:
        refused = await remote.get("/metrics")
        assert refused.status_code == 401 and error_of(refused)["code"] == "unauthorized"
        _, key = await make_tenant_key(api_services, "acme")
        assert (await remote.get("/metrics", headers=bearer(key))).status_code == 401
        served = await remote.get("/metrics", headers=bearer(OPERATOR_TOKEN))
        assert served.status_code == 200


async def test_tenant_paths_need_a_credential_from_anywhere(api_services: ApiServices) -> None:
    async with client_of(create_app(api_services)) as local:
        assert (await local.get(KEYS)).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"scopes": ["send", "fly"]}, "scopes[1]"),
        ({"name": "no scopes"}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["send"], "name": "x" * 201}, "name"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field(
    api_services: ApiServices, api_client: httpx.AsyncClient, body: object, field: str
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    refused = await api_client.post(KEYS, json=body, headers=bearer(token))
    assert refused.status_code == 422
    error = error_of(refused)
    assert error["code"] == "invalid" and error["field"] == field


async def test_a_body_that_is_not_json_is_422(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.MANAGE})
    refused = await api_client.post(
        KEYS, content=b"{not json", headers=bearer(token) | {"Content-Type": "application/json"}
    )
    assert refused.status_code == 422 and error_of(refused)["code"] == "invalid"


async def test_an_unknown_path_answers_the_error_body(api_client: httpx.AsyncClient) -> None:
    missing = await api_client.get("/v1/nothing-here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"


async def test_the_openapi_document_names_the_bearer_scheme(
    api_client: httpx.AsyncClient,
) -> None:
    document = (await api_client.get("/openapi.json")).json()
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    operation = document["paths"]["/v1/api-keys"]["post"]
    assert {"401", "403", "422", "429"} <= set(operation["responses"])
    assert "Penguin-Tenant" in [p["name"] for p in operation["parameters"]]


async def test_with_redis_a_keys_rate_is_shared_by_every_process(
    api_services: ApiServices, api_clock: FakeClock, redis_settings: RedisSettings
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.READ, ApiScope.MANAGE})
    limiters = [open_limiter(redis_settings, api_clock) for _ in range(2)]
    processes = [
        create_app(
            dataclasses.replace(api_services, limiter=limiter, key_rate=ThrottleSpec.parse("3/min"))
        )
        for limiter in limiters
    ]
    try:
        statuses = []
        for turn in range(4):
            async with client_of(processes[turn % 2]) as client:
                statuses.append((await client.get(KEYS, headers=bearer(token))).status_code)
        assert statuses == [200, 200, 200, 429]
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_a_store_failure_is_503_and_a_bug_500_with_the_error_body(
    api_services: ApiServices,
) -> None:
    app = create_app(api_services)

    async def store_down() -> None:
        raise StoreError("postgresql: connection refused")

    async def bug() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/store-down", store_down)
    app.add_api_route("/bug", bug)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://admin.test") as client:
        down = await client.get("/store-down")
        failed = await client.get("/bug")
    assert down.status_code == 503 and error_of(down)["code"] == "unavailable"
    assert "refused" not in down.text
    assert failed.status_code == 500 and error_of(failed)["code"] == "internal"
    assert "a bug" not in failed.text
