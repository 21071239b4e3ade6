"""The provisioning service: tenants, sending domains, tracking domains, SMTP users,
API keys, suppressions.

One ``Provisioning`` per store; it is stateless apart from the sealer it
makes the first time a key is sealed (so commands that seal nothing never
create the engine secret). Each method is one or a few store calls; their
errors are translated into ``engine.provisioning.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from config import Settings, is_host_name
from config.schema import TenantSettings
from engine.clock import Clock, SystemClock
from engine.delivery.queue_admin import REMOVABLE, removal_record
from engine.delivery.settling import RecordContext
from engine.dkim.keys import (
    RSA_DEFAULT_BITS,
    DkimKeyError,
    DkimKeyPair,
    DnsRecord,
    default_selector,
    dns_records,
    generate_key,
)
from engine.model import (
    EVERY_SUPPRESSION,
    ApiKey,
    ApiScope,
    SendingDomain,
    SmtpUser,
    Suppression,
    SuppressionFilter,
    Tenant,
    TenantOverrides,
    TrackingDomain,
)
from engine.provisioning.api_keys import (
    KeyCache,
    KnownKey,
    new_token,
    parse_token,
    proves,
    secret_hash,
)
from engine.provisioning.domain_cache import DomainCache
from engine.provisioning.errors import (
    AlreadyExists,
    Invalid,
    SecretUnusable,
    StoreFailed,
    TenantHasMail,
    Unknown,
    translated,
)
from engine.provisioning.suppression_csv import (
    BadRow,
    CsvHeaderError,
    address_problem,
    read_rows,
)
from engine.provisioning.verification import (
    DnsLookup,
    Expectations,
    VerificationReport,
    report,
)
from engine.provisioning.webhooks import WebhookRegistry
from engine.return_path import return_path_domain
from engine.scheduler.tenant_settings import (
    DEFAULT_TENANT,
    OVERRIDABLE,
    TenantQuotas,
    check_overrides,
    effective,
    quotas_of,
)
from engine.scheduler.warmup import SECONDS_PER_DAY, utc_day
from engine.sealing import Sealer, SecretFileError, load_or_create_secret, secret_path
from engine.store import InUse, Store
from engine.submission.passwords import generate_password, generate_username, hash_password

REMOVAL_PAGE = 1000
"""Messages removed per transaction when a tenant is removed with ``force``."""
IMPORT_BATCH = 1000
"""Suppressions inserted per transaction by an import."""
IMPORT_INVALID_SHOWN = 100
"""Refused rows an import reports (it counts them all)."""
IMPORT_REASON = "import"
"""The reason of an imported address whose row gives none."""
API_KEY_NAME_MAX = 200
PREFIX_ATTEMPTS = 5
"""New prefixes drawn for an API key before giving up (40 random bits: one is plenty)."""


@dataclass(frozen=True, slots=True)
class DkimKeySpec:
    """The DKIM key to make: ``rsa`` (of ``bits``) or ``ed25519``, published under
    ``selector`` (None: ``pm`` + the current year and month)."""

    algorithm: str = "rsa"
    bits: int = RSA_DEFAULT_BITS
    selector: str | None = None


@dataclass(frozen=True, slots=True)
class DomainRecords:
    """A sending domain and the DNS records to publish for it; after a rotation,
    the selector it signed with before."""

    domain: SendingDomain
    dns_records: list[DnsRecord]
    previous_selector: str | None = None


@dataclass(frozen=True, slots=True)
class TrackingDomainRecords:
    """A tracking domain and the DNS record to publish for it."""

    domain: TrackingDomain
    dns_records: list[DnsRecord]


@dataclass(frozen=True, slots=True)
class NewSmtpUser:
    """Credentials just made: the only time the password is known."""

    tenant: str
    username: str
    password: str = field(repr=False)


@dataclass(slots=True)
class SuppressionImport:
    """What an import did: addresses added, already suppressed (or repeated in the
    file), and refused, with the first refused rows."""

    added: int = 0
    duplicate: int = 0
    invalid: int = 0
    invalid_rows: list[BadRow] = field(default_factory=list)

    def refused(self, row: BadRow, keep: int) -> None:
        self.invalid += 1
        if len(self.invalid_rows) < keep:
            self.invalid_rows.append(row)


@dataclass(frozen=True, slots=True)
class TenantDetails:
    """A tenant, its settings in force (``[tenants.NAME]`` with the store's overrides),
    what the store overrides, and the messages (recipients) it had accepted since
    00:00 UTC when asked."""

    tenant: Tenant
    settings: TenantSettings
    overrides: TenantOverrides
    accepted_today: int

    @property
    def quotas(self) -> TenantQuotas:
        return quotas_of(self.settings)

    @property
    def overridden(self) -> list[str]:
        """The settings the store sets (the others are the config's)."""
        return [name for name in OVERRIDABLE if getattr(self.overrides, name) is not None]

    def to_json(self) -> dict[str, object]:
        """What ``penguin tenant show --json`` prints and the API's tenant carries."""
        return {
            "id": self.tenant.id,
            "name": self.tenant.name,
            "created_at": self.tenant.created_at,
            **{name: getattr(self.settings, name) for name in OVERRIDABLE},
            "overridden": self.overridden,
            "accepted_today": self.accepted_today,
        }


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """An API key just made: the only time its token is known."""

    key: ApiKey
    token: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class TenantRemoval:
    """A removed tenant, and the ids of its queued and shunted messages removed with it."""

    tenant: Tenant
    removed_messages: list[str]


class Provisioning:
    """Tenants and what they own, on ``store``.

    ``settings`` gives the engine's host name and the return-path prefix (in
    the DNS records) and the engine secret's file; ``sealer`` may be passed by
    a process that holds one already. ``nodeid`` names this node in the records of removed messages.
    API keys looked up by ``authenticate_api_key`` are cached (``api_keys.KeyCache``):
    a key revoked elsewhere stops working within ``api_keys.CACHE_SECONDS``; so are
    the domain names ``sending_domains`` reads (``domain_cache.DomainCache``).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        nodeid: str,
        sealer: Sealer | None = None,
        clock: Clock | None = None,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        self._store = store
        self._settings = settings
        self._nodeid = nodeid
        self._sealer = sealer
        self._clock = clock or SystemClock()
        self._random_bytes = random_bytes
        self._keys = KeyCache()
        self._domains = DomainCache()

    # Tenants.

    async def create_tenant(
        self, name: str, settings: Mapping[str, str | int | None] | None = None
    ) -> Tenant:
        """Create tenant ``name``, with ``settings`` (as ``set_tenant_settings`` takes them)
        stored for it; nothing is created when one of them is refused."""
        if not name.strip():
            raise Invalid("a tenant needs a name", field="name")
        if settings:
            self._overrides(name, TenantOverrides(0), settings)
        with translated(f"tenant {name!r}"):
            tenant = await self._store.create_tenant(name, self._clock.now())
        if settings:
            await self.set_tenant_settings(name, settings)
        return tenant

    async def list_tenants(self) -> list[Tenant]:
        with translated("tenants"):
            return await self._store.list_tenants()

    async def tenant(self, name: str) -> Tenant:
        with translated(f"tenant {name!r}"):
            tenant = await self._store.get_tenant(name)
        if tenant is None:
            raise Unknown(f"no tenant named {name!r}")
        return tenant

    async def tenant_details(self, name: str) -> TenantDetails:
        """Tenant ``name`` with its settings in force and today's count of messages."""
        tenant = await self.tenant(name)
        now = self._clock.now()
        with translated(f"tenant {name!r}"):
            stored = await self._store.get_tenant_overrides(tenant.id)
            accepted = await self._store.count_tenant_messages(
                tenant.id, utc_day(now) * SECONDS_PER_DAY
            )
        overrides = stored or TenantOverrides(tenant.id)
        config = self._settings.tenants.get(tenant.name, DEFAULT_TENANT)
        return TenantDetails(tenant, effective(config, overrides), overrides, accepted)

    async def set_tenant_settings(
        self, name: str, changes: Mapping[str, str | int | None]
    ) -> TenantDetails:
        """Set tenant ``name``'s ``changes`` (fields of ``OVERRIDABLE``) in the store; a
        None value clears the field, so the config's applies again. Running engines
        apply them within ``[scheduler] refresh_seconds``."""
        tenant = await self.tenant(name)
        with translated(f"tenant {name!r}"):
            current = await self._store.get_tenant_overrides(tenant.id)
        updated = self._overrides(name, current or TenantOverrides(tenant.id), changes)
        with translated(f"tenant {name!r}"):
            await self._store.put_tenant_overrides(updated)
        return await self.tenant_details(name)

    def _overrides(
        self, name: str, current: TenantOverrides, changes: Mapping[str, str | int | None]
    ) -> TenantOverrides:
        """``current`` with ``changes``, as of now; ``Invalid`` naming a refused field."""
        unknown = sorted(set(changes) - set(OVERRIDABLE))
        if unknown:
            raise Invalid(f"not a tenant setting: {unknown[0]!r}", field=unknown[0])
        fields: dict[str, Any] = dict(changes)
        updated = dataclasses.replace(current, **fields, updated_at=self._clock.now())
        problem = check_overrides(self._settings, updated)
        if problem is not None:
            field_name, text = problem
            raise Invalid(f"tenant {name!r}: {field_name}: {text}", field=field_name)
        return updated

    async def remove_tenant(self, name: str, *, force: bool = False) -> TenantRemoval:
        """Remove tenant ``name`` with its domains, SMTP users, suppressions and
        finished messages; ``TenantHasMail`` while it has messages to deliver.
        With ``force``, its queued and shunted messages are removed first."""
        tenant = await self.tenant(name)
        removed = await self._remove_pending(tenant) if force else []
        try:
            with translated(f"tenant {name!r}"):
                if not await self._store.remove_tenant(tenant.id):
                    raise Unknown(f"no tenant named {name!r}")
        except InUse as exc:
            message = _has_mail(name, exc.pending, removed, forced=force)
            raise TenantHasMail(message, pending=exc.pending, forced=force) from exc
        return TenantRemoval(tenant, removed)

    async def _remove_pending(self, tenant: Tenant) -> list[str]:
        """Remove the tenant's queued and shunted messages that exist now, a page at
        a time, with an AdminBounce record each; the ids removed.

        Every page removes at least one message accepted before the start, or ends
        the loop, so mail accepted meanwhile cannot keep it going.
        """
        started = self._clock.now()
        context = RecordContext(self._nodeid, tenant.name)
        removed: list[str] = []
        while True:
            with translated(f"tenant {tenant.name!r}"):
                listed = await self._store.tenant_messages_in(tenant.id, REMOVABLE, REMOVAL_PAGE)
                page = [m for m in listed if m.created_at <= started]
                now = self._clock.now()
                records = [removal_record(m, now=now, context=context) for m in page]
                done = await self._store.remove_messages([m.id for m in page], records)
            if not done:
                return removed
            removed += done

    # Sending domains.

    async def add_domain(
        self, tenant: str, domain: str, key: DkimKeySpec | None = None
    ) -> DomainRecords:
        """Add ``domain`` to ``tenant`` with a new DKIM key; the records to publish."""
        name = _domain_name(domain)
        owner = await self.tenant(tenant)
        spec = key or DkimKeySpec()
        keyed, records = self._keyed(owner.id, name, spec, self._selector(spec))
        with translated(f"domain {name!r}"):
            added = await self._store.add_domain(keyed)
        self._domains.forget(owner.id)
        return DomainRecords(added, records)

    async def list_domains(self, tenant: str) -> list[SendingDomain]:
        owner = await self.tenant(tenant)
        with translated(f"tenant {tenant!r}"):
            return await self._store.list_domains(owner.id)

    async def sending_domains(self, tenant: Tenant, including: str | None = None) -> frozenset[str]:
        """The names of ``tenant``'s sending domains, lower-cased, as acceptance checks
        them; cached, and read again when the cached ones lack ``including``. The store's
        errors pass untranslated (``StoreError``)."""
        now = self._clock.now()
        cached = self._domains.get(tenant.id, now, including)
        if cached is not None:
            return cached
        listed = await self._store.list_domains(tenant.id)
        domains = frozenset(d.name.lower() for d in listed)
        self._domains.put(tenant.id, domains, now)
        return domains

    async def domain(self, domain: str, *, tenant: str | None = None) -> SendingDomain:
        """The sending domain ``domain``; with ``tenant``, only if it is that tenant's
        (another tenant's is ``Unknown`` as if it did not exist)."""
        name = _domain_name(domain)
        owner = await self._tenant_id(tenant)
        with translated(f"domain {name!r}"):
            found = await self._store.get_domain(name, owner)
        if found is None:
            raise Unknown(f"no sending domain {name!r}")
        return found

    async def domain_records(self, domain: str, *, tenant: str | None = None) -> DomainRecords:
        """The DNS records to publish for ``domain``'s current key."""
        found = await self.domain(domain, tenant=tenant)
        return DomainRecords(found, self._records(found.name, found.selector, found))

    async def verify_domain(
        self, domain: str, dns: DnsLookup, *, tenant: str | None = None
    ) -> VerificationReport:
        """Check through ``dns`` that ``domain``'s records are published: its SPF, DKIM
        key, DMARC policy, return-path MX and SPF, and its tenant's tracking CNAMEs."""
        records = await self.domain_records(domain, tenant=tenant)
        with translated(f"domain {records.domain.name!r}"):
            tracking = await self._store.list_tracking_domains(records.domain.tenant_id)
        cnames = [r for t in tracking for r in self._tracking_records(t.name)]
        expectations = Expectations(records.domain.name, records.dns_records, cnames)
        wanted = expectations.lookups()
        answers = await asyncio.gather(*(dns.lookup(name, rdtype) for name, rdtype in wanted))
        return report(expectations, dict(zip(wanted, answers, strict=True)))

    async def rotate_domain(
        self, domain: str, key: DkimKeySpec | None = None, *, tenant: str | None = None
    ) -> DomainRecords:
        """Give ``domain`` a new DKIM key under a new selector; engines sign with it
        once their cache of the domain expires (``engine.domain_keys``)."""
        current = await self.domain(domain, tenant=tenant)
        spec = key or DkimKeySpec()
        selector = self._selector(spec)
        if selector == current.selector:
            raise Invalid(f"selector {selector!r} is in use; choose another")
        keyed, records = self._keyed(current.tenant_id, current.name, spec, selector)
        with translated(f"domain {current.name!r}"):
            if not await self._store.rotate_domain_key(keyed):
                raise Unknown(f"no sending domain {current.name!r}")
        return DomainRecords(keyed, records, previous_selector=current.selector)

    async def remove_domain(self, domain: str, *, tenant: str | None = None) -> SendingDomain:
        """Remove ``domain`` and its key; the domain as it was."""
        found = await self.domain(domain, tenant=tenant)
        with translated(f"domain {found.name!r}"):
            if not await self._store.remove_domain(found.name, found.tenant_id):
                raise Unknown(f"no sending domain {found.name!r}")
        self._domains.forget(found.tenant_id)
        return found

    async def _tenant_id(self, tenant: str | None) -> int | None:
        """The id of ``tenant`` (None for None: acting for no tenant in particular)."""
        return None if tenant is None else (await self.tenant(tenant)).id

    def _selector(self, spec: DkimKeySpec) -> str:
        return spec.selector or default_selector(self._clock.now())

    def _keyed(
        self, tenant_id: int, name: str, spec: DkimKeySpec, selector: str
    ) -> tuple[SendingDomain, list[DnsRecord]]:
        """``name`` with a new key pair under ``selector``, its private half sealed,
        and its DNS records."""
        self._records(name, selector, (spec.algorithm, ""))  # refuses bad names before keygen
        try:
            key = generate_key(spec.algorithm, spec.bits)
        except DkimKeyError as exc:
            raise Invalid(str(exc)) from exc
        domain = SendingDomain(
            tenant_id=tenant_id,
            name=name,
            selector=selector,
            algorithm=key.algorithm,
            private_key_sealed=self._sealing().seal(key.private_pem),
            public_key_b64=key.public_b64,
            created_at=self._clock.now(),
        )
        return domain, self._records(name, selector, key)

    def _records(
        self, name: str, selector: str, key: SendingDomain | DkimKeyPair | tuple[str, str]
    ) -> list[DnsRecord]:
        if isinstance(key, SendingDomain):
            key = (key.algorithm, key.public_key_b64)
        try:
            return dns_records(
                name,
                selector,
                key,
                return_path_domain=return_path_domain(
                    self._settings.bounce.return_path_prefix, name
                ),
                engine_hostname=self._settings.engine.hostname,
            )
        except ValueError as exc:
            raise Invalid(f"domain {name!r}, selector {selector!r}: {exc}") from exc

    @property
    def webhooks(self) -> WebhookRegistry:
        """The tenants' webhooks (``engine.provisioning.webhooks``)."""
        return WebhookRegistry(self._store, self._settings, self._sealing, self._clock)

    def _sealing(self) -> Sealer:
        if self._sealer is None:
            path = secret_path(self._settings.engine)
            try:
                self._sealer = Sealer(load_or_create_secret(path))
            except (SecretFileError, OSError) as exc:
                raise SecretUnusable(f"engine secret {path}: {exc}") from exc
        return self._sealer

    # Tracking domains.

    async def add_tracking_domain(
        self, tenant: str, domain: str, *, default: bool = False
    ) -> TrackingDomainRecords:
        """Register ``domain`` for ``tenant`` (as its default with ``default``); the CNAME
        to publish. Refused when it is not a host name, or is another tenant's, or lies
        under another tenant's sending domain."""
        name = self._tracking_name(domain)
        owner = await self.tenant(tenant)
        await self._check_unclaimed(name, owner)
        added = TrackingDomain(owner.id, name, default, self._clock.now())
        with translated(f"tracking domain {name!r}"):
            added = await self._store.add_tracking_domain(added)
        return TrackingDomainRecords(added, self._tracking_records(name))

    async def list_tracking_domains(self, tenant: str) -> list[TrackingDomain]:
        owner = await self.tenant(tenant)
        with translated(f"tenant {tenant!r}"):
            return await self._store.list_tracking_domains(owner.id)

    async def tracking_domain(
        self, domain: str, *, tenant: str | None = None
    ) -> TrackingDomainRecords:
        """The tracking domain ``domain`` and the CNAME to publish for it; with ``tenant``,
        only if it is that tenant's."""
        name = _domain_name(domain)
        owner = await self._tenant_id(tenant)
        with translated(f"tracking domain {name!r}"):
            found = await self._store.get_tracking_domain(name, owner)
        if found is None:
            raise Unknown(f"no tracking domain {name!r}")
        return TrackingDomainRecords(found, self._tracking_records(name))

    async def set_default_tracking_domain(self, tenant: str, domain: str) -> TrackingDomain:
        """Make ``domain``, one of ``tenant``'s, the tracking domain of its mail (where a
        campaign names none)."""
        owner = await self.tenant(tenant)
        found = (await self.tracking_domain(domain)).domain
        if found.tenant_id != owner.id:
            raise Invalid(f"{found.name!r} is not a tracking domain of tenant {owner.name!r}")
        with translated(f"tracking domain {found.name!r}"):
            if not await self._store.set_default_tracking_domain(found.name):
                raise Unknown(f"no tracking domain {found.name!r}")
        return TrackingDomain(owner.id, found.name, True, found.created_at, found.id)

    async def remove_tracking_domain(
        self, domain: str, *, tenant: str | None = None
    ) -> TrackingDomain:
        """Remove ``domain``; the domain as it was. Links already sent on it stop working
        once the edges refresh (``[tracking] refresh_seconds``)."""
        found = (await self.tracking_domain(domain, tenant=tenant)).domain
        with translated(f"tracking domain {found.name!r}"):
            if not await self._store.remove_tracking_domain(found.name, found.tenant_id):
                raise Unknown(f"no tracking domain {found.name!r}")
        return found

    def _tracking_name(self, domain: str) -> str:
        name = _domain_name(domain)
        if not is_host_name(name) or "." not in name:
            raise Invalid(f"{name!r} is not a host name with a domain (e.g. click.acme.example)")
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(name)
            raise Invalid(f"{name!r} is an IP address, not a host name")
        if name == self._cname_target():
            raise Invalid(f"{name!r} is the CNAME target ([tracking] cname_target) itself")
        return name

    async def _check_unclaimed(self, name: str, owner: Tenant) -> None:
        """``name`` is no other tenant's tracking domain, sending domain or subdomain of one."""
        with translated(f"tracking domain {name!r}"):
            tracking = await self._store.get_tracking_domain(name)
            labels = name.split(".")
            parents = [".".join(labels[i:]) for i in range(len(labels) - 1)]
            sending = [d for d in [await self._store.get_domain(p) for p in parents] if d]
        if tracking is not None:
            whose = "this tenant" if tracking.tenant_id == owner.id else "another tenant"
            raise AlreadyExists(f"tracking domain {name!r} exists (registered for {whose})")
        for found in sending:
            if found.tenant_id != owner.id:
                raise Invalid(
                    f"{name!r} is under {found.name!r}, a sending domain of another tenant"
                )

    def _cname_target(self) -> str:
        return (self._settings.tracking.cname_target or self._settings.engine.hostname).lower()

    def _tracking_records(self, name: str) -> list[DnsRecord]:
        target = self._cname_target().rstrip(".")
        purpose = "tracking domain: its links, open pixels and unsubscribes go to the edge"
        return [DnsRecord(name, "CNAME", f"{target}.", purpose)]

    # SMTP users.

    async def create_smtp_user(self, tenant: str) -> NewSmtpUser:
        """New credentials for ``tenant``: a generated username and password."""
        owner = await self.tenant(tenant)
        username, password = generate_username(owner.name), generate_password()
        user = SmtpUser(owner.id, username, hash_password(password), self._clock.now())
        with translated(f"SMTP user {username!r}"):
            await self._store.add_smtp_user(user)
        return NewSmtpUser(owner.name, username, password)

    async def list_smtp_users(self, tenant: str) -> list[SmtpUser]:
        owner = await self.tenant(tenant)
        with translated(f"tenant {tenant!r}"):
            return await self._store.list_smtp_users(owner.id)

    async def remove_smtp_user(self, username: str, *, tenant: str | None = None) -> None:
        """Remove ``username`` (with ``tenant``, only if it is that tenant's); a running
        engine refuses it within a minute (``engine.submission.CREDENTIAL_CACHE_SECONDS``)."""
        owner = await self._tenant_id(tenant)
        with translated(f"SMTP user {username!r}"):
            if not await self._store.remove_smtp_user(username, owner):
                raise Unknown(f"no SMTP user {username!r}")

    # Suppressions.

    async def add_suppression(self, tenant: str, address: str, reason: str) -> Suppression:
        """Suppress ``address`` for ``tenant`` (again, with this reason, if it was)."""
        owner = await self.tenant(tenant)
        suppression = Suppression(owner.id, _address(address), reason, self._clock.now())
        with translated(f"suppression of {suppression.address!r}"):
            await self._store.add_suppression(suppression)
        return suppression

    async def list_suppressions(
        self,
        tenant: str,
        *,
        after: str = "",
        limit: int = 1000,
        where: SuppressionFilter = EVERY_SUPPRESSION,
    ) -> list[Suppression]:
        """Up to ``limit`` of ``tenant``'s suppressions matching ``where``, by address,
        from after ``after``."""
        owner = await self.tenant(tenant)
        with translated(f"tenant {tenant!r}"):
            return await self._store.list_suppressions(owner.id, after.lower(), limit, where)

    async def add_suppressions(
        self, tenant: str, addresses: Sequence[tuple[str, str]]
    ) -> SuppressionImport:
        """Suppress each (address, reason) for ``tenant`` in one transaction; an address
        already suppressed keeps its reason. ``Invalid`` naming the first bad address
        (by its index), storing nothing. The counts added and already suppressed."""
        owner = await self.tenant(tenant)
        now = self._clock.now()
        wanted: dict[str, Suppression] = {}
        for index, (address, reason) in enumerate(addresses):
            cleaned = address.strip().lower()
            problem = address_problem(cleaned)
            if problem is not None:
                raise Invalid(f"[{index}] {address!r}: {problem}")
            wanted.setdefault(cleaned, Suppression(owner.id, cleaned, reason, now))
        counts = SuppressionImport(duplicate=len(addresses) - len(wanted))
        await self._add_new(wanted, counts)
        return counts

    async def import_suppressions(
        self,
        tenant: str,
        lines: Iterable[str],
        *,
        reason: str = IMPORT_REASON,
        batch: int = IMPORT_BATCH,
        keep_invalid: int = IMPORT_INVALID_SHOWN,
    ) -> SuppressionImport:
        """Suppress the addresses of a CSV (``engine.provisioning.suppression_csv``) for
        ``tenant``, ``batch`` rows per transaction, reading ``lines`` as it goes; the
        counts, and the first ``keep_invalid`` rows refused. ``Invalid`` when the header
        names no address column."""
        owner = await self.tenant(tenant)
        counts = SuppressionImport()
        pending: dict[str, Suppression] = {}
        try:
            for row in read_rows(lines, reason):
                if isinstance(row, BadRow):
                    counts.refused(row, keep_invalid)
                elif row.address in pending:
                    counts.duplicate += 1
                else:
                    now = self._clock.now()
                    pending[row.address] = Suppression(owner.id, row.address, row.reason, now)
                    if len(pending) >= batch:
                        await self._add_new(pending, counts)
        except CsvHeaderError as exc:
            raise Invalid(str(exc)) from exc
        await self._add_new(pending, counts)
        return counts

    async def _add_new(self, pending: dict[str, Suppression], counts: SuppressionImport) -> None:
        if not pending:
            return
        with translated("suppressions"):
            added = await self._store.add_new_suppressions(list(pending.values()))
        counts.added += added
        counts.duplicate += len(pending) - added
        pending.clear()

    async def remove_suppression(self, tenant: str, address: str) -> None:
        owner = await self.tenant(tenant)
        wanted = _address(address)
        with translated(f"suppression of {wanted!r}"):
            if not await self._store.remove_suppression(owner.id, wanted):
                raise Unknown(f"{wanted!r} is not suppressed for tenant {tenant!r}")

    # API keys.

    async def create_api_key(
        self, tenant: str, scopes: Collection[ApiScope], name: str = ""
    ) -> NewApiKey:
        """A new key for ``tenant`` with ``scopes``; its token is in the result only."""
        owner = await self.tenant(tenant)
        if not scopes:
            raise Invalid("an API key needs at least one scope (send, read, manage)")
        label = name.strip()
        if len(label) > API_KEY_NAME_MAX:
            raise Invalid(f"an API key name has at most {API_KEY_NAME_MAX} characters")
        for _ in range(PREFIX_ATTEMPTS):
            token = new_token(self._random_bytes)
            key = ApiKey(
                tenant_id=owner.id,
                prefix=token.prefix,
                name=label,
                scopes=frozenset(scopes),
                secret_hash=secret_hash(token.secret),
                created_at=self._clock.now(),
            )
            try:
                with translated(f"API key {token.prefix!r}"):
                    return NewApiKey(await self._store.add_api_key(key), token.text)
            except AlreadyExists:
                continue
        raise StoreFailed(f"no free API key prefix in {PREFIX_ATTEMPTS} attempts")

    async def list_api_keys(self, tenant: str) -> list[ApiKey]:
        """``tenant``'s keys, revoked ones too, oldest first."""
        owner = await self.tenant(tenant)
        with translated(f"tenant {tenant!r}"):
            return await self._store.list_api_keys(owner.id)

    async def revoke_api_key(self, prefix: str, *, tenant: str | None = None) -> ApiKey:
        """Revoke the key of ``prefix`` (one of ``tenant``'s when given: another tenant's
        is ``Unknown``); the key as revoked. Other processes refuse it within
        ``api_keys.CACHE_SECONDS``."""
        owner = None if tenant is None else await self.tenant(tenant)
        wanted = prefix.strip().lower()
        with translated(f"API key {wanted!r}"):
            key = await self._store.revoke_api_key(
                wanted, self._clock.now(), None if owner is None else owner.id
            )
        if key is None:
            raise Unknown(f"no API key {wanted!r}")
        self._keys.forget(key.prefix)
        return key

    async def authenticate_api_key(self, token: str) -> KnownKey | None:
        """The key ``token`` proves, with its tenant; None for a token not shaped like
        one, of no key, with a wrong secret, or of a revoked key."""
        parsed = parse_token(token)
        if parsed is None:
            return None
        now = self._clock.now()
        known = self._keys.get(parsed.prefix, now)
        if known is None:
            with translated("API key"):
                key = await self._store.get_api_key(parsed.prefix)
                owner = None if key is None else await self._store.get_tenant_by_id(key.tenant_id)
            if key is None or owner is None:
                return None
            known = KnownKey(key, owner)
            self._keys.put(known, now)
        return known if proves(known.key, parsed) else None


def _domain_name(domain: str) -> str:
    return domain.strip().lower().rstrip(".")


def _address(address: str) -> str:
    wanted = address.strip().lower()
    if not wanted:
        raise Invalid("an address is needed")
    return wanted


def _has_mail(name: str, pending: int, removed: list[str], *, forced: bool) -> str:
    if forced:
        return (
            f"tenant {name!r}: removed {len(removed)} queued or shunted messages, but "
            f"{pending} are being delivered; try again once their attempts have ended"
        )
    return f"tenant {name!r} still has {pending} messages queued, being delivered or shunted"
