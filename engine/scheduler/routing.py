"""Routing of a tenant's mail: the pool it goes out from and its priority. Pure.

In: the settings (``[tenants.NAME]``, ``[campaigns."TENANT:CAMPAIGN"]``, both
checked against ``[pools]`` when loaded), a tenant name, a campaign name
(``""`` for none) and, for the priority, the message's ``X-Priority-Class``
header value. Out: a pool name, a priority 0..9 (9 goes first in its queue).

Rules: a campaign's setting wins over its tenant's, an empty one inherits;
a tenant without a table gets the defaults (pool ``default``, priority
``normal``). A header naming a priority (``bulk`` 0, ``normal`` 5,
``transactional`` 9, or a digit 0..9) wins over both; an unreadable header is
ignored (the default applies) rather than refused: the message is still good
mail, and a typo in it should not bounce it.
"""

from __future__ import annotations

from config.schema import Settings, TenantSettings, priority_value

DEFAULT_TENANT = TenantSettings()


def pool_of(settings: Settings, tenant: str, campaign: str) -> str:
    """The egress pool of ``tenant``'s mail in ``campaign``."""
    chosen = settings.campaigns.get(f"{tenant}:{campaign}") if campaign else None
    if chosen is not None and chosen.pool:
        return chosen.pool
    return settings.tenants.get(tenant, DEFAULT_TENANT).pool


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
