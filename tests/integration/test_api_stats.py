"""``GET /v1/stats`` on real stores (SQLite and PostgreSQL) through the real app, and
``penguin stats`` printing the same rows."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path
from typing import Any

import httpx

from admin_api.services import ApiServices
from engine.cli import main
from engine.clock import FakeClock
from engine.model import ApiScope
from engine.rollup.service import StatsRollup
from engine.scheduler.shaping import Shaping
from tests.integration.api_support import as_operator, bearer, error_of, make_tenant_key
from tests.integration.stats_support import RECORDS, T0, TOTALS, send_traffic, until_counted


async def counted(services: ApiServices, *tenants: tuple[str, str]) -> dict[str, str]:
    """Keys of each (tenant, campaign), its traffic sent and counted."""
    keys = {}
    for name, campaign in tenants:
        tenant, keys[name] = await make_tenant_key(services, name, {ApiScope.READ})
        await send_traffic(services.store, tenant, campaign)
    rollup = StatsRollup(services.store, Shaping.load().provider_of, FakeClock(T0), "test")
    await until_counted(rollup, RECORDS * len(tenants))
    return keys


async def stats(client: httpx.AsyncClient, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get("/v1/stats", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_stats_are_grouped_and_filtered(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    keys = await counted(api_services, ("acme", "spring"))
    auth = bearer(keys["acme"])
    assert await stats(api_client, auth) == {"group_by": [], "rows": [TOTALS]}

    by = await stats(api_client, auth, group_by=["campaign,domain", "day"])
    assert by == {
        "group_by": ["campaign", "domain", "day"],
        "rows": [
            {"campaign": "spring", "domain": "acme.example", "day": "2027-01-15T00:00:00Z"} | TOTALS
        ],
    }
    hours = await stats(api_client, auth, group_by="hour", since="2027-01-15T09:00:00Z")
    assert [(r["hour"], r["bounced"], r["expired"]) for r in hours["rows"]] == [
        ("2027-01-15T09:00:00Z", 1, 1)
    ]
    before = await stats(api_client, auth, until=str(int(T0 + 3600)), provider="google")
    assert (before["rows"][0]["delivered"], before["rows"][0]["bounced"]) == (3, 1)
    none = await stats(api_client, auth, group_by="campaign", campaign="autumn")
    assert none == {"group_by": ["campaign"], "rows": []}


async def test_a_tenant_sees_none_of_another_tenants_numbers(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    keys = await counted(api_services, ("acme", "spring"), ("beta", "autumn"))
    beta = await stats(api_client, bearer(keys["beta"]), group_by="campaign,domain")
    assert beta["rows"] == [{"campaign": "autumn", "domain": "beta.example"} | TOTALS]
    spring = await stats(api_client, bearer(keys["beta"]), campaign="spring")
    assert spring["rows"][0]["sent"] == 0
    operator = await stats(api_client, as_operator("acme"), group_by="campaign")
    assert operator["rows"] == [{"campaign": "spring"} | TOTALS]


async def test_bad_queries_and_credentials_are_refused(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    keys = await counted(api_services, ("acme", "spring"))
    auth = bearer(keys["acme"])
    for params in ({"group_by": "week"}, {"group_by": "hour,day"}, {"group_by": "day,day"}):
        bad = await api_client.get("/v1/stats", params=params, headers=auth)
        assert bad.status_code == 422, params
        assert error_of(bad)["field"] == "group_by"
    bad_time = await api_client.get("/v1/stats", params={"since": "soon"}, headers=auth)
    assert (bad_time.status_code, error_of(bad_time)["field"]) == (422, "since")
    assert (await api_client.get("/v1/stats")).status_code == 401
    _, send_only = await make_tenant_key(api_services, "acme", {ApiScope.SEND})
    assert (await api_client.get("/v1/stats", headers=bearer(send_only))).status_code == 403


def cli_json(config: Path, *args: str) -> Any:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main([*args, "--config", str(config), "--json"])
    assert status == 0
    return json.loads(out.getvalue())


async def test_the_cli_prints_what_the_api_answers(
    api_services: ApiServices, api_client: httpx.AsyncClient, store_url: str, tmp_path: Path
) -> None:
    keys = await counted(api_services, ("acme", "spring"), ("beta", "autumn"))
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "cli"}"\nhostname = "mta.penguin.test"\n'
        f'[database]\nurl = "{store_url}"\n'
    )
    for by in ("", "campaign", "provider,hour", "day,domain"):
        api = await stats(api_client, bearer(keys["acme"]), group_by=by)
        cli = await asyncio.to_thread(cli_json, config, "stats", "acme", "--by", by)
        assert cli == api, by
    since = "2027-01-15T09:00:00Z"
    api = await stats(api_client, bearer(keys["acme"]), group_by="hour", since=since)
    cli = await asyncio.to_thread(cli_json, config, "stats", "acme", "--by=hour", "--since", since)
    assert cli == api
