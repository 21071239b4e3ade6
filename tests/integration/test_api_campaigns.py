"""Campaigns through the real app on a real store (SQLite and PostgreSQL): creation
and its 422s, recipients (CSV and JSON) with their report, expansion through the one
acceptor (suppressed rows skipped and counted, a crash between batches neither loses nor
doubles a recipient), progress, pause/resume/cancel, and another tenant's 404s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from admin_api.services import ApiServices
from engine.campaigns.expansion import Expansion, settle_seconds
from engine.cli import main
from engine.clock import FakeClock
from engine.model import (
    CampaignRoute,
    MessageState,
    RecipientMark,
    Suppression,
    SuspensionScope,
    TrackingDomain,
)
from engine.records.record import Record, RecordType
from engine.rollup.service import StatsRollup
from engine.store import Store
from engine.submission.acceptor import Acceptor
from tests.integration.api_support import NODE, error_of
from tests.integration.test_api_messages import sender_of

CAMPAIGNS = "/v1/campaigns"


def campaign(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "spring",
        "template": {
            "from": "news@acme.example",
            "subject": "Hello {{ first_name }}",
            "text": "Hi {{ first_name }}, see {{ city }}",
            "html": "<p>Hi {{ first_name }}</p>",
        },
        "variables": ["first_name", "city"],
    }
    body.update(changes)
    return body


def expansion(services: ApiServices, store: Store | None = None, batch: int = 3) -> Expansion:
    assert services.acceptor is not None
    return Expansion(
        store=store or services.store,
        acceptor=services.acceptor,
        operations=services.operations,
        clock=services.clock,
        hostname="mta.penguin.test",
        nodeid=NODE,
        batch=batch,
    )


async def expand_all(runner: Expansion) -> None:
    for _ in range(1000):
        if not await runner.round():
            await runner.round()  # the round that finds nothing left marks it done
            return
    raise AssertionError("expansion did not finish")


def csv_of(count: int, start: int = 0) -> str:
    lines = ["email,first_name,city"]
    lines += [f"r{i}@dest.example,Name{i},City{i}" for i in range(start, start + count)]
    return "\n".join(lines) + "\n"


async def made(client: httpx.AsyncClient, headers: dict[str, str], csv: str) -> int:
    response = await client.post(CAMPAIGNS, json=campaign(), headers=headers)
    assert response.status_code == 201, response.text
    campaign_id: int = response.json()["id"]
    response = await client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients",
        content=csv,
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.text
    return campaign_id


async def test_a_template_that_does_not_render_is_a_422_naming_the_field(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, headers = await sender_of(api_services)
    bad_syntax = campaign()
    bad_syntax["template"]["subject"] = "Hello {{ first_name "
    response = await api_client.post(CAMPAIGNS, json=bad_syntax, headers=headers)
    assert response.status_code == 422
    assert error_of(response)["field"] == "template.subject"
    undeclared = campaign()
    undeclared["template"]["html"] = "<p>{{ nickname }}</p>"
    response = await api_client.post(CAMPAIGNS, json=undeclared, headers=headers)
    assert response.status_code == 422
    error = error_of(response)
    assert error["field"] == "template.html"
    assert "nickname" in str(error["message"])
    assert (await api_client.get(CAMPAIGNS, headers=headers)).json() == []
    created = await api_client.post(CAMPAIGNS, json=campaign(), headers=headers)
    assert created.status_code == 201
    again = await api_client.post(CAMPAIGNS, json=campaign(), headers=headers)
    assert again.status_code == 409


async def test_recipients_are_reported_row_by_row_and_expanded_once_each(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    await api_services.store.add_suppression(
        Suppression(tenant.id, "r3@dest.example", "bounce", 0.0)
    )
    csv = csv_of(7) + "not-an-address,X,Y\nr9@dest.example,OnlyName\n"
    campaign_id = await made(api_client, headers, csv)
    json_rows = [{"email": "j1@dest.example", "variables": {"first_name": "J", "city": "C"}}]
    response = await api_client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients", json=json_rows, headers=headers
    )
    assert response.json() == {"added": 1, "invalid": 0, "invalid_rows": []}
    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert shown["state"] == "draft"
    assert shown["progress"]["pending"] == 8
    assert shown["progress"]["invalid"] == 2

    started = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    assert started.json()["state"] == "scheduled"
    await expand_all(expansion(api_services))

    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert shown["state"] == "done"
    progress = shown["progress"]
    assert (progress["queued"], progress["suppressed"], progress["pending"]) == (7, 1, 0)
    messages = await api_services.store.tenant_messages(tenant.id, 100)
    queued = [m for m in messages if m.state is MessageState.QUEUED]
    assert sorted(m.recipient for m in queued) == sorted(
        [f"r{i}@dest.example" for i in range(7) if i != 3] + ["j1@dest.example"]
    )
    assert {m.campaign for m in queued} == {"spring"}
    assert {m.queue for m in queued} == {"spring:acme@dest.example"}


async def test_the_invalid_rows_report_names_lines_and_why(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, headers = await sender_of(api_services)
    response = await api_client.post(CAMPAIGNS, json=campaign(), headers=headers)
    campaign_id = response.json()["id"]
    csv = csv_of(2) + "not-an-address,X,Y\nr9@dest.example,OnlyName\n"
    response = await api_client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients",
        files={"file": ("list.csv", csv.encode(), "text/csv")},
        headers=headers,
    )
    report = response.json()
    assert (report["added"], report["invalid"]) == (2, 2)
    assert [(r["line"], r["error"]) for r in report["invalid_rows"]][1] == (
        5,
        "missing variable city",
    )
    assert report["invalid_rows"][0]["line"] == 4
    no_email = await api_client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients",
        content="address2,first_name\n",
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert no_email.status_code == 422
    assert error_of(no_email)["field"] == "file"


async def test_a_json_list_is_reported_row_by_row_and_refused_whole_if_unreadable(
    api_services: ApiServices, api_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, headers = await sender_of(api_services)
    response = await api_client.post(CAMPAIGNS, json=campaign(), headers=headers)
    recipients = f"{CAMPAIGNS}/{response.json()['id']}/recipients"
    good = {"email": "j1@dest.example", "variables": {"first_name": "J", "city": "C"}}
    rows = [
        good,
        {"email": "not-an-address", "variables": {"first_name": "X", "city": "Y"}},
        {"email": "j2@dest.example", "variables": {"first_name": "J"}},
    ]
    report = (await api_client.post(recipients, json=rows, headers=headers)).json()
    assert (report["added"], report["invalid"]) == (1, 2)
    assert [(r["line"], r["text"], r["error"]) for r in report["invalid_rows"]] == [
        (1, "not-an-address", "recipient domain must be a fully qualified domain name"),
        (2, "j2@dest.example", "missing variable city"),
    ]
    for body, field in [
        ([good, "j3@dest.example"], "[1]"),
        ([good, {"email": "j4@dest.example", "variables": ["J"]}], "[1].variables"),
        ({"email": "j5@dest.example"}, "body"),
    ]:
        refused = await api_client.post(recipients, json=body, headers=headers)
        assert refused.status_code == 422, body
        assert error_of(refused)["field"] == field
    cut = await api_client.post(
        recipients,
        content=json.dumps([good, good])[:-5],
        headers={**headers, "Content-Type": "application/json"},
    )
    assert (cut.status_code, error_of(cut)["field"]) == (422, "body")
    monkeypatch.setattr("admin_api.routes.campaigns.UPLOAD_MAX_BYTES", 1000)
    too_large = await api_client.post(recipients, json=[good] * 20, headers=headers)
    assert too_large.status_code == 413
    shown = (await api_client.get(recipients.removesuffix("/recipients"), headers=headers)).json()
    assert (shown["progress"]["pending"], shown["progress"]["invalid"]) == (1, 2)


async def test_progress_counts_each_outcome_from_the_records_of_the_campaigns_mail(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    await api_services.store.add_suppression(
        Suppression(tenant.id, "r6@dest.example", "bounce", 0.0)
    )
    campaign_id = await made(api_client, headers, csv_of(7))
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    await expand_all(expansion(api_services, batch=10))
    found = await api_services.store.tenant_messages(tenant.id, 10)
    mail = sorted((m for m in found if m.state is MessageState.QUEUED), key=lambda m: m.recipient)
    assert len(mail) == 6

    def about(i: int, kind: RecordType, **fields: Any) -> Record:
        return Record(kind, 1.0, tenant.id, id=mail[i].id, recipient=mail[i].recipient, **fields)

    records = [
        *(about(i, RecordType.DELIVERY) for i in range(4)),
        about(4, RecordType.TRANSIENT_FAILURE),
        about(4, RecordType.BOUNCE, bounce_classification="InvalidRecipient"),
        about(0, RecordType.OPEN, meta={"first": True}),
        about(0, RecordType.OPEN, meta={}),
        about(1, RecordType.OPEN, meta={"first": True, "machine": True}),
        about(0, RecordType.CLICK, meta={"first": True}),
        about(0, RecordType.CLICK, meta={}),
        about(2, RecordType.FEEDBACK),
        about(3, RecordType.UNSUBSCRIBE, meta={"first": True}),
    ]
    await api_services.store.add_records(records)
    rollup = StatsRollup(api_services.store, lambda domain: "other", api_services.clock, "test")
    progress = api_services.campaigns.progress
    async with asyncio.timeout(10):  # on PostgreSQL a running transaction may hold it back
        while (await progress(tenant, campaign_id)).stats["unsubscribed"] < 1:  # the last
            if not await rollup.step():
                await asyncio.sleep(0.01)

    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert shown["progress"] == {
        "recipients": 7,
        "pending": 0,
        "queued": 6,
        "sent": 5,
        "delivered": 4,
        "bounced": 1,
        "opened": 2,
        "clicked": 1,
        "complained": 1,
        "unsubscribed": 1,
        "suppressed": 1,
        "invalid": 0,
        "failed": 0,
    }


class _CrashAfterAccept:
    """The real store, whose first marking of rows fails as a crash would stop it."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.crashed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def mark_campaign_recipients(
        self, tenant_id: int, campaign_id: int, marks: Sequence[RecipientMark]
    ) -> None:
        if not self.crashed:
            self.crashed = True
            raise ConnectionError("the process died here")
        await self._store.mark_campaign_recipients(tenant_id, campaign_id, marks)


