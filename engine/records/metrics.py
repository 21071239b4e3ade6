"""Prometheus metrics of the engine, on one registry served at ``/metrics``.

Names follow Prometheus conventions (``penguin_`` prefix, ``_total`` for
counters, base units). Label sets are small and bounded: outcome kinds,
states, and the site (one per MX rollup).

With several engine processes (``engine.processes``), ``penguin run`` sets
``PROMETHEUS_MULTIPROC_DIR`` before this module is imported: every worker
then keeps its values in files there, and ``/metrics`` (served by one
worker) adds them up.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

SHARED_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

REGISTRY = CollectorRegistry(auto_describe=True)


def served_registry() -> CollectorRegistry:
    """What ``/metrics`` shows: this process's metrics, or every worker's."""
    if SHARED_DIR_ENV not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


ACCEPTED = Counter(
    "penguin_accepted_messages_total",
    "Recipients accepted for delivery (one per queued message).",
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "penguin_delivery_attempts_total",
    "Delivery attempts by outcome (delivered, transient, permanent, expired) and site.",
    ["outcome", "site"],
    registry=REGISTRY,
)
ATTEMPT_SECONDS = Histogram(
    "penguin_delivery_attempt_seconds",
    "Time of one delivery attempt, from hand-off to the SMTP client to its outcome.",
    ["outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "penguin_queue_messages",
    "Messages in the store by state.",
    ["state"],
    registry=REGISTRY,
    multiprocess_mode="livemostrecent",
)
OPEN_CONNECTIONS = Gauge(
    "penguin_smtp_connections_open",
    "Outgoing SMTP connections currently open.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
DKIM_SIGN_SECONDS = Histogram(
    "penguin_dkim_sign_seconds",
    "Time to DKIM-sign one message.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
    registry=REGISTRY,
)
LANE_IN_FLIGHT = Gauge(
    "penguin_lane_ready_messages",
    "Messages in a lane's ready queue (claimed, in flight) per source and site.",
    ["source", "site"],
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
LANE_BACKOFF_LEVEL = Gauge(
    "penguin_lane_backoff_level",
    "Backoff level of a lane's path (0: full rate and connections).",
    ["source", "site"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
SOURCE_SENT_TODAY = Gauge(
    "penguin_source_sent_today",
    "Messages a source sent to a provider this UTC day.",
    ["source", "provider"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)
SOURCE_DAILY_CAP = Gauge(
    "penguin_source_daily_cap",
    "Today's warmup cap of a source for a provider (-1: not capped).",
    ["source", "provider"],
    registry=REGISTRY,
    multiprocess_mode="livemax",
)

TRACKING_EVENTS = Counter(
    "penguin_tracking_events_total",
    "Opens, clicks and unsubscribes recorded, by event, audience (human, or machine: "
    "privacy proxies, link scanners, prefetches) and whether it was the recipient's first "
    "of its kind on the message (unique) or a repeat.",
    ["event", "audience", "first"],
    registry=REGISTRY,
)
