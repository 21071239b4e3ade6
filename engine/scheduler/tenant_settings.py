"""Tenants' settings in force: their ``[tenants.NAME]`` tables with the store's overrides.

An operator sets a tenant's pool, priority, daily quota and rate quota with
``penguin tenant set`` or the API; the store keeps them
(``engine.model.TenantOverrides``) and a value set there wins over the
config's, an unset one (None) leaves it. ``TenantSettingsBook`` holds a
snapshot of every tenant's effective settings that delivery (the pool) and
acceptance (the priority, the quotas) read from memory, never per message
from the store; ``engine.provisioning.tracking_refresh.SnapshotRefresh``
loads it again every ``[scheduler] refresh_seconds`` and on ``reload``.

``effective`` (the merge) and ``check_overrides`` (what may be stored) are pure.

The book also holds the campaigns created through the API that set a pool
(``Store.campaign_routes``), merged into ``routing``'s ``[campaigns]`` tables by
``engine.scheduler.routing.campaign_tables`` (the stored pool wins).

Invariants: the book's ``routing`` settings are the config's with the tenants'
and the campaigns' tables replaced, nothing else; until its first load, the book answers the
config's values; a rate quota in the book is a valid throttle spec (the config's
are checked at start, ``config_quota_problem``; the stored ones when set).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from config.schema import Settings, TenantSettings, priority_value
from engine.limits.throttle import ThrottleSpec
from engine.model import CampaignRoute, Tenant, TenantOverrides
from engine.scheduler.routing import campaign_tables
from engine.store import Store

DEFAULT_TENANT = TenantSettings()
OVERRIDABLE = ("pool", "priority", "daily_quota", "rate_quota")
"""The fields of ``[tenants.NAME]`` an operator may set in the store."""


@dataclass(frozen=True, slots=True)
class TenantQuotas:
    """A tenant's quotas in force: messages per UTC day (0: none) and its rate (None: none)."""

    daily: int = 0
    rate: ThrottleSpec | None = None

    @property
    def limited(self) -> bool:
        return self.daily > 0 or self.rate is not None


NO_QUOTAS = TenantQuotas()


def effective(config: TenantSettings, overrides: TenantOverrides | None) -> TenantSettings:
    """``config`` with the values ``overrides`` sets (not None) in its place."""
    if overrides is None:
        return config
    changes = {
        name: getattr(overrides, name)
        for name in OVERRIDABLE
        if getattr(overrides, name) is not None
    }
    return dataclasses.replace(config, **changes) if changes else config


def pool_problem(settings: Settings, pool: str) -> str | None:
    """Why ``pool`` cannot be chosen (it is none of ``[pools]``); None when it can."""
    if pool in settings.pools:
        return None
    return f"unknown pool {pool!r} (configured: {', '.join(sorted(settings.pools))})"


def check_overrides(settings: Settings, overrides: TenantOverrides) -> tuple[str, str] | None:
    """The first field of ``overrides`` that cannot be stored, and why; None when all can.

    The pool must be one of ``[pools]``; the priority bulk, normal, transactional or
    a digit; the daily quota at least 0; the rate quota empty or a throttle spec."""
    if overrides.pool is not None and (problem := pool_problem(settings, overrides.pool)):
        return "pool", problem
    if overrides.priority is not None and priority_value(overrides.priority) is None:
        problem = (
            f"expected bulk, normal, transactional or a digit 0..9, got {overrides.priority!r}"
        )
        return "priority", problem
    if overrides.daily_quota is not None and overrides.daily_quota < 0:
        return "daily_quota", f"expected 0 (no quota) or more, got {overrides.daily_quota}"
    if overrides.rate_quota:
        try:
            ThrottleSpec.parse(overrides.rate_quota)
        except ValueError as exc:
            return "rate_quota", str(exc)
    return None


def config_quota_problem(settings: Settings) -> tuple[str, str] | None:
    """The first ``tenants.NAME.rate_quota`` key of the config that is no throttle spec."""
    for name, tenant in settings.tenants.items():
        if tenant.rate_quota:
            try:
                ThrottleSpec.parse(tenant.rate_quota)
            except ValueError as exc:
                return f"tenants.{name}.rate_quota", str(exc)
    return None


def quotas_of(tenant: TenantSettings) -> TenantQuotas:
    """The quotas of a tenant's effective settings (its rate quota a valid spec)."""
    rate = ThrottleSpec.parse(tenant.rate_quota) if tenant.rate_quota else None
    return TenantQuotas(tenant.daily_quota, rate) if tenant.daily_quota or rate else NO_QUOTAS


class TenantSettingsBook:
    """Every tenant's effective settings as of the last ``refresh`` or ``load``."""

    def __init__(self, settings: Settings) -> None:
        problem = config_quota_problem(settings)
        if problem is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        self._settings = settings
        self.routing = settings
        """The settings with every tenant's table in force: what routing reads."""
        self._overrides: dict[str, TenantOverrides] = {}
        self._quotas = {name: quotas_of(t) for name, t in settings.tenants.items()}
        self.loads = 0
        """Snapshots loaded so far."""

    async def refresh(self, store: Store) -> None:
        """Load a new snapshot from ``store``; its errors (``StoreError``) propagate and
        the snapshot in use stays."""
        tenants = await store.list_tenants()
        self.load(tenants, await store.list_tenant_overrides(), await store.campaign_routes())

    def load(
        self,
        tenants: Iterable[Tenant],
        overrides: Iterable[TenantOverrides],
        routes: Iterable[CampaignRoute] = (),
    ) -> None:
        """Replace the snapshot with ``tenants``, their ``overrides`` and their stored
        campaigns' ``routes``."""
        names = {t.id: t.name for t in tenants}
        stored = {names[o.tenant_id]: o for o in overrides if o.tenant_id in names}
        tables = dict(self._settings.tenants)
        for name, o in stored.items():
            tables[name] = effective(tables.get(name, DEFAULT_TENANT), o)
        self._quotas = {name: quotas_of(t) for name, t in tables.items()}
        self._overrides = stored
        campaigns = campaign_tables(self._settings, names, routes)
        self.routing = dataclasses.replace(self._settings, tenants=tables, campaigns=campaigns)
        self.loads += 1

    def tenant(self, name: str) -> TenantSettings:
        """Tenant ``name``'s settings in force."""
        return self.routing.tenants.get(name, DEFAULT_TENANT)

    def quotas(self, name: str) -> TenantQuotas:
        """Tenant ``name``'s quotas in force."""
        return self._quotas.get(name, NO_QUOTAS)

    def overrides(self, name: str) -> TenantOverrides | None:
        """What the store sets for tenant ``name``, as of the last load."""
        return self._overrides.get(name)
