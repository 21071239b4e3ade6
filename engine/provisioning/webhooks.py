"""A tenant's webhooks: made, changed, listed, removed, probed; their delivery logs.

A webhook's id is ``wh_`` and 16 hex digits; its signing secret
(``engine.webhooks.signature.new_secret``) is returned once, by ``create``,
and stored sealed with the engine secret. Its URL passes the URL rule of
``engine.webhooks.endpoints`` under ``[webhooks] allow_http`` and
``allow_private`` before it is stored. Every call names the tenant, and a
webhook of another tenant is ``Unknown``, as one that does not exist.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace

from config import Settings
from engine.clock import Clock
from engine.model import Webhook, WebhookDelivery, WebhookFormat
from engine.provisioning.errors import Invalid, Unknown, translated
from engine.records.record import RecordType
from engine.sealing import Sealer
from engine.store import Store
from engine.webhooks.client import HttpPoster
from engine.webhooks.endpoints import InvalidEndpoint, parse_endpoint
from engine.webhooks.payloads import MAX_BATCH_SIZE, probe_payload
from engine.webhooks.retries import PostResult
from engine.webhooks.sender import WebhookSender
from engine.webhooks.signature import new_secret

RECORD_TYPES = frozenset(t.value for t in RecordType)


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A webhook just made, with its secret (shown this once)."""

    webhook: Webhook
    secret: str


@dataclass(frozen=True, slots=True)
class WebhookChange:
    """What ``update`` changes: the fields set (None leaves one as it is)."""

    url: str | None = None
    record_types: Collection[str] | None = None
    format: WebhookFormat | None = None
    batch_size: int | None = None
    enabled: bool | None = None


class WebhookRegistry:
    def __init__(
        self, store: Store, settings: Settings, sealer: Callable[[], Sealer], clock: Clock
    ) -> None:
        self._store = store
        self._settings = settings
        self._sealer = sealer
        self._clock = clock

    async def create(
        self,
        tenant_id: int,
        url: str,
        record_types: Collection[str],
        fmt: WebhookFormat,
        batch_size: int,
        enabled: bool,
    ) -> NewWebhook:
        self._check(url, record_types, batch_size)
        secret = new_secret()
        now = self._clock.now()
        webhook = Webhook(
            id=f"wh_{secrets.token_hex(8)}",
            tenant_id=tenant_id,
            url=url,
            record_types=tuple(sorted(set(record_types))),
            format=fmt,
            batch_size=batch_size,
            enabled=enabled,
            secret_sealed=self._sealer().seal(secret.encode()),
            created_at=now,
            updated_at=now,
        )
        with translated(f"webhook {webhook.id}"):
            await self._store.add_webhook(webhook)
        return NewWebhook(webhook, secret)

    async def get(self, tenant_id: int, webhook_id: str) -> Webhook:
        with translated(f"webhook {webhook_id!r}"):
            found = await self._store.get_webhook(tenant_id, webhook_id)
        if found is None:
            raise Unknown(f"no webhook {webhook_id!r}")
        return found

    async def for_tenant(self, tenant_id: int) -> list[Webhook]:
        with translated("webhooks"):
            return await self._store.list_webhooks(tenant_id)

    async def update(self, tenant_id: int, webhook_id: str, change: WebhookChange) -> Webhook:
        webhook = await self.get(tenant_id, webhook_id)
        changed = replace(
            webhook,
            url=change.url if change.url is not None else webhook.url,
            record_types=(
                tuple(sorted(set(change.record_types)))
                if change.record_types is not None
                else webhook.record_types
            ),
            format=change.format if change.format is not None else webhook.format,
            batch_size=change.batch_size if change.batch_size is not None else webhook.batch_size,
            enabled=change.enabled if change.enabled is not None else webhook.enabled,
            updated_at=self._clock.now(),
        )
        self._check(changed.url, changed.record_types, changed.batch_size)
        with translated(f"webhook {webhook_id!r}"):
            updated = await self._store.update_webhook(changed)
        if not updated:
            raise Unknown(f"no webhook {webhook_id!r}")
        return changed

    async def remove(self, tenant_id: int, webhook_id: str) -> None:
        with translated(f"webhook {webhook_id!r}"):
            removed = await self._store.remove_webhook(tenant_id, webhook_id)
        if not removed:
            raise Unknown(f"no webhook {webhook_id!r}")

    async def deliveries(
        self, tenant_id: int, webhook_id: str, before_id: int | None, limit: int
    ) -> list[WebhookDelivery]:
        await self.get(tenant_id, webhook_id)
        with translated(f"webhook {webhook_id!r}"):
            return await self._store.list_webhook_deliveries(
                tenant_id, webhook_id, before_id, limit
            )

    async def probe(
        self, tenant_id: int, webhook_id: str, poster: HttpPoster | None = None
    ) -> PostResult:
        """POST a signed test record to the webhook now (disabled or not); how it went."""
        webhook = await self.get(tenant_id, webhook_id)
        hooks = self._settings.webhooks
        if poster is None:
            poster = HttpPoster(
                timeout=hooks.request_timeout_seconds, allow_private=hooks.allow_private
            )
        sender = WebhookSender(
            store=self._store,
            settings=hooks,
            sealer=self._sealer(),
            clock=self._clock,
            post=poster.post,
        )
        body = probe_payload(webhook, self._clock.now()).encode()
        return await sender.post_to(webhook, body, None)

    def _check(self, url: str, record_types: Collection[str], batch_size: int) -> None:
        hooks = self._settings.webhooks
        try:
            parse_endpoint(url, allow_http=hooks.allow_http, allow_private=hooks.allow_private)
        except InvalidEndpoint as exc:
            raise Invalid(f"url: {exc}", field="url") from exc
        unknown = sorted(set(record_types) - RECORD_TYPES)
        if unknown:
            raise Invalid(f"record_types: unknown record type {unknown[0]!r}", field="record_types")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise Invalid(
                f"batch_size: expected 1 to {MAX_BATCH_SIZE}, got {batch_size}", field="batch_size"
            )
