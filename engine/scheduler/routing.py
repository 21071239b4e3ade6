"""Routing of a tenant's mail: the pool it goes out from and its priority. Pure.

In: the settings (``[tenants.NAME]``, ``[campaigns."TENANT:CAMPAIGN"]``, both
checked against ``[pools]`` when loaded, with the campaigns created through the
API merged in by ``campaign_tables``), a tenant name, a campaign name
(``""`` for none) and, for the priority, the message's ``X-Priority-Class``
header value. Out: a pool name, a priority 0..9 (9 goes first in its queue).

Rules: a campaign's setting wins over its tenant's, an empty one inherits;
a tenant without a table gets the defaults (pool ``default``, priority
``normal``). A header naming a priority (``bulk`` 0, ``normal`` 5,
``transactional`` 9, or a digit 0..9) wins over both; an unreadable header is
ignored (the default applies) rather than refused: the message is still good
mail, and a typo in it should not bounce it.

A campaign created through the API (``engine.model.CampaignRoute``) and a
``[campaigns."TENANT:CAMPAIGN"]`` table of the same name are one campaign: the
pool or tracking domain the API's campaign sets wins, one it leaves unset is
the table's (the tenant's word on its own campaign, as the store's tenant
settings win over the config's); the table's switches and priority stay. A
stored pool no longer in ``[pools]`` is ignored (the campaign inherits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from config.schema import CampaignSettings, Settings, TenantSettings, priority_value
from engine.model import CampaignRoute

DEFAULT_TENANT = TenantSettings()
INHERITING_CAMPAIGN = CampaignSettings()


def campaign_tables(
    settings: Settings, tenants: Mapping[int, str], routes: Iterable[CampaignRoute]
) -> dict[str, CampaignSettings]:
    """The config's ``[campaigns]`` tables with the ``routes`` of the campaigns of
    ``tenants`` (id -> name) merged in (see the module for the precedence)."""
    tables = dict(settings.campaigns)
    for route in routes:
        tenant = tenants.get(route.tenant_id)
        if tenant is None:
            continue
        key = f"{tenant}:{route.name}"
        table = tables.get(key, INHERITING_CAMPAIGN)
        pool = route.pool if route.pool in settings.pools else None
        tables[key] = dataclasses.replace(
            table,
            pool=pool or table.pool,
            tracking_domain=route.tracking_domain or table.tracking_domain,
        )
    return tables


def pool_of(settings: Settings, tenant: str, campaign: str) -> str:
    """The egress pool of ``tenant``'s mail in ``campaign``."""
    chosen = settings.campaigns.get(f"{tenant}:{campaign}") if campaign else None
    if chosen is not None and chosen.pool:
        return chosen.pool
    return settings.tenants.get(tenant, DEFAULT_TENANT).pool


def tenant_sources(settings: Settings, tenant: str) -> frozenset[str]:
    """The sources ``tenant``'s mail may go out from: those of its pool and of its
    campaigns' pools (``settings.campaigns`` with the stored ones merged in by
    ``campaign_tables``)."""
    prefix = f"{tenant}:"
    campaigns = [key.removeprefix(prefix) for key in settings.campaigns if key.startswith(prefix)]
    pools = {pool_of(settings, tenant, campaign) for campaign in ["", *campaigns]}
    return frozenset(
        source
        for pool in pools
        if pool in settings.pools
        for source in settings.pools[pool].sources
    )


def priority_of(settings: Settings, tenant: str, campaign: str, header_value: str | None) -> int:
    """The priority of a message of ``tenant`` in ``campaign`` with that header value."""
    if header_value is not None:
        asked = priority_value(header_value)
        if asked is not None:
            return asked
    chosen = settings.campaigns.get(f"{tenant}:{campaign}") if campaign else None
    if chosen is not None and chosen.priority:
        text = chosen.priority
    else:
        text = settings.tenants.get(tenant, DEFAULT_TENANT).priority
    value = priority_value(text)
    if value is None:
        raise ValueError(f"not a priority: {text!r} (settings are checked when loaded)")
    return value