async def test_a_crash_between_acceptance_and_marking_neither_loses_nor_doubles(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    campaign_id = await made(api_client, headers, csv_of(10))
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    first = expansion(api_services)
    assert await first.round()  # one batch marked
    crashing = _CrashAfterAccept(api_services.store)
    doomed = expansion(api_services, store=crashing)
    with pytest.raises(ConnectionError):
        await doomed.round()
    await expand_all(expansion(api_services))  # the restarted process
    messages = await api_services.store.tenant_messages(tenant.id, 100)
    assert sorted(m.recipient for m in messages) == sorted(f"r{i}@dest.example" for i in range(10))
    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert shown["progress"]["queued"] == 10


async def test_pause_suspends_resume_lifts_and_cancel_removes_the_queued_mail(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    campaign_id = await made(api_client, headers, csv_of(6))
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    runner = expansion(api_services)
    await runner.round()
    paused = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/pause", headers=headers)
    assert paused.json()["state"] == "paused"
    now = api_services.clock.now()
    held = await api_services.store.active_suspensions(now)
    assert [(s.scope, s.target) for s in held] == [(SuspensionScope.CAMPAIGN, "acme:spring")]
    assert not await runner.round()  # paused: nothing expands
    resumed = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/resume", headers=headers)
    assert resumed.json()["state"] == "running"
    assert await api_services.store.active_suspensions(now) == []
    again = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/resume", headers=headers)
    assert again.status_code == 409
    cancelled = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/cancel", headers=headers)
    assert cancelled.json()["state"] == "cancelled"
    assert cancelled.json()["removed"] == 3
    left = await api_services.store.tenant_messages(tenant.id, 100)
    assert [m for m in left if m.state is MessageState.QUEUED] == []
    assert not await runner.round()


async def test_a_pool_or_tracking_domain_not_the_tenants_is_a_422_naming_it(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    _, other = await sender_of(api_services, "globex")
    store = api_services.store
    await store.add_tracking_domain(TrackingDomain(tenant.id, "t.acme.example", False, 0.0))
    globex = await store.get_tenant("globex")
    assert globex is not None
    await store.add_tracking_domain(TrackingDomain(globex.id, "t.globex.example", True, 0.0))
    for field, value in [
        ("pool", "nowhere"),
        ("tracking_domain", "t.globex.example"),  # another tenant's
        ("tracking_domain", "unknown.example"),
    ]:
        response = await api_client.post(
            CAMPAIGNS, json=campaign(**{field: value}), headers=headers
        )
        assert response.status_code == 422, response.text
        assert error_of(response)["field"] == field
    assert (await api_client.get(CAMPAIGNS, headers=headers)).json() == []
    body = campaign(pool="default", tracking_domain="T.Acme.Example.")
    created = await api_client.post(CAMPAIGNS, json=body, headers=headers)
    assert created.status_code == 201, created.text
    assert (created.json()["pool"], created.json()["tracking_domain"]) == (
        "default",
        "t.acme.example",
    )
    assert await store.campaign_routes() == [
        CampaignRoute(tenant.id, "spring", "default", "t.acme.example")
    ]
    assert (await api_client.post(CAMPAIGNS, json=campaign(), headers=other)).status_code == 201


async def test_cancel_records_an_admin_bounce_naming_it_for_each_removed_message(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    campaign_id = await made(api_client, headers, csv_of(4))
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    await expansion(api_services, batch=10).round()
    queued = {m.id for m in await api_services.store.tenant_messages(tenant.id, 100)}
    assert len(queued) == 4
    cancelled = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/cancel", headers=headers)
    assert cancelled.json()["removed"] == 4
    listed = await api_client.get("/v1/records", params={"type": "AdminBounce"}, headers=headers)
    assert listed.status_code == 200, listed.text
    bounces = listed.json()["records"]
    assert {r["id"] for r in bounces} == queued
    for record in bounces:
        assert record["response"]["content"] == "Removed from the queue: campaign spring cancelled"


class _CancelDuringAccept:
    """The real acceptor, with a campaign cancelled (and its queue swept) while a
    batch is being accepted: before the batch commits, as a cancel in another
    process can fall."""

    def __init__(self, acceptor: Acceptor, cancel: Callable[[], Awaitable[object]]) -> None:
        self._acceptor = acceptor
        self._cancel = cancel
        self.cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._acceptor, name)

    async def accept(self, **request: Any) -> dict[str, Any]:
        if not self.cancelled:
            self.cancelled = True
            await self._cancel()
        return await self._acceptor.accept(**request)


async def test_a_cancel_while_a_batch_is_accepted_leaves_nothing_queued(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    tenant, headers = await sender_of(api_services)
    campaign_id = await made(api_client, headers, csv_of(7))
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    assert await expansion(api_services).round()  # the first batch, queued before

    async def cancel() -> None:
        response = await api_client.post(f"{CAMPAIGNS}/{campaign_id}/cancel", headers=headers)
        assert response.json()["removed"] == 3  # the first batch; the second not yet in

    assert api_services.acceptor is not None
    racing = _CancelDuringAccept(api_services.acceptor, cancel)
    runner = Expansion(
        store=api_services.store,
        acceptor=cast(Acceptor, racing),
        operations=api_services.operations,
        clock=api_services.clock,
        hostname="mta.penguin.test",
        nodeid=NODE,
        batch=3,
    )
    assert await runner.round()  # the second batch, accepted after the cancel swept
    assert racing.cancelled
    assert await api_services.store.tenant_messages(tenant.id, 100) == []  # all removed
    assert not await runner.round()  # no further row is expanded
    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert (shown["state"], shown["progress"]["pending"]) == ("cancelled", 1)
    bounces = await api_client.get("/v1/records", params={"type": "AdminBounce"}, headers=headers)
    assert len(bounces.json()["records"]) == 6


async def test_a_new_campaign_with_a_pool_waits_for_the_snapshots_to_hold_its_routing(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    tenant, headers = await sender_of(api_services)
    routed = await api_client.post(CAMPAIGNS, json=campaign(pool="default"), headers=headers)
    assert routed.status_code == 201, routed.text
    plain = await api_client.post(CAMPAIGNS, json=campaign(name="plain"), headers=headers)
    assert plain.status_code == 201, plain.text
    for made_id, first in ((routed.json()["id"], 0), (plain.json()["id"], 2)):
        path = f"{CAMPAIGNS}/{made_id}"
        csv_headers = {**headers, "Content-Type": "text/csv"}
        added = await api_client.post(
            f"{path}/recipients", content=csv_of(2, first), headers=csv_headers
        )
        assert added.status_code == 200, added.text
        await api_client.post(f"{path}/start", headers=headers)
    assert settle_seconds(api_services.settings) == 20.0  # two 10 s tracking refreshes
    assert api_services.acceptor is not None
    runner = Expansion(
        store=api_services.store,
        acceptor=api_services.acceptor,
        operations=api_services.operations,
        clock=api_services.clock,
        hostname="mta.penguin.test",
        nodeid=NODE,
        settle_seconds=settle_seconds(api_services.settings),
    )

    async def campaigns_of_queued() -> set[str]:
        return {m.campaign for m in await api_services.store.tenant_messages(tenant.id, 10)}

    await expand_all(runner)  # the campaign without a pool or tracking domain starts at once
    assert await campaigns_of_queued() == {"plain"}
    api_clock.advance(19)
    assert not await runner.round()
    assert await campaigns_of_queued() == {"plain"}
    api_clock.advance(1)
    await expand_all(runner)
    assert await campaigns_of_queued() == {"plain", "spring"}


CAMPAIGN_ROUTES = [
    ("GET", ""),
    ("POST", "/recipients"),
    ("POST", "/start"),
    ("POST", "/pause"),
    ("POST", "/resume"),
    ("POST", "/cancel"),
]
"""Every route of one campaign: (method, path after its id)."""


async def each_route(
    client: httpx.AsyncClient, headers: dict[str, str], campaign_id: str
) -> list[tuple[str, httpx.Response]]:
    """Each of ``CAMPAIGN_ROUTES`` asked of campaign ``campaign_id``: (path, answer)."""
    answers = []
    for method, path in CAMPAIGN_ROUTES:
        response = await client.request(
            method,
            f"{CAMPAIGNS}/{campaign_id}{path}",
            headers={**headers, "Content-Type": "text/csv"},
            content=csv_of(1) if path == "/recipients" else None,
        )
        answers.append((path, response))
    return answers


async def test_another_tenants_campaign_is_not_found(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    _, headers = await sender_of(api_services)
    campaign_id = await made(api_client, headers, csv_of(2))
    _, other = await sender_of(api_services, "globex")
    assert (await api_client.get(CAMPAIGNS, headers=other)).json() == []
    missing = await api_client.get(f"{CAMPAIGNS}/999999", headers=other)
    assert missing.status_code == 404
    for path, response in await each_route(api_client, other, str(campaign_id)):
        assert response.status_code == 404, (path, response.text)
        assert response.json() == missing.json()
    shown = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    assert (shown["state"], shown["progress"]["pending"]) == ("draft", 2)


async def test_an_id_no_store_can_hold_is_a_422_naming_it(
    api_services: ApiServices, api_client: httpx.AsyncClient
) -> None:
    # Found by the fuzzing: an id past 2**63 - 1 overflowed SQLite's integer (a 500).
    _, headers = await sender_of(api_services)
    for path, response in await each_route(api_client, headers, str(2**63)):
        assert response.status_code == 422, (path, response.text)
        assert error_of(response)["field"] == "campaign_id"


def cli(capsys: pytest.CaptureFixture[str], config: Path, *args: str) -> Any:
    status = main([*args, "--config", str(config), "--json"])
    out, err = capsys.readouterr()
    assert status == 0, err
    return json.loads(out)


async def test_the_cli_prints_the_apis_numbers_through_the_same_service(
    api_services: ApiServices,
    api_client: httpx.AsyncClient,
    store_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant, headers = await sender_of(api_services)
    await api_services.store.add_suppression(
        Suppression(tenant.id, "r1@dest.example", "bounce", 0.0)
    )
    campaign_id = await made(api_client, headers, csv_of(5) + "bad,X,Y\n")
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    await expansion(api_services).round()
    messages = await api_services.store.tenant_messages(tenant.id, 10)
    first = next(m for m in messages if m.state is MessageState.QUEUED)
    delivered = Record(RecordType.DELIVERY, 1.0, tenant.id, id=first.id)
    click = replace(delivered, type=RecordType.CLICK, meta={"first": True})
    await api_services.store.add_records([delivered, click, replace(click, meta={})])
    rollup = StatsRollup(api_services.store, lambda domain: "other", api_services.clock, "test")
    async with asyncio.timeout(10):  # on PostgreSQL a running transaction may hold it back
        while (await api_services.campaigns.progress(tenant, campaign_id)).stats["clicks"] < 2:
            if not await rollup.step():
                await asyncio.sleep(0.01)
    config = tmp_path / "penguin.toml"
    config.write_text(
        f'[engine]\ndata_dir = "{tmp_path / "cli"}"\n\n[database]\nurl = "{store_url}"\n'
    )

    api = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
    shown = await asyncio.to_thread(cli, capsys, config, "campaign", "show", "acme", "spring")
    assert shown["progress"] == api["progress"]
    assert (api["progress"]["delivered"], api["progress"]["clicked"]) == (1, 1)
    assert (api["progress"]["suppressed"], api["progress"]["invalid"]) == (1, 1)
    listed = await asyncio.to_thread(cli, capsys, config, "campaign", "list", "acme")
    assert listed == [{"id": campaign_id, "name": "spring", "state": "running"}]
    api_list = (await api_client.get(CAMPAIGNS, headers=headers)).json()
    assert listed == [{k: c[k] for k in ("id", "name", "state")} for c in api_list]

    for action, state in [("pause", "paused"), ("resume", "running")]:
        moved = await asyncio.to_thread(cli, capsys, config, "campaign", action, "acme", "spring")
        api = (await api_client.get(f"{CAMPAIGNS}/{campaign_id}", headers=headers)).json()
        assert moved["state"] == api["state"] == state, action
        assert moved["progress"] == api["progress"], action
    held = await api_services.store.active_suspensions(api_services.clock.now())
    assert held == []  # resumed: the pause's suspension is lifted
    cancelled = await asyncio.to_thread(
        cli, capsys, config, "campaign", "cancel", "acme", str(campaign_id)
    )
    assert (cancelled["state"], cancelled["removed"]) == ("cancelled", 2)
    status = await asyncio.to_thread(
        main, ["campaign", "show", "globex", "spring", "--config", str(config)]
    )
    assert status == 1


async def test_a_scheduled_campaign_starts_at_its_send_at(
    api_services: ApiServices, api_client: httpx.AsyncClient, api_clock: FakeClock
) -> None:
    tenant, headers = await sender_of(api_services)
    body = campaign(send_at=api_clock.now() + 3600)
    response = await api_client.post(CAMPAIGNS, json=body, headers=headers)
    campaign_id = response.json()["id"]
    await api_client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients",
        content=csv_of(2),
        headers={**headers, "Content-Type": "text/csv"},
    )
    await api_client.post(f"{CAMPAIGNS}/{campaign_id}/start", headers=headers)
    runner = expansion(api_services)
    assert not await runner.round()
    assert await api_services.store.tenant_messages(tenant.id, 10) == []
    late = await api_client.post(
        f"{CAMPAIGNS}/{campaign_id}/recipients",
        content=csv_of(1, start=5),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert late.status_code == 409  # the list is fixed once the campaign is started
    api_clock.advance(3600)
    await expand_all(runner)
    assert len(await api_services.store.tenant_messages(tenant.id, 10)) == 2
