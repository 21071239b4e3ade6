"""Tracking domains in memory: which one a message's links go through, whose a host is.

``TrackingDomains`` holds a snapshot of the store's tracking domains and
tenants and answers from memory, for each message delivery rewrites
(``policy_for``) and each request the tracking edge serves (``tenant_of``).
``refresh(store)`` reads a new snapshot; ``load`` takes rows already read.

In: the settings (``[tenants.NAME]`` switches, ``[campaigns."TENANT:CAMPAIGN"]``
overrides), the tenants, the tracking domains and the campaigns created through
the API that set one (``Store.campaign_routes``, merged into the tables by
``engine.scheduler.routing.campaign_tables``: the stored domain wins). Out: a
``TrackingPolicy`` or None (no tracking), a tenant id or None (not a tracking
domain).

Precedence (``policy_for``): the domain is the campaign's ``tracking_domain``
when it sets one (the API's campaign's, else its config table's), else the
tenant's default tracking domain, else there is no tracking; each switch
(opens, clicks, unsubscribe) is the campaign's when it sets it, else the
tenant's (on by default). A campaign naming a domain not
registered for its tenant gets no tracking rather than another tenant's
domain or the default (logged when first seen). With every switch off the
policy is None too.

Invariants: a host belongs to one tenant at most (the store keeps names
unique), so tracking domain A never serves tenant B; answers change only when
a snapshot is loaded, and a refresh that fails changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from config import Settings
from config.schema import CampaignSettings, TenantSettings
from engine.model import CampaignRoute, Tenant, TrackingDomain, TrackingPolicy
from engine.scheduler.routing import campaign_tables
from engine.store import Store

log = logging.getLogger(__name__)

DEFAULT_TENANT = TenantSettings()
INHERITING_CAMPAIGN = CampaignSettings()
"""A campaign that sets no switch of its own."""


@dataclass(frozen=True, slots=True)
class _Snapshot:
    owners: dict[str, int] = field(default_factory=dict)
    """Tracking domain name -> tenant id."""
    tenants: dict[int, TrackingPolicy | None] = field(default_factory=dict)
    """Tenant id -> the policy of its mail outside overriding campaigns."""
    campaigns: dict[tuple[int, str], TrackingPolicy | None] = field(default_factory=dict)
    """(tenant id, campaign) -> the policy of a campaign with a table of its own."""


class TrackingDomains:
    """The tracking domains of every tenant, as of the last ``refresh`` or ``load``;
    empty (no tracking, no tracking domain) until then."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._snapshot = _Snapshot()
        self._unregistered: frozenset[tuple[str, str]] = frozenset()
        self.loads = 0
        """Snapshots loaded so far."""

    async def refresh(self, store: Store) -> None:
        """Load a new snapshot from ``store``; its errors (``StoreError``) propagate and
        the snapshot in use stays."""
        tenants = await store.list_tenants()
        domains = await store.list_tracking_domains(None)
        self.load(tenants, domains, await store.campaign_routes())

    def load(
        self,
        tenants: Iterable[Tenant],
        domains: Iterable[TrackingDomain],
        routes: Iterable[CampaignRoute] = (),
    ) -> None:
        """Replace the snapshot with one of ``tenants``, their tracking ``domains`` and
        their stored campaigns' ``routes``."""
        names = {t.id: t.name for t in tenants}
        owned: dict[int, set[str]] = {tenant_id: set() for tenant_id in names}
        defaults: dict[int, str] = {}
        owners: dict[str, int] = {}
        for d in domains:
            owners[d.name] = d.tenant_id
            owned.setdefault(d.tenant_id, set()).add(d.name)
            if d.is_default:
                defaults[d.tenant_id] = d.name
        by_name = {name: tenant_id for tenant_id, name in names.items()}
        tenants_policy = {
            tenant_id: self._policy(defaults.get(tenant_id), self._tenant(name), None)
            for tenant_id, name in names.items()
        }
        campaigns: dict[tuple[int, str], TrackingPolicy | None] = {}
        unregistered: set[tuple[str, str]] = set()
        for key, campaign in campaign_tables(self._settings, names, routes).items():
            tenant, _, name = key.partition(":")
            tenant_id = by_name.get(tenant)
            if tenant_id is None:
                continue
            domain = campaign.tracking_domain.lower().rstrip(".") or defaults.get(tenant_id)
            if domain is not None and domain not in owned[tenant_id]:
                unregistered.add((key, domain))
                domain = None
            campaigns[(tenant_id, name)] = self._policy(domain, self._tenant(tenant), campaign)
        self._report(frozenset(unregistered))
        self._snapshot = _Snapshot(owners, tenants_policy, campaigns)
        self.loads += 1

    def policy_for(self, tenant_id: int, campaign: str) -> TrackingPolicy | None:
        """How mail of the tenant's ``campaign`` (``""`` for none) is tracked; None for
        not at all."""
        snapshot = self._snapshot
        if campaign:
            key = (tenant_id, campaign)
            if key in snapshot.campaigns:
                return snapshot.campaigns[key]
        return snapshot.tenants.get(tenant_id)

    def tenant_of(self, host: str) -> int | None:
        """The tenant whose tracking domain ``host`` is (any case, a final dot or a
        ``:port`` ignored); None when it is no tracking domain."""
        name = host.partition(":")[0].lower().rstrip(".")
        return self._snapshot.owners.get(name)

    def _tenant(self, name: str) -> TenantSettings:
        return self._settings.tenants.get(name, DEFAULT_TENANT)

    @staticmethod
    def _policy(
        domain: str | None, tenant: TenantSettings, campaign: CampaignSettings | None
    ) -> TrackingPolicy | None:
        if domain is None:
            return None
        own = campaign or INHERITING_CAMPAIGN
        opens = _switch(own.track_opens, tenant.track_opens)
        clicks = _switch(own.track_clicks, tenant.track_clicks)
        unsubscribe = _switch(own.track_unsubscribe, tenant.track_unsubscribe)
        if not (opens or clicks or unsubscribe):
            return None
        return TrackingPolicy(domain, opens=opens, clicks=clicks, unsubscribe=unsubscribe)

    def _report(self, unregistered: frozenset[tuple[str, str]]) -> None:
        """Log each campaign whose tracking domain is not its tenant's, once while it lasts."""
        for key, domain in sorted(unregistered - self._unregistered):
            log.warning(
                'campaigns."%s".tracking_domain: %s is not a tracking domain of the tenant; '
                "the campaign's mail goes out without tracking",
                key,
                domain,
            )
        self._unregistered = unregistered


def _switch(own: bool | None, inherited: bool) -> bool:
    return inherited if own is None else own
