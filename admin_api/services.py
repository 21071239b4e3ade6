"""What the API's routes use: the process's store, provisioning, operations, settings, clock.

``ApiServices`` is built once per process by the composition root
(``engine.runtime.app``) and handed to ``create_app``; routes reach it with
the ``admin_api.auth.api_services`` dependency. ``acceptor`` is the process's
acceptance path (``engine.submission.acceptor``: the one SMTP submission uses,
committing through its spool); None where the process accepts no mail. ``dns``
answers domain verification's lookups (``smtp_out.dns_lookup`` on the ``[dns]``
resolvers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from config import Settings
from engine.campaigns import Campaigns
from engine.clock import Clock
from engine.limits import Limiter
from engine.limits.throttle import ThrottleSpec
from engine.provisioning import Operations, Provisioning
from engine.provisioning.verification import DnsLookup
from engine.service import Health
from engine.store import Store
from engine.submission.acceptor import Acceptor
from engine.submission.quota import TenantQuota


def _no_services() -> dict[str, Health]:
    return {}


@dataclass(frozen=True, slots=True)
class ApiServices:
    """The parts of one engine process the admin API works with."""

    store: Store
    provisioning: Provisioning
    settings: Settings
    clock: Clock
    limiter: Limiter
    """Keeps each API key's request rate (``key_rate``); Redis-backed with ``redis.url``."""
    key_rate: ThrottleSpec
    """``admin.key_rate``, parsed."""
    nodeid: str
    """This node's name in records."""
    operator_token: str | None = field(default=None, repr=False)
    """The token of ``admin.operator_token_file``; None: no operator access over HTTP."""
    acceptor: Acceptor | None = None
    dns: DnsLookup | None = None
    """Looks up the records a domain verification checks; None: verification unavailable
    (no usable resolver configuration)."""
    metrics: CollectorRegistry = field(default_factory=CollectorRegistry)
    """What ``/metrics`` serves."""
    health: Callable[[], Mapping[str, Health]] = _no_services
    """Each service's health by name, for ``/healthz``."""
    quota: TenantQuota | None = None
    """The tenants' quotas (``TenantQuota``, the one ``acceptor`` checks); None where the
    process accepts no mail."""

    @property
    def operations(self) -> Operations:
        """The operator's actions (suspensions, the queue, lanes): a stateless service."""
        return Operations(self.store, self.settings, nodeid=self.nodeid, clock=self.clock)

    @property
    def campaigns(self) -> Campaigns:
        """The tenants' campaigns: a stateless service over the store."""
        return Campaigns(self.store, self.settings, self.clock, self.operations)
