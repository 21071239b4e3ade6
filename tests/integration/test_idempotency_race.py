"""Idempotency keys across processes: two acceptors, each on a store connection of
its own (two ``open_store`` of one SQLite file, of one PostgreSQL database), race
requests with one key; exactly one acceptance is queued per key, the others are
answered with its receipt or told the key is in progress. Also through HTTP: two
apps, one per store, answer 202 with one receipt or 409 ``idempotency_in_progress``
with ``Retry-After: 1``."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from admin_api.app import create_app
from admin_api.services import ApiServices
from config import Settings
from engine.clock import FakeClock
from engine.model import ApiScope, IdempotencyKey, SendingDomain, Tenant
from engine.records.log import RecordLog
from engine.scheduler.tenant_settings import TenantSettingsBook
from engine.store import Store
from engine.submission.acceptance import Reception
from engine.submission.acceptor import (
    Acceptor,
    Idempotency,
    IdempotencyInProgress,
    Outgoing,
)
from engine.submission.spool import Spool
from tests.integration.api_support import (
    bearer,
    client_of,
    error_of,
    make_tenant_key,
    services_on,
)

ROUNDS = 20
DOMAINS = frozenset({"acme.example"})
HTTP = Reception("HTTP", "127.0.0.1", "api", "req-1", "pm_abc", None, None, "mx.test", "node-1")
BODY = {"from": "news@acme.example", "to": ["a@dest.example"], "subject": "Hi", "text": "Hi"}
RAW = b"From: news@acme.example\r\nTo: a@dest.example\r\nSubject: hi\r\n\r\nbody\r\n"


@contextlib.asynccontextmanager
async def acceptor_on(store: Store, clock: FakeClock, data_dir: Path) -> AsyncIterator[Acceptor]:
    """An acceptor on ``store`` with a spool of its own, running until the block ends."""
    data_dir.mkdir(parents=True)
    record_log = RecordLog(str(data_dir / "records.jsonl"))
    spool = Spool(store, record_log, batch_max=64)
    writer = asyncio.create_task(spool.run())
    try:
        yield Acceptor(store=store, spool=spool, clock=clock, rng=random.Random())
    finally:
        spool.close()
        await writer
        record_log.close()


async def send(acceptor: Acceptor, tenant: Tenant, key: Idempotency) -> dict[str, Any]:
    return await acceptor.accept(
        tenant=tenant,
        domains=DOMAINS,
        sender="bounces@acme.example",
        messages=[Outgoing(RAW, ["a@dest.example"])],
        reception=HTTP,
        idempotency=key,
    )


async def test_two_acceptors_on_two_connections_queue_one_acceptance_per_key(
    store: Store, opened_store: Store, tmp_path: Path
) -> None:
    clock = FakeClock()
    tenant = await store.create_tenant("acme", clock.now())
    async with (
        acceptor_on(store, clock, tmp_path / "one") as one,
        acceptor_on(opened_store, clock, tmp_path / "two") as two,
    ):
        for round_ in range(ROUNDS):
            key = Idempotency(f"order-{round_}", "hash-a")
            outcomes = await asyncio.gather(
                *(send(acceptor, tenant, key) for acceptor in (one, two, two, one)),
                return_exceptions=True,
            )
            receipts = [o for o in outcomes if isinstance(o, dict)]
            assert all(isinstance(o, dict | IdempotencyInProgress) for o in outcomes), outcomes
            assert receipts and all(r == receipts[0] for r in receipts)
        queued = await store.tenant_messages(tenant.id, 10 * ROUNDS)
    assert len(queued) == ROUNDS


async def test_two_apps_on_two_connections_queue_once_or_answer_409(
    store: Store, opened_store: Store, store_url: str, tmp_path: Path
) -> None:
    clock, book = FakeClock(), TenantSettingsBook(Settings())
    async with (
        services_on(store, store_url, clock, book, tmp_path / "one") as one,
        services_on(opened_store, store_url, clock, book, tmp_path / "two") as two,
        client_of(create_app(one)) as first,
        client_of(create_app(two)) as second,
    ):
        tenant, auth = await http_sender(one)
        for round_ in range(ROUNDS):
            headers = {**auth, "Idempotency-Key": f"order-{round_}"}
            answers = await asyncio.gather(
                *(c.post("/v1/messages", json=BODY, headers=headers) for c in (first, second))
            )
            accepted = [a.json() for a in answers if a.status_code == 202]
            assert accepted and all(a == accepted[0] for a in accepted)
            for busy in (a for a in answers if a.status_code != 202):
                assert_in_progress(busy)
        queued = await store.tenant_messages(tenant.id, 10 * ROUNDS)
    assert len(queued) == ROUNDS


async def test_a_key_claimed_elsewhere_and_not_answered_is_409_with_retry_after(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    clock, book = FakeClock(), TenantSettingsBook(Settings())
    async with (
        services_on(store, store_url, clock, book, tmp_path / "one") as services,
        client_of(create_app(services)) as client,
    ):
        tenant, auth = await http_sender(services)
        held = IdempotencyKey(tenant.id, "order-1", "h", "", clock.now(), "theirs", pending=True)
        await store.claim_idempotency_key(held, 0.0, 0.0)
        headers = {**auth, "Idempotency-Key": "order-1"}
        busy = await client.post("/v1/messages", json=BODY, headers=headers)
        assert_in_progress(busy)
        await store.release_idempotency_key(tenant.id, "order-1", "theirs")
        sent = await client.post("/v1/messages", json=BODY, headers=headers)
        assert sent.status_code == 202, sent.text
        assert len(await store.tenant_messages(tenant.id, 10)) == 1


async def http_sender(services: ApiServices) -> tuple[Tenant, dict[str, str]]:
    """Tenant acme, with its sending domain, and the headers of a send key of it."""
    tenant, token = await make_tenant_key(services, "acme", {ApiScope.SEND})
    await services.store.add_domain(
        SendingDomain(tenant.id, "acme.example", "s1", "rsa", b"", "", 0.0)
    )
    return tenant, bearer(token)


def assert_in_progress(answer: httpx.Response) -> None:
    assert answer.status_code == 409, answer.text
    assert error_of(answer)["code"] == "idempotency_in_progress"
    assert answer.headers["Retry-After"] == "1"
