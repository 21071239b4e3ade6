"""The intake: from stored inbound messages to records and suppressions.

In: inbound messages the listener committed (``Store.claim_inbound``, leased
so several processes share the work). For each: parse it (``parse``, the
pure parser), find the original messages (a return-path token in a RCPT
local part names one message; else our ``X-Penguin-Ref`` header in the
returned original names the submission), pair them with what the report
says (``bounce_in.attribution``), decide (``bounce_in.actions``), and store
the records, the suppressions, the soft bounces and the message's new state
in one transaction (``Store.finish_inbound``). Out: OOB and Feedback records
on the original messages (also to the JSON record log), suppressions.

Invariants: nothing received is dropped: a message nothing can be
attributed to is kept ``unmatched`` with the reason, and so is one whose
processing raised (the error is the reason); processing a message twice
(a crash before its transaction committed, or two processes) stores its
results once, since only a ``pending`` message is finished. A store error
leaves the message pending; its lease expires and it is tried again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from bounce_in import actions, attribution
from bounce_in.report import BounceReport, ReportKind
from engine.clock import Clock
from engine.model import InboundMessage, InboundState, QueuedMessage, SendingDomain
from engine.records.log import RecordLog
from engine.return_path import REFERENCE_HEADER
from engine.store import Store, StoreError

log = logging.getLogger(__name__)

LEASE_SECONDS: Final = 300.0
BATCH: Final = 50


class ReturnPaths(Protocol):
    """What the intake needs of ``engine.return_path.ReturnPathCodec``."""

    def message_id(self, local_part: str) -> str | None:
        """The message a return-path local part names; None if not a valid token."""
        ...

    def submission_id(self, reference: str) -> str | None:
        """The submission an ``X-Penguin-Ref`` value names; None if not valid."""
        ...


Parse = Callable[[bytes], BounceReport]
"""The parser, classifier bound (``bounce_in.parsing.parse_report``); never raises."""


@dataclass(frozen=True, slots=True)
class Candidates:
    messages: Sequence[QueuedMessage]
    reason: str
    """Why there are none (empty when there are)."""
    verified: bool = True
    """Whether a signed token names the very message (or the submission has only it):
    only then may a bounce suppress. Our reference header names a whole submission, so
    with several recipients one of them could forge a bounce about another. Complaints
    are the exception: they come from the providers' feedback loops, to addresses
    registered with them, and name the complainant (Microsoft JMRP's
    ``X-HmXmrOriginalRecipient``)."""


async def sending_domains(store: Store) -> list[SendingDomain]:
    """Every tenant's sending domains."""
    return [d for t in await store.list_tenants() for d in await store.list_domains(t.id)]


