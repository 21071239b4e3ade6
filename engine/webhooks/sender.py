"""The sender: claims due POSTs from the outbox and makes them, within bounds.

Each pass leases due deliveries (``Store.claim_webhook_deliveries``) for the
free places: at most ``max_in_flight`` POSTs at once in the process, at most
``concurrency_per_endpoint`` to one webhook (a webhook at its bound is left
out of the claim; a claim may still bring more of one webhook than its free
places, and those wait their turn). A POST is signed when it is made
(``Penguin-Signature``, a fresh timestamp per attempt) and its outcome stored
(``retries.attempt_outcome``) under the lease: a delivery that waited so long
that its lease could run out before its POST ends is left alone, to be
claimed again. The webhook's URL and secret are read when the POST is made,
so a change applies to the POSTs still queued.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Awaitable, Callable, Mapping

from config.schema import WebhookSettings
from engine.clock import Clock
from engine.model import Webhook, WebhookDelivery, WebhookDeliveryState
from engine.sealing import Sealer
from engine.store import Store
from engine.webhooks.endpoints import Endpoint, InvalidEndpoint, parse_endpoint
from engine.webhooks.retries import PostResult, attempt_outcome
from engine.webhooks.signature import HEADER, signature

log = logging.getLogger(__name__)

Post = Callable[[Endpoint, bytes, Mapping[str, str]], Awaitable[PostResult]]


def lease_seconds(settings: WebhookSettings) -> float:
    """How long a claim holds a delivery: time for a POST after waiting for a few."""
    return 60.0 + 3 * settings.request_timeout_seconds


class WebhookSender:
    def __init__(
        self,
        *,
        store: Store,
        settings: WebhookSettings,
        sealer: Sealer,
        clock: Clock,
        post: Post,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._sealer = sealer
        self._clock = clock
        self._post = post
        self._rng = rng if rng is not None else random.Random()
        self._lease = lease_seconds(settings)
        self._claimed: collections.Counter[str] = collections.Counter()
        self._turns: dict[str, asyncio.Semaphore] = {}
        self._in_flight = 0
        self.freed = asyncio.Event()
        """Set when a POST ends: a place is free for the next claim."""

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def claim(self) -> list[WebhookDelivery]:
        """Lease the due deliveries there is room for now (``send`` each)."""
        free = self._settings.max_in_flight - self._in_flight
        if free <= 0:
            return []
        bound = self._settings.concurrency_per_endpoint
        busy = {webhook for webhook, count in self._claimed.items() if count >= bound}
        claimed = await self._store.claim_webhook_deliveries(
            self._clock.now(), self._lease, free, busy
        )
        for delivery in claimed:
            self._claimed[delivery.webhook_id] += 1
            self._in_flight += 1
        return claimed

    async def send(self, delivery: WebhookDelivery) -> None:
        """Make the POST of a claimed delivery and store how it went."""
        turn = self._turns.setdefault(
            delivery.webhook_id, asyncio.Semaphore(self._settings.concurrency_per_endpoint)
        )
        try:
            async with turn:
                await self._send(delivery)
        except Exception:  # the store failed: the lease runs out and the POST is made again
            log.exception("webhook delivery %d: the outcome was not stored", delivery.id)
        finally:
            self._in_flight -= 1
            self._claimed[delivery.webhook_id] -= 1
            if self._claimed[delivery.webhook_id] <= 0:
                del self._claimed[delivery.webhook_id]
                self._turns.pop(delivery.webhook_id, None)
            self.freed.set()

    async def _send(self, delivery: WebhookDelivery) -> None:
        assert delivery.lease_expires is not None
        if self._clock.now() + self._settings.request_timeout_seconds >= delivery.lease_expires:
            return  # waited too long for its turn: claimed again once the lease is over
        webhook = await self._store.get_webhook(delivery.tenant_id, delivery.webhook_id)
        if webhook is None or not webhook.enabled:
            return  # removed (with its deliveries) or disabled: held until enabled again
        result = await self.post_to(webhook, delivery.payload.encode(), delivery.id)
        outcome = attempt_outcome(delivery, result, self._clock.now(), self._settings, self._rng)
        if outcome.state is WebhookDeliveryState.FAILED:
            log.warning(
                "webhook %s: delivery %d failed after %d attempts: %s",
                webhook.id,
                delivery.id,
                outcome.attempts,
                outcome.error,
            )
        await self._store.finish_webhook_delivery(outcome)

    async def post_to(self, webhook: Webhook, body: bytes, delivery_id: int | None) -> PostResult:
        """POST ``body`` to ``webhook``, signed now (the API's test POST too)."""
        try:
            endpoint = parse_endpoint(
                webhook.url,
                allow_http=self._settings.allow_http,
                allow_private=self._settings.allow_private,
            )
        except InvalidEndpoint as exc:
            return PostResult(None, f"refused: {exc}")
        secret = self._sealer.unseal(webhook.secret_sealed).decode()
        headers = {
            HEADER: signature(secret, body, int(self._clock.now())),
            "Penguin-Webhook-Id": webhook.id,
        }
        if delivery_id is not None:
            headers["Penguin-Delivery-Id"] = str(delivery_id)
        return await self._post(endpoint, body, headers)
