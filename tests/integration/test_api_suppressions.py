"""The tenant's suppression list over HTTP on a real store (SQLite and PostgreSQL):
filters and cursor pages, adding one or many, removing, CSV import; another tenant's
list is never seen nor changed."""

from __future__ import annotations

import httpx
import pytest

from admin_api.routes import suppressions
from admin_api.services import ApiServices
from engine.clock import FakeClock
from engine.model import ApiScope, Suppression
from tests.integration.api_support import bearer, error_of, make_tenant_key

URL = "/v1/suppressions"
CSV = {"Content-Type": "text/csv"}


async def seed(services: ApiServices, clock: FakeClock, tenant: str) -> None:
    """Suppressions of ``tenant`` with reasons and times apart."""
    owner = await services.provisioning.tenant(tenant)
    rows = [
        ("ann@a.test", "bounce: 5.1.1 InvalidRecipient"),
        ("bob@a.test", "complaint: abuse"),
        ("ann@b.test", "unsubscribe"),
        ("anna@c.test", "bounce: 5.7.1 SpamBlock"),
        ("zed@a.test", "manual"),
    ]
    for n, (address, reason) in enumerate(rows):
        at = clock.now() + 10 * n
        await services.store.add_suppression(Suppression(owner.id, address, reason, at))


async def addresses(client: httpx.AsyncClient, token: str, **params: str | float) -> list[str]:
    listed = await client.get(URL, params=params, headers=bearer(token))
    assert listed.status_code == 200, listed.text
    return [s["address"] for s in listed.json()["suppressions"]]


