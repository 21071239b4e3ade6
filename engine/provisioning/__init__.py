"""Provisioning: the tenants, their sending domains, tracking domains, SMTP users and
suppressions.

Owns one service, ``Provisioning``, that the ``penguin`` CLI uses now and the
admin API will use: creating, listing and removing tenants; adding, listing,
rotating and removing sending domains (a new DKIM key each time, its private
half sealed with the engine secret, and the DNS records to publish);
adding, listing and removing tracking domains and choosing a tenant's
default (with the CNAME to publish; ``tracking_domains`` holds the snapshot
delivery and the tracking edge read, ``tracking_refresh`` keeps it fresh);
setting a tenant's pool, priority and quotas over its ``[tenants.NAME]`` table
and showing them in force with today's count (``tenant_details``; running
engines read them through ``tracking_refresh.TenantSettingsRefresh``);
creating, listing and removing SMTP users (generated username and password,
stored as a scrypt hash); creating, listing, revoking and authenticating API
keys (``api_keys``: the token shown once, its secret stored as a SHA-256);
adding, listing (with filters), importing (CSV, ``suppression_csv``) and
removing suppressions; and verifying through DNS that a sending domain's
records are published (``verification``).

``operations.Operations`` is the operator's other service, behind the CLI and
the API alike: suspensions, queue inspection and requeue/delete, lanes and
sources as reported.

In: names as an operator or a tenant types them. Out: model values
(``engine.model``) and small result types; failures as the
``ProvisioningError`` tree of ``engine.provisioning.errors``, never a store
or key error.

May import ``config``, ``engine.model``, ``engine.store`` (the interface),
``engine.dkim_keys``, ``engine.sealing``, ``engine.passwords``,
``engine.queue_admin``, ``engine.settling``, ``engine.webhooks`` and
``engine.clock``; never an edge (``smtp_out``, ``admin_api``, ...) nor the
composition root (``engine.app``, ``engine.cli``).

Invariants:

- a DKIM private key is sealed before it reaches the store and is never
  returned; a password is returned once, by ``create_smtp_user``, and stored
  only as its hash; so is an API key's token, by ``create_api_key``; a
  webhook's signing secret is returned once, by ``webhooks.create``, and
  stored sealed with the engine secret;
- domain names are stored lower-case without a final dot, suppressed
  addresses lower-case; a domain or selector that cannot be published in DNS
  is refused before a key is made;
- a tracking domain belongs to one tenant, never lies under another tenant's
  sending domain, and a tenant has one default tracking domain at most;
- a tenant is removed only while it has no message to deliver (queued,
  being delivered or shunted); with ``force`` its queued and shunted
  messages are removed first, each with an AdminBounce record, as
  ``penguin queue delete`` does. Its records stay in the log.
"""

from engine.provisioning.api_keys import CACHE_SECONDS, KnownKey
from engine.provisioning.errors import (
    AlreadyExists,
    Invalid,
    ProvisioningError,
    SecretUnusable,
    StoreFailed,
    TenantHasMail,
    Unknown,
)
from engine.provisioning.operations import MessageDetails, Operations
from engine.provisioning.service import (
    DkimKeySpec,
    DomainRecords,
    NewApiKey,
    NewSmtpUser,
    Provisioning,
    SuppressionImport,
    TenantDetails,
    TenantRemoval,
    TrackingDomainRecords,
)
from engine.provisioning.tracking_domains import TrackingDomains
from engine.provisioning.tracking_refresh import (
    SnapshotRefresh,
    TenantSettingsRefresh,
    TrackingRefresh,
)

__all__ = [
    "CACHE_SECONDS",
    "AlreadyExists",
    "DkimKeySpec",
    "DomainRecords",
    "Invalid",
    "KnownKey",
    "MessageDetails",
    "NewApiKey",
    "NewSmtpUser",
    "Operations",
    "Provisioning",
    "ProvisioningError",
    "SecretUnusable",
    "SnapshotRefresh",
    "StoreFailed",
    "SuppressionImport",
    "TenantDetails",
    "TenantHasMail",
    "TenantRemoval",
    "TenantSettingsRefresh",
    "TrackingDomainRecords",
    "TrackingDomains",
    "TrackingRefresh",
    "Unknown",
]
