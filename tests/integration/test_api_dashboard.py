"""The dashboard's page and files, and the tenant's queue summary (``/v1/queue``) and
sources (``/v1/sources``) it shows, through the real app on a real store (SQLite and
PostgreSQL).

The page itself is driven in a real browser by ``tests/browser``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
from pathlib import Path

import httpx

from admin_api.app import create_app
from admin_api.dashboard_page import ASSETS
from admin_api.pages import CONTENT_SECURITY_POLICY, MEDIA_TYPES
from admin_api.services import ApiServices
from config.loader import load_settings
from engine.campaigns import CampaignSpec
from engine.cli import main
from engine.model import ApiScope, CampaignTemplate
from engine.provisioning import Provisioning
from tests.integration.api_support import (
    NODE,
    OPERATOR_TOKEN,
    as_operator,
    bearer,
    client_of,
    error_of,
    make_tenant_key,
)
from tests.integration.test_api_operators import cli_json
from tests.integration.test_store_contract import message, submission


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
    api_client: httpx.AsyncClient,
) -> None:
    page = await api_client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert '<script type="module" src="/dashboard/main.js">' in page.text
    assert "cdn" not in page.text.lower() and "http" not in page.text.replace("http-equiv", "")
    for name in sorted(ASSETS - {"index.html"}):
        served = await api_client.get(f"/dashboard/{name}")
        assert served.status_code == 200, name
        assert served.headers["content-type"] == MEDIA_TYPES[Path(name).suffix]
        assert served.headers["content-security-policy"] == page.headers["content-security-policy"]
        assert "://" not in served.text.replace("http://www.w3.org/2000/svg", ""), name
    missing = await api_client.get("/dashboard/secrets.toml")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    assert (await api_client.get("/dashboard/index.html")).status_code == 404


async def accepted(services: ApiServices, tenant_id: int, name: str, count: int) -> None:
    queue = f"default:{name}@example.com"
    mail = [message(name, n, tenant_id, queue=queue) for n in range(count)]
    await services.store.accept([submission(name, tenant_id, mail)], [])


async def test_a_tenant_sees_its_own_queue_only(
    api_client: httpx.AsyncClient, api_services: ApiServices
) -> None:
    acme, acme_key = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    globex, globex_key = await make_tenant_key(api_services, "globex", {ApiScope.READ})
    await accepted(api_services, acme.id, "acme", 3)
    await accepted(api_services, globex.id, "globex", 2)

    mine = await api_client.get("/v1/queue", headers=bearer(acme_key))
    assert mine.status_code == 200, mine.text
    assert [(r["queue"], r["state"], r["count"]) for r in mine.json()["queues"]] == [
        ("default:acme@example.com", "queued", 3)
    ]
    theirs = await api_client.get("/v1/queue", headers=bearer(globex_key))
    assert [r["queue"] for r in theirs.json()["queues"]] == ["default:globex@example.com"]
    operator = await api_client.get("/v1/queue", headers=as_operator("acme"))
    assert operator.json() == mine.json()


async def test_the_queue_needs_a_key_with_read(
    api_client: httpx.AsyncClient, api_services: ApiServices
) -> None:
    _, sender = await make_tenant_key(api_services, "acme", {ApiScope.SEND})
    assert (await api_client.get("/v1/queue")).status_code == 401
    refused = await api_client.get("/v1/queue", headers=bearer(sender))
    assert refused.status_code == 403
    assert error_of(refused)["code"] == "forbidden"


def config_on(store_url: str, tmp_path: Path) -> Path:
    """A config file for the CLI on the test's store."""
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "var"}"\nhostname = "mta.penguin.test"\n'
        f'[database]\nurl = "{store_url}"\n'
    )
    return config


