"""What ``penguin lanes`` and ``penguin ips`` show, from what the engine left in the store.
Pure.

In: the status reports of the delivering processes (``LaneScheduler.report``, kept
by ``store.put_status``), the queue depths, the warmup history, the active
suspensions. Out: one row per lane (source x site: connections and messages in
flight summed over the processes, the shaping in force, the highest backoff
level any process saw, the messages queued for it and the next due) and one row
per (source, provider) (ramp day, today's count and cap, state).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine.model import Suspension, SuspensionScope, WarmupCount
from engine.scheduler.warmup import DayCount, WarmupPlan, WarmupPolicy, warmup_status


def lane_rows(
    reports: Iterable[Mapping[str, Any]], depths: Mapping[str, tuple[int, float | None]]
) -> list[dict[str, Any]]:
    """The lanes of every report, merged across processes, with their queued messages."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for report in reports:
        for lane in report.get("lanes", ()):
            key = (lane["source"], lane["site"])
            row = merged.get(key)
            if row is None:
                merged[key] = row = {**lane, "in_flight": 0, "connections": 0, "queues": set()}
            row["in_flight"] += lane["in_flight"]
            row["connections"] += lane["connections"]
            row["backoff_level"] = max(row["backoff_level"], lane["backoff_level"])
            row["queues"].update(lane["queues"])
    rows = []
    for key in sorted(merged):
        row = merged[key]
        queues = sorted(row.pop("queues"))
        counts = [depths[q] for q in queues if q in depths]
        dues = [due for _, due in counts if due is not None]
        row["queued"] = sum(count for count, _ in counts)
        row["next_due"] = min(dues) if dues else None
        row["queues"] = queues
        rows.append(row)
    return rows


def source_rows(
    *,
    sources: Mapping[str, WarmupPlan | None],
    providers: Iterable[str],
    history: Iterable[WarmupCount],
    today: int,
    policy: WarmupPolicy,
    reports: Iterable[Mapping[str, Any]],
    suspensions: Iterable[Suspension],
    now: float,
) -> list[dict[str, Any]]:
    """One row per source and provider (``""``: sites of no provider)."""
    by_pair: dict[tuple[str, str], list[DayCount]] = {}
    for count in history:
        by_pair.setdefault((count.source, count.provider), []).append(
            DayCount(count.day, count.sent, count.deferred, count.complained)
        )
    live: dict[tuple[str, str], int] = {}
    for report in reports:
        for row in report.get("sources", ()):
            pair = (row["source"], row["provider"])
            live[pair] = max(live.get(pair, 0), row["sent"])
    held = {(s.scope, s.target.lower()): s for s in suspensions if s.until > now}
    rows = []
    names = list(providers)
    for source, plan in sorted(sources.items()):
        for provider in [*names, ""]:
            days = by_pair.get((source, provider), [])
            stored_today = sum(d.sent for d in days if d.day == today)
            sent = max(stored_today, live.get((source, provider), 0))
            status = None if plan is None else warmup_status(plan, days, today, policy)
            state = "no plan" if status is None else status.state.value
            suspension = held.get((SuspensionScope.SOURCE, source.lower())) or held.get(
                (SuspensionScope.SOURCE_PROVIDER, f"{source}|{provider}".lower())
            )
            if suspension is not None:
                state = f"suspended: {suspension.reason}"
            rows.append(
                {
                    "source": source,
                    "provider": provider or "other",
                    "plan": plan.name if plan else "",
                    "day": status.day if status else None,
                    "sent_today": sent,
                    "cap": status.cap if status else None,
                    "state": state,
                    "reason": status.reason if status else "",
                }
            )
    return rows
