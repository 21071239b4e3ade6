"""The delivery limits of a site: the ``[delivery]`` ones, or a matching override's.

Owns ``site_limits``, the pure matcher, and ``SitePolicy``, which applies it
to the site names the connection pool works with (``smtp_out.site``).

In: the MX host names of a site, the overrides of ``[providers.NAME]``
(``config.ProviderSettings``; a *provider* as in KumoMTA's traffic shaping,
https://docs.kumomta.com/userguide/configuration/trafficshaping/) and the limits
that apply when nothing matches. Out: a ``SiteLimits``.

Rules:

- An override matches when one of the site's MX hosts ends with one of its
  ``mx_suffixes`` on a label boundary, in any case and with or without
  trailing dots: ``.google.com`` and ``google.com`` both match
  ``aspmx.l.google.com`` and ``google.com`` but not ``notgoogle.com``.
- When several overrides match, the one with the longest matching suffix
  wins; on a tie, the first in the mapping (the shipped ones come first).
- Each field of the winner replaces the default unless it is 0 or empty
  ("inherit").

Invariant: pure; the result depends only on the set of host names, not on
their order, case or repetition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from config.schema import ProviderSettings
from smtp_out.settings import TlsMode
from smtp_out.site import canonical_host, site_hosts


@dataclass(frozen=True, slots=True)
class SiteLimits:
    """What a lane (source x site) may do: per-connection, concurrency and TLS."""

    max_deliveries_per_connection: int
    connection_limit: int
    tls: TlsMode
    override: str | None = None
    """The name of the matching ``[providers.NAME]`` table, None for the defaults."""


def site_limits(
    hosts: Iterable[str], overrides: Mapping[str, ProviderSettings], defaults: SiteLimits
) -> SiteLimits:
    """The limits of the site whose MX hosts are ``hosts`` (see the module docstring)."""
    labels = {"." + canonical_host(host) for host in hosts}
    best: tuple[str, ProviderSettings] | None = None
    best_length = 0
    for name, site in overrides.items():
        for suffix in site.mx_suffixes:
            dotted = "." + canonical_host(suffix).lstrip(".")
            if dotted == "." or len(dotted) <= best_length:
                continue
            if any(label.endswith(dotted) for label in labels):
                best, best_length = (name, site), len(dotted)
    if best is None:
        return defaults
    name, site = best
    return SiteLimits(
        max_deliveries_per_connection=site.max_deliveries_per_connection
        or defaults.max_deliveries_per_connection,
        connection_limit=site.connection_limit or defaults.connection_limit,
        tls=TlsMode(site.tls) if site.tls else defaults.tls,
        override=name,
    )


class SitePolicy:
    """``site_limits`` for the sites of the pool, named as ``smtp_out.site`` names them."""

    def __init__(
        self,
        defaults: SiteLimits,
        overrides: Mapping[str, ProviderSettings],
        max_cached: int = 100_000,
    ) -> None:
        self.defaults = defaults
        self._overrides = dict(overrides)
        self._max_cached = max_cached
        self._cached: dict[str, SiteLimits] = {}

    def limits(self, site: str) -> SiteLimits:
        """The site's limits, worked out once per site (the settings do not change)."""
        found = self._cached.get(site)
        if found is None:
            found = site_limits(site_hosts(site), self._overrides, self.defaults)
            if len(self._cached) >= self._max_cached:
                self._cached.clear()
            self._cached[site] = found
        return found
