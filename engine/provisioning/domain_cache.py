"""The short cache of tenants' sending domains, for the acceptance checks of HTTP requests.

Each tenant's set of domain names (lower-cased) is trusted for
``CACHE_SECONDS`` after it was read, as API keys are (``api_keys.KeyCache``);
``Provisioning`` forgets a tenant's set when it adds or removes one of its
domains, and reads it again whenever a request's sender is on a domain the
set lacks, so a domain added in another process is usable at once and one
removed there is refused within ``CACHE_SECONDS``.

Pure: time is passed in.
"""

from __future__ import annotations

from engine.provisioning.api_keys import CACHE_MAX_KEYS, CACHE_SECONDS


class DomainCache:
    """Sending domain names by tenant id, each set trusted for ``seconds``."""

    def __init__(self, seconds: float = CACHE_SECONDS, max_tenants: int = CACHE_MAX_KEYS) -> None:
        self._seconds = seconds
        self._max_tenants = max_tenants
        self._known: dict[int, tuple[frozenset[str], float]] = {}

    def get(
        self, tenant_id: int, now: float, including: str | None = None
    ) -> frozenset[str] | None:
        """The tenant's domains if read less than ``seconds`` before ``now`` and, with
        ``including``, holding that domain; else None (read them again)."""
        entry = self._known.get(tenant_id)
        if entry is None or entry[1] <= now:
            return None
        domains = entry[0]
        if including is not None and including not in domains:
            return None
        return domains

    def put(self, tenant_id: int, domains: frozenset[str], now: float) -> None:
        if len(self._known) >= self._max_tenants:
            self._known.clear()
        self._known[tenant_id] = (domains, now + self._seconds)

    def forget(self, tenant_id: int) -> None:
        self._known.pop(tenant_id, None)
