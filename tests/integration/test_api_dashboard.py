"""The dashboard's page and files, and the tenant's queue summary it shows
(``/v1/queue``), through the real app on a real store (SQLite and PostgreSQL).

The page itself is driven in a real browser by ``tests/browser``."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import httpx

from admin_api.dashboard_page import ASSETS
from admin_api.pages import CONTENT_SECURITY_POLICY, MEDIA_TYPES
from admin_api.services import ApiServices
from engine.cli import main
from engine.model import ApiScope
from tests.integration.api_support import as_operator, bearer, error_of, make_tenant_key
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