async def test_the_api_and_the_cli_show_the_same_tenant_queue(
    api_client: httpx.AsyncClient, api_services: ApiServices, store_url: str, tmp_path: Path
) -> None:
    acme, key = await make_tenant_key(api_services, "acme", {ApiScope.READ})
    globex, _ = await make_tenant_key(api_services, "globex", {ApiScope.READ})
    await accepted(api_services, acme.id, "acme", 2)
    await accepted(api_services, globex.id, "globex", 1)
    config = config_on(store_url, tmp_path)
    printed = await asyncio.to_thread(cli_json, config, "queue", "summary", "--tenant", "acme")
    answered = await api_client.get("/v1/queue", headers=bearer(key))
    assert printed == answered.json()["queues"]
    assert [row["queue"] for row in printed] == ["default:acme@example.com"]


async def test_the_cli_refuses_an_unknown_tenant(
    api_services: ApiServices, store_url: str, tmp_path: Path
) -> None:
    config = config_on(store_url, tmp_path)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = await asyncio.to_thread(
            main, ["queue", "summary", "--tenant", "nobody", "--config", str(config)]
        )
    assert status != 0
    assert "no tenant 'nobody'" in err.getvalue()


async def test_the_openapi_document_has_the_queue_and_not_the_page(
    api_client: httpx.AsyncClient,
) -> None:
    document = (await api_client.get("/openapi.json")).json()
    queue = document["paths"]["/v1/queue"]["get"]
    assert queue["summary"] == "The tenant's messages by scheduled queue and state"
    assert not [path for path in document["paths"] if path.startswith("/dashboard")]


SOURCES = """
[sources.s1]
address = "127.0.0.1"
ehlo_hostname = "s1.penguin.test"
[sources.s2]
address = "127.0.0.2"
ehlo_hostname = "s2.penguin.test"
warmup = "standard"
[sources.s3]
address = "127.0.0.3"
ehlo_hostname = "s3.penguin.test"
[pools.default]
sources = ["s1"]
[pools.bulk]
sources = ["s2"]
[pools.spare]
sources = ["s3"]
"""


async def test_a_tenant_sees_the_warmup_of_the_sources_its_mail_goes_out_from(
    api_services: ApiServices, store_url: str, tmp_path: Path
) -> None:
    config = config_on(store_url, tmp_path)
    config.write_text(config.read_text() + SOURCES)
    settings = load_settings(config)
    provisioning = Provisioning(api_services.store, settings, nodeid=NODE, clock=api_services.clock)
    services = dataclasses.replace(api_services, settings=settings, provisioning=provisioning)
    _, acme_key = await make_tenant_key(services, "acme", {ApiScope.READ})
    globex, globex_key = await make_tenant_key(services, "globex", {ApiScope.READ})
    await provisioning.set_tenant_settings("acme", {"pool": "bulk"})
    template = CampaignTemplate("news@globex.example", "Hi", text="Hello")
    await services.campaigns.create(globex, CampaignSpec("spring", template, pool="spare"))

    async with client_of(create_app(services)) as client:

        async def sources(headers: dict[str, str], path: str = "/v1/sources") -> list[str]:
            response = await client.get(path, headers=headers)
            assert response.status_code == 200, response.text
            return sorted({row["source"] for row in response.json()["sources"]})

        assert await sources(bearer(acme_key)) == ["s2"]  # its pool, set in the store
        assert await sources(bearer(globex_key)) == ["s1", "s3"]  # default, and its campaign's
        assert await sources(as_operator("globex")) == ["s1", "s3"]
        assert await sources(bearer(OPERATOR_TOKEN), "/v1/ips") == ["default", "s1", "s2", "s3"]
        acme_rows = (await client.get("/v1/sources", headers=bearer(acme_key))).json()
        ips = (await client.get("/v1/ips", headers=bearer(OPERATOR_TOKEN))).json()
        assert acme_rows["sources"] == [r for r in ips["sources"] if r["source"] == "s2"]
        assert any(row["cap"] for row in acme_rows["sources"])  # s2 warms up
        assert (await client.get("/v1/sources")).status_code == 401
        globex_rows = (await client.get("/v1/sources", headers=bearer(globex_key))).json()
    printed = await asyncio.to_thread(cli_json, config, "ips", "--tenant", "globex")
    assert printed == globex_rows["sources"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = await asyncio.to_thread(
            main, ["ips", "--tenant", "nobody", "--config", str(config)]
        )
    assert status != 0
    assert "no tenant 'nobody'" in err.getvalue()