class Intake:
    """Processes stored inbound messages until stopped."""

    def __init__(
        self,
        *,
        store: Store,
        parse: Parse,
        return_paths: ReturnPaths,
        policies: Callable[[str], actions.Policy],
        clock: Clock,
        nodeid: str,
        poll_seconds: float,
        record_log: RecordLog | None = None,
    ) -> None:
        self._store = store
        self._parse = parse
        self._return_paths = return_paths
        self._policies = policies
        self._clock = clock
        self._nodeid = nodeid
        self._record_log = record_log
        self._poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """New inbound messages are stored."""
        self._wakeup.set()

    def stop(self) -> None:
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Claim and process pending messages; wait for a wake or the poll interval."""
        while not self._stopping:
            self._wakeup.clear()
            try:
                done = await self.process_pending()
            except StoreError as exc:
                log.warning("inbound messages not claimed: %s", exc)
                done = 0
            if done == 0 and not self._stopping:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._poll_seconds):
                        await self._wakeup.wait()

    async def process_pending(self) -> int:
        """Process one batch of pending messages; how many were claimed."""
        claimed = await self._store.claim_inbound(self._clock.now(), LEASE_SECONDS, BATCH)
        for inbound in claimed:
            await self.process(inbound)
        return len(claimed)

    async def process(self, inbound: InboundMessage) -> InboundState | None:
        """Act on one inbound message; its new state (None: left pending)."""
        try:
            return await self._process(inbound)
        except StoreError as exc:
            log.warning("inbound %s left pending: %s", inbound.id, exc)
            return None
        except Exception as exc:
            log.exception("inbound %s could not be processed", inbound.id)
            reason = f"error: {type(exc).__name__}: {exc}"
            return await self._unmatched(inbound, reason[:500])

    async def _process(self, inbound: InboundMessage) -> InboundState | None:
        report = self._parse(inbound.data)
        if report.kind is ReportKind.OTHER:
            return await self._unmatched(inbound, "not a bounce, complaint or auto-reply")
        found = await self._candidates(inbound, report)
        if not found.messages:
            return await self._unmatched(inbound, found.reason)
        matches = attribution.match(report, found.messages)
        if not matches:
            count = len(found.messages)
            return await self._unmatched(inbound, f"recipient not told among {count} candidates")
        findings = [
            actions.Finding(m.message, await self._tenant_name(m.message.tenant_id), m.status)
            for m in matches
        ]
        now = self._clock.now()
        policy = self._policies(findings[0].tenant)
        since = now - policy.soft_window_seconds
        counts = {
            key: await self._store.soft_bounce_count(key[0], key[1], since)
            for key in actions.soft_keys(findings)
        }
        context = actions.Context(inbound.id, inbound.peer, now, self._nodeid)
        plan = actions.plan(report, findings, counts, policy, context)
        if not found.verified and report.kind is not ReportKind.FEEDBACK:
            plan = actions.unverified(plan)
        applied = await self._store.finish_inbound(
            inbound.id,
            InboundState.DONE,
            "",
            now,
            records=plan.records,
            suppressions=plan.suppressions,
            soft_bounces=plan.soft_bounces,
        )
        if not applied:
            return None
        if self._record_log is not None:
            self._record_log.write(list(plan.records))
        log.info(
            "inbound id=%s %s: %d records, suppressed %s",
            inbound.id,
            report.kind.value,
            len(plan.records),
            ",".join(s.address for s in plan.suppressions) or "none",
        )
        return InboundState.DONE

    async def _candidates(self, inbound: InboundMessage, report: BounceReport) -> Candidates:
        reasons: list[str] = []
        for rcpt in inbound.rcpt_tos:
            local = attribution.local_part(rcpt)
            message_id = self._return_paths.message_id(local) if local else None
            if message_id is None:
                continue
            message = await self._store.get_message(message_id)
            if message is not None:
                return Candidates([message], "")
            reasons.append(f"token names unknown message {message_id}")
        returned = attribution.returned_path(report)
        message_id = self._return_paths.message_id(returned) if returned else None
        if message_id is not None:
            message = await self._store.get_message(message_id)
            if message is not None:
                return Candidates([message], "")
        reference = attribution.reference(report)
        if reference is not None:
            submission_id = self._return_paths.submission_id(reference)
            if submission_id is None:
                reasons.append(f"{REFERENCE_HEADER} not ours: {reference[:80]}")
            else:
                messages = await self._store.list_submission(submission_id)
                if messages:
                    return Candidates(messages, "", verified=len(messages) == 1)
                reasons.append(f"{REFERENCE_HEADER} names unknown {submission_id}")
        if not reasons:
            reasons.append(f"no valid return-path token, no {REFERENCE_HEADER}")
        return Candidates([], "; ".join(reasons))

    async def _tenant_name(self, tenant_id: int) -> str:
        tenant = await self._store.get_tenant_by_id(tenant_id)
        return tenant.name if tenant is not None else str(tenant_id)

    async def _unmatched(self, inbound: InboundMessage, reason: str) -> InboundState | None:
        log.info("inbound id=%s unmatched: %s", inbound.id, reason)
        now = self._clock.now()
        applied = await self._store.finish_inbound(inbound.id, InboundState.UNMATCHED, reason, now)
        return InboundState.UNMATCHED if applied else None