async def test_the_list_is_filtered_and_paged_by_cursor(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    await seed(api_services, api_clock, "acme")
    t0 = api_clock.now()

    assert await addresses(api_client, token, reason="bounce") == ["ann@a.test", "anna@c.test"]
    assert await addresses(api_client, token, domain="A.test") == [
        "ann@a.test",
        "bob@a.test",
        "zed@a.test",
    ]
    assert await addresses(api_client, token, address_prefix="ann") == [
        "ann@a.test",
        "ann@b.test",
        "anna@c.test",
    ]
    assert await addresses(api_client, token, since=t0 + 10, until=t0 + 30) == [
        "ann@b.test",
        "bob@a.test",
    ]

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await api_client.get(URL, params=params, headers=bearer(token))).json()
        seen += [s["address"] for s in page["suppressions"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == ["ann@a.test", "ann@b.test", "anna@c.test", "bob@a.test", "zed@a.test"]
    first = (await api_client.get(URL, params={"limit": 5}, headers=bearer(token))).json()
    assert first["next_cursor"] is None
    assert first["suppressions"][0] == {
        "address": "ann@a.test",
        "reason": "bounce: 5.1.1 InvalidRecipient",
        "created_at": t0,
    }


@pytest.mark.parametrize(
    ("params", "field"),
    [({"limit": 0}, "limit"), ({"limit": 1001}, "limit"), ({"cursor": "%%%"}, "cursor")],
)
async def test_bad_list_parameters_are_named(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    params: dict[str, str | int],
    field: str,
) -> None:
    _, token = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    refused = await api_client.get(URL, params=params, headers=bearer(token))
    assert refused.status_code == 422
    assert error_of(refused)["field"] == field


async def test_one_or_many_are_added_and_one_removed(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    auth = bearer(token)
    one = await api_client.post(URL, json={"address": "Ann@A.test"}, headers=auth)
    assert one.status_code == 201, one.text
    assert one.json() == {"added": 1, "duplicate": 0}
    many = await api_client.post(
        URL,
        json={
            "suppressions": [
                {"address": "ann@a.test", "reason": "x"},
                {"address": "bob@a.test", "reason": "y"},
            ]
        },
        headers=auth,
    )
    assert many.json() == {"added": 1, "duplicate": 1}
    listed = (await api_client.get(URL, headers=auth)).json()["suppressions"]
    assert [(s["address"], s["reason"]) for s in listed] == [
        ("ann@a.test", "manual"),
        ("bob@a.test", "y"),
    ]

    bad = await api_client.post(
        URL,
        json={"suppressions": [{"address": "carl@a.test"}, {"address": "not an address"}]},
        headers=auth,
    )
    assert bad.status_code == 422
    assert error_of(bad)["field"] == "suppressions[1].address"
    for shapeless in ({}, {"address": "carl@a.test", "suppressions": []}):
        refused = await api_client.post(URL, json=shapeless, headers=auth)
        assert refused.status_code == 422
        assert "either address or suppressions" in str(error_of(refused)["message"])
    one_bad = await api_client.post(URL, json={"address": "@a.test"}, headers=auth)
    assert error_of(one_bad)["field"] == "address"
    assert await addresses(api_client, token) == ["ann@a.test", "bob@a.test"]

    assert (await api_client.delete(f"{URL}/BOB@a.test", headers=auth)).status_code == 204
    again = await api_client.delete(f"{URL}/bob@a.test", headers=auth)
    assert again.status_code == 404
    assert error_of(again)["code"] == "not_found"
    assert await addresses(api_client, token) == ["ann@a.test"]


async def test_a_csv_is_imported_with_counts_and_refused_lines(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    await api_client.post(URL, json={"address": "old@a.test"}, headers=bearer(token))
    rows = "".join(f"user{n}@bulk.test,bounce\r\n" for n in range(2500))
    body = "\ufeffAddress,Reason\r\nold@a.test,x\r\nnope,x\r\n" + rows + "user7@bulk.test,\r\n"

    done = await api_client.post(
        f"{URL}/import", content=body.encode(), headers={**bearer(token), **CSV}
    )

    assert done.status_code == 200, done.text
    assert done.json() == {
        "added": 2500,
        "duplicate": 2,
        "invalid": 1,
        "invalid_rows": [
            {
                "line": 3,
                "text": "nope,x",
                "error": "recipient domain must be a fully qualified domain name",
            }
        ],
    }
    owner = await api_services.provisioning.tenant("acme")
    assert await api_services.store.suppressed(owner.id, ["user2499@bulk.test"]) == {
        "user2499@bulk.test"
    }


async def test_a_csv_is_imported_from_a_form(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    rows = "address,reason\n" + "".join(f"u{n}@form.test,bounce\n" for n in range(300))
    done = await api_client.post(
        f"{URL}/import",
        params={"reason": "list"},
        data={"note": "ignored"},
        files={"file": ("list.csv", rows.encode(), "text/csv")},
        headers=bearer(token),
    )
    assert done.status_code == 200, done.text
    assert (done.json()["added"], done.json()["invalid"]) == (300, 0)
    without = await api_client.post(
        f"{URL}/import",
        files={"other": ("list.csv", b"address\nx@form.test\n", "text/csv")},
        headers=bearer(token),
    )
    assert without.status_code == 422
    assert error_of(without)["field"] == "file"
    assert len(await addresses(api_client, token, limit=1000)) == 300


async def test_an_import_without_a_usable_csv_is_refused(
    api_services: ApiServices, api_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, token = await make_tenant_key(api_services, "acme")
    auth = bearer(token)
    no_header = await api_client.post(
        f"{URL}/import", content=b"email_address\nann@a.test\n", headers={**auth, **CSV}
    )
    assert no_header.status_code == 422
    assert "no 'address' column" in str(error_of(no_header)["message"])
    json_body = await api_client.post(f"{URL}/import", json={"address": "a@a.test"}, headers=auth)
    assert json_body.status_code == 415
    assert "multipart/form-data" in str(error_of(json_body)["message"])
    broken = await api_client.post(
        f"{URL}/import",
        content=b"--b\r\nnot a part",
        headers={**auth, "Content-Type": "multipart/form-data"},
    )
    assert (broken.status_code, error_of(broken)["field"]) == (422, "file")
    monkeypatch.setattr(suppressions, "IMPORT_MAX_BYTES", 100)
    large = await api_client.post(
        f"{URL}/import", content=b"address\n" + b"ann@a.test\n" * 20, headers={**auth, **CSV}
    )
    assert large.status_code == 413
    large_form = await api_client.post(
        f"{URL}/import",
        files={"file": ("a.csv", b"address\n" + b"ann@a.test\n" * 20)},
        headers=auth,
    )
    assert large_form.status_code == 413
    assert await addresses(api_client, token) == []


async def test_another_tenants_list_is_never_seen_nor_changed(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    _, acme = await make_tenant_key(api_services, "acme")
    _, beta = await make_tenant_key(api_services, "beta")
    await seed(api_services, api_clock, "acme")

    assert await addresses(api_client, beta) == []
    assert await addresses(api_client, beta, reason="bounce") == []
    removed = await api_client.delete(f"{URL}/ann@a.test", headers=bearer(beta))
    missing = await api_client.delete(f"{URL}/ghost@a.test", headers=bearer(beta))
    assert (removed.status_code, missing.status_code) == (404, 404)
    assert error_of(removed) == {
        "code": "not_found",
        "message": "'ann@a.test' is not suppressed for tenant 'beta'",
        "field": None,
    }
    added = await api_client.post(URL, json={"address": "ann@a.test"}, headers=bearer(beta))
    assert added.json() == {"added": 1, "duplicate": 0}
    imported = await api_client.post(
        f"{URL}/import", content=b"address\nbob@a.test\n", headers={**bearer(beta), **CSV}
    )
    assert imported.json()["added"] == 1
    assert len(await addresses(api_client, acme)) == 5
    acme_ann = await api_client.get(URL, params={"address_prefix": "ann@a"}, headers=bearer(acme))
    assert acme_ann.json()["suppressions"][0]["reason"] == "bounce: 5.1.1 InvalidRecipient"
    assert await addresses(api_client, beta) == ["ann@a.test", "bob@a.test"]
