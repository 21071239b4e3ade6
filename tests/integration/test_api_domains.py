"""The tenant's domains over HTTP on a real store (SQLite and PostgreSQL): sending domains
with their DKIM keys, records and verification through a real DNS server, tracking
domains, SMTP users; scopes; another tenant's are answered as missing."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest

from admin_api.app import create_app
from admin_api.services import ApiServices
from engine.model import ApiScope
from engine.submission.passwords import verify_password
from smtp_out.dns_lookup import RecordLookup
from tests.harness.dns_server import DnsServer, Zones
from tests.integration.api_support import as_operator, bearer, client_of, error_of, make_tenant_key

READ_ONLY = {ApiScope.READ}


@pytest.fixture
async def zones() -> AsyncIterator[tuple[Zones, tuple[str, int]]]:
    zones = Zones()
    server = DnsServer(zones)
    await server.start()
    try:
        yield zones, server.address
    finally:
        await server.stop()


@pytest.fixture
async def client(
    api_services: ApiServices, zones: tuple[Zones, tuple[str, int]]
) -> AsyncIterator[httpx.AsyncClient]:
    """A client on the app whose verification asks the harness DNS server."""
    services = dataclasses.replace(api_services, dns=RecordLookup([zones[1]], 0.5))
    async with client_of(create_app(services)) as made:
        yield made


async def test_a_domain_is_added_listed_shown_rotated_and_removed(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    auth = bearer(token)

    added = await client.post(
        "/v1/domains",
        json={"name": "Acme.Test", "algorithm": "ed25519", "selector": "s1"},
        headers=auth,
    )
    assert added.status_code == 201, added.text
    body = added.json()
    assert (body["name"], body["selector"], body["algorithm"]) == ("acme.test", "s1", "ed25519")
    assert [(r["name"], r["type"]) for r in body["dns_records"]] == [
        ("s1._domainkey.acme.test", "TXT"),
        ("bounces.acme.test", "TXT"),
        ("bounces.acme.test", "MX"),
        ("_dmarc.acme.test", "TXT"),
    ]
    assert body["dns_records"][0]["value"].startswith("v=DKIM1; k=ed25519; p=")

    again = await client.post("/v1/domains", json={"name": "acme.test"}, headers=auth)
    assert again.status_code == 409
    assert error_of(again)["code"] == "conflict"

    listed = await client.get("/v1/domains", headers=auth)
    assert listed.json() == {
        "domains": [
            {
                "name": "acme.test",
                "selector": "s1",
                "algorithm": "ed25519",
                "created_at": body["created_at"],
            }
        ]
    }
    shown = await client.get("/v1/domains/ACME.test", headers=auth)
    assert shown.json() == body

    rotated = await client.post(
        "/v1/domains/acme.test/rotate", json={"selector": "s2", "bits": 1024}, headers=auth
    )
    assert rotated.status_code == 200, rotated.text
    assert (rotated.json()["selector"], rotated.json()["previous_selector"]) == ("s2", "s1")
    assert rotated.json()["algorithm"] == "rsa"
    assert rotated.json()["dns_records"][0]["name"] == "s2._domainkey.acme.test"
    same = await client.post("/v1/domains/acme.test/rotate", json={"selector": "s2"}, headers=auth)
    assert same.status_code == 422
    default = await client.post("/v1/domains/acme.test/rotate", headers=auth)
    assert default.status_code == 200, default.text
    assert default.json()["previous_selector"] == "s2"

    removed = await client.delete("/v1/domains/acme.test", headers=auth)
    assert removed.status_code == 204
    gone = await client.get("/v1/domains/acme.test", headers=auth)
    assert gone.status_code == 404
    assert error_of(gone) == {
        "code": "not_found",
        "message": "no sending domain 'acme.test'",
        "field": None,
    }


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": "acme.test", "algorithm": "dsa"}, "algorithm"),
        ({"name": "acme.test", "bits": 512}, "bits"),
        ({"name": "acme.test", "selector": ""}, "selector"),
        ({"name": "not a domain"}, "name"),
        ({"name": "a..test"}, "name"),
        ({"name": "acme.test", "selector": "bad selector"}, "selector"),
    ],
)
async def test_a_bad_domain_is_refused_naming_the_field(
    api_services: ApiServices,
    client: httpx.AsyncClient,
    payload: dict[str, object],
    field: str | None,
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    refused = await client.post("/v1/domains", json=payload, headers=bearer(token))
    assert refused.status_code == 422, refused.text
    assert error_of(refused)["field"] == field
    assert (await client.get("/v1/domains", headers=bearer(token))).json() == {"domains": []}


async def test_verify_reports_each_check_from_dns(
    api_services: ApiServices,
    client: httpx.AsyncClient,
    zones: tuple[Zones, tuple[str, int]],
) -> None:
    zone, _ = zones
    _, token = await make_tenant_key(api_services, "acme", READ_ONLY | {ApiScope.MANAGE})
    _, reader = await make_tenant_key(api_services, "acme", READ_ONLY)
    added = (
        await client.post("/v1/domains", json={"name": "acme.test"}, headers=bearer(token))
    ).json()
    tracking = await client.post(
        "/v1/tracking-domains", json={"name": "click.acme.test"}, headers=bearer(token)
    )
    assert tracking.status_code == 201
    for record in added["dns_records"]:
        if record["type"] == "TXT":
            zone.add_txt(record["name"], record["value"])
    zone.add_txt("acme.test", "v=spf1 -all")
    zone.add_cname("click.acme.test", "mta.penguin.test")

    report = await client.post("/v1/domains/acme.test/verify", headers=bearer(reader))

    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["domain"], body["verified"]) == ("acme.test", False)
    assert [(c["check"], c["status"]) for c in body["checks"]] == [
        ("spf", "pass"),
        ("dkim", "pass"),
        ("return_path_spf", "pass"),
        ("return_path_mx", "missing"),
        ("dmarc", "pass"),
        ("tracking_cname", "pass"),
    ]
    missing = body["checks"][3]
    assert (missing["expected"], missing["found"]) == ("10 mta.penguin.test.", [])

    zone.add_mx("bounces.acme.test", [(10, "mta.penguin.test")])
    again = await client.post("/v1/domains/acme.test/verify", headers=bearer(reader))
    assert again.json()["verified"] is True


async def test_verify_without_a_resolver_is_unavailable(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    await api_client.post("/v1/domains", json={"name": "acme.test"}, headers=bearer(token))
    refused = await api_client.post("/v1/domains/acme.test/verify", headers=bearer(token))
    assert refused.status_code == 503
    assert error_of(refused)["code"] == "unavailable"


async def test_tracking_domains_are_added_made_default_and_removed(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    auth = bearer(token)
    first = await client.post(
        "/v1/tracking-domains", json={"name": "Click.Acme.Test", "default": True}, headers=auth
    )
    assert first.status_code == 201, first.text
    assert first.json()["dns_records"] == [
        {
            "name": "click.acme.test",
            "type": "CNAME",
            "value": "mta.penguin.test.",
            "purpose": first.json()["dns_records"][0]["purpose"],
        }
    ]
    await client.post("/v1/tracking-domains", json={"name": "go.acme.test"}, headers=auth)
    taken = await client.post("/v1/tracking-domains", json={"name": "go.acme.test"}, headers=auth)
    assert taken.status_code == 409
    bad = await client.post("/v1/tracking-domains", json={"name": "localhost"}, headers=auth)
    assert (bad.status_code, error_of(bad)["field"]) == (422, "name")

    made = await client.post("/v1/tracking-domains/go.acme.test/default", headers=auth)
    assert made.status_code == 200, made.text
    assert (made.json()["name"], made.json()["default"]) == ("go.acme.test", True)
    listed = (await client.get("/v1/tracking-domains", headers=auth)).json()
    assert [(d["name"], d["default"]) for d in listed["tracking_domains"]] == [
        ("click.acme.test", False),
        ("go.acme.test", True),
    ]
    shown = await client.get("/v1/tracking-domains/go.acme.test", headers=auth)
    assert shown.json()["dns_records"][0]["name"] == "go.acme.test"

    assert (
        await client.delete("/v1/tracking-domains/go.acme.test", headers=auth)
    ).status_code == 204
    gone = await client.get("/v1/tracking-domains/go.acme.test", headers=auth)
    assert gone.status_code == 404


async def test_smtp_users_show_their_password_once(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    auth = bearer(token)
    made = await client.post("/v1/smtp-users", headers=auth)
    assert made.status_code == 201, made.text
    username, password = made.json()["username"], made.json()["password"]
    stored = await api_services.store.get_smtp_user(username)
    assert stored is not None and verify_password(password, stored.password_hash)

    listed = (await client.get("/v1/smtp-users", headers=auth)).json()
    assert listed == {
        "smtp_users": [{"username": username, "created_at": listed["smtp_users"][0]["created_at"]}]
    }
    assert password not in str(listed)
    assert (await client.delete(f"/v1/smtp-users/{username}", headers=auth)).status_code == 204
    again = await client.delete(f"/v1/smtp-users/{username}", headers=auth)
    assert again.status_code == 404
    assert (await client.get("/v1/smtp-users", headers=auth)).json() == {"smtp_users": []}


async def test_reading_needs_read_and_changing_needs_manage(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    _, reader = await make_tenant_key(api_services, "acme", READ_ONLY)
    _, sender = await make_tenant_key(api_services, "acme", {ApiScope.SEND})
    for method, path in (
        ("POST", "/v1/domains"),
        ("POST", "/v1/tracking-domains"),
        ("POST", "/v1/smtp-users"),
        ("DELETE", "/v1/domains/acme.test"),
        ("POST", "/v1/domains/acme.test/rotate"),
        ("POST", "/v1/tracking-domains/x.acme.test/default"),
    ):
        refused = await client.request(
            method, path, json={"name": "acme.test"}, headers=bearer(reader)
        )
        assert refused.status_code == 403, (method, path, refused.text)
    for path in ("/v1/domains", "/v1/tracking-domains", "/v1/smtp-users"):
        assert (await client.get(path, headers=bearer(reader))).status_code == 200
        assert (await client.get(path, headers=bearer(sender))).status_code == 403


async def test_the_operator_acts_for_the_tenant_it_names(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    await make_tenant_key(api_services, "acme")
    added = await client.post(
        "/v1/domains", json={"name": "acme.test"}, headers=as_operator("acme")
    )
    assert added.status_code == 201
    assert [d.name for d in await api_services.provisioning.list_domains("acme")] == ["acme.test"]


OTHER_TENANTS = [
    ("GET", "/v1/domains/{domain}", "no sending domain '{domain}'"),
    ("POST", "/v1/domains/{domain}/rotate", "no sending domain '{domain}'"),
    ("POST", "/v1/domains/{domain}/verify", "no sending domain '{domain}'"),
    ("DELETE", "/v1/domains/{domain}", "no sending domain '{domain}'"),
    ("GET", "/v1/tracking-domains/{tracking}", "no tracking domain '{tracking}'"),
    ("POST", "/v1/tracking-domains/{tracking}/default", "no tracking domain '{tracking}'"),
    ("DELETE", "/v1/tracking-domains/{tracking}", "no tracking domain '{tracking}'"),
    ("DELETE", "/v1/smtp-users/{user}", "no SMTP user '{user}'"),
]


@pytest.mark.parametrize(("method", "path", "message"), OTHER_TENANTS)
async def test_another_tenants_resource_is_answered_as_missing(
    api_services: ApiServices, client: httpx.AsyncClient, method: str, path: str, message: str
) -> None:
    _, acme = await make_tenant_key(api_services, "acme")
    _, beta = await make_tenant_key(api_services, "beta")
    added = await client.post("/v1/domains", json={"name": "acme.test"}, headers=bearer(acme))
    selector = added.json()["selector"]
    await client.post("/v1/tracking-domains", json={"name": "t.acme.test"}, headers=bearer(acme))
    user = (await client.post("/v1/smtp-users", headers=bearer(acme))).json()["username"]
    theirs = {"domain": "acme.test", "tracking": "t.acme.test", "user": user}
    missing = {"domain": "ghost.test", "tracking": "t.ghost.test", "user": "acme-ghost"}

    for names in (theirs, missing):
        answer = await client.request(method, path.format(**names), headers=bearer(beta))
        assert answer.status_code == 404, answer.text
        assert error_of(answer) == {
            "code": "not_found",
            "message": message.format(**names),
            "field": None,
        }

    p = api_services.provisioning
    assert [d.selector for d in await p.list_domains("acme")] == [selector]
    assert [(t.name, t.is_default) for t in await p.list_tracking_domains("acme")] == [
        ("t.acme.test", False)
    ]
    assert [u.username for u in await p.list_smtp_users("acme")] == [user]


async def test_lists_hold_none_of_another_tenants(
    api_services: ApiServices, client: httpx.AsyncClient
) -> None:
    _, acme = await make_tenant_key(api_services, "acme")
    _, beta = await make_tenant_key(api_services, "beta")
    await client.post("/v1/domains", json={"name": "acme.test"}, headers=bearer(acme))
    await client.post("/v1/tracking-domains", json={"name": "t.acme.test"}, headers=bearer(acme))
    await client.post("/v1/smtp-users", headers=bearer(acme))
    await client.post("/v1/domains", json={"name": "beta.test"}, headers=bearer(beta))

    domains = (await client.get("/v1/domains", headers=bearer(beta))).json()["domains"]
    assert [d["name"] for d in domains] == ["beta.test"]
    assert (await client.get("/v1/tracking-domains", headers=bearer(beta))).json() == {
        "tracking_domains": []
    }
    assert (await client.get("/v1/smtp-users", headers=bearer(beta))).json() == {"smtp_users": []}


async def test_the_openapi_document_describes_the_tenant_resources(
    api_client: httpx.AsyncClient,
) -> None:
    document = (await api_client.get("/openapi.json")).json()
    paths = document["paths"]
    for path, methods in {
        "/v1/domains": {"get", "post"},
        "/v1/domains/{name}": {"get", "delete"},
        "/v1/domains/{name}/rotate": {"post"},
        "/v1/domains/{name}/verify": {"post"},
        "/v1/tracking-domains": {"get", "post"},
        "/v1/tracking-domains/{name}": {"get", "delete"},
        "/v1/tracking-domains/{name}/default": {"post"},
        "/v1/smtp-users": {"get", "post"},
        "/v1/smtp-users/{username}": {"delete"},
        "/v1/suppressions": {"get", "post"},
        "/v1/suppressions/{address}": {"delete"},
        "/v1/suppressions/import": {"post"},
    }.items():
        assert set(paths[path]) == methods, path
    imported = paths["/v1/suppressions/import"]["post"]["requestBody"]["content"]
    assert set(imported) == {"text/csv", "multipart/form-data"}
    schemas = document["components"]["schemas"]
    for model in ("DomainWithRecords", "VerificationOut", "SuppressionPage", "SuppressionsIn"):
        assert all(p.get("description") for p in schemas[model]["properties"].values()), model
