"""Which DKIM key signs a message: the sending domain of its header From.

Sending domains are looked up in the store and cached for ``ttl_seconds``
(so a rotated selector is picked up without a restart); private keys are
unsealed and parsed once per (domain, selector) by ``engine.dkim.signer.KeyCache``.
"""

from __future__ import annotations

from engine.clock import Clock
from engine.dkim.keys import DkimPrivateKey
from engine.dkim.signer import KeyCache
from engine.model import SendingDomain
from engine.sealing import Sealer
from engine.store import Store

DOMAIN_CACHE_SECONDS = 60.0


class SigningKeys:
    def __init__(
        self, store: Store, sealer: Sealer, clock: Clock, ttl_seconds: float = DOMAIN_CACHE_SECONDS
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._ttl = ttl_seconds
        self._domains: dict[str, tuple[SendingDomain | None, float]] = {}
        self._keys = KeyCache(self._load_pem)

    async def domain(self, name: str) -> SendingDomain | None:
        """The sending domain ``name`` (cached), or None when it is not one."""
        name = name.lower().rstrip(".")
        now = self._clock.now()
        cached = self._domains.get(name)
        if cached is not None and cached[1] > now:
            return cached[0]
        domain = await self._store.get_domain(name)
        self._domains[name] = (domain, now + self._ttl)
        return domain

    def private_key(self, domain: SendingDomain) -> DkimPrivateKey:
        """The parsed private key of ``domain``'s current selector."""
        return self._keys.get(domain.name, domain.selector)

    def _load_pem(self, name: str, selector: str) -> bytes:
        cached = self._domains.get(name.lower())
        if cached is None or cached[0] is None or cached[0].selector.lower() != selector.lower():
            raise LookupError(f"no sealed key for {selector}._domainkey.{name}")
        return self._sealer.unseal(cached[0].private_key_sealed)
