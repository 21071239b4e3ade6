"""The dispatcher: follows the record log and queues the POSTs it owes the webhooks.

Each pass reads up to ``batch`` records after the stored position
(``Store.records_since``), plans the POSTs of the enabled webhooks that want
them (``payloads.plan_deliveries``) and queues them while moving the position
(``Store.queue_webhook_deliveries``), in one transaction: a crash before it
commits reads the same records again, after it never. While no webhook is
enabled the position moves to the end of the log without reading it: a
webhook is owed the records logged after it was enabled. When several processes
dispatch, the position moves only from where it was: the one that loses the
race stores nothing, and the next pass starts from the winner's position.
"""

from __future__ import annotations

from engine.clock import Clock
from engine.store import Store
from engine.webhooks.payloads import plan_deliveries


class WebhookDispatcher:
    def __init__(self, store: Store, clock: Clock, batch: int) -> None:
        self._store = store
        self._clock = clock
        self._batch = batch

    async def dispatch_once(self) -> tuple[int, int]:
        """One pass: (records read, POSTs queued); (0, 0) when nothing was new or
        another process dispatched the same records first."""
        position = await self._store.webhook_position()
        end = await self._store.log_end(position)  # before the webhooks: all logged before
        webhooks = await self._store.enabled_webhooks()
        if not webhooks:
            if end != position:
                await self._store.queue_webhook_deliveries(position, end, [], self._clock.now())
            return 0, 0
        records, reached = await self._store.records_since(position, self._batch)
        if not records:
            return 0, 0
        deliveries = plan_deliveries(records, webhooks)
        queued = await self._store.queue_webhook_deliveries(
            position, reached, deliveries, self._clock.now()
        )
        return (len(records), len(deliveries)) if queued else (0, 0)
