"""The errors of provisioning: one tree, store and key errors translated at the boundary.

::

    ProvisioningError
     ├── Unknown          (no tenant, sending domain, SMTP user or suppression of that name)
     ├── AlreadyExists    (a tenant, sending domain or SMTP user of that name exists)
     ├── Invalid          (a value that cannot be used: a domain or selector not valid
     │                     in DNS, an RSA key size out of range, a selector in use)
     ├── TenantHasMail    (the tenant to remove still has messages to deliver)
     ├── SecretUnusable   (the engine secret that seals DKIM keys cannot be read or made)
     └── StoreFailed      (the store failed: unreachable, locked too long, ...)

Every message names the thing concerned and can be shown to an operator as
it is; none holds a password or a key.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from engine.store import Conflict, InUse, NotFound, StoreError


class ProvisioningError(Exception):
    """Base of the provisioning errors."""


class Unknown(ProvisioningError):
    pass


class AlreadyExists(ProvisioningError):
    pass


class Invalid(ProvisioningError):
    """``field`` names the value at fault when it is one of several set together
    (``pool``, ``daily_quota``, ``rate_quota``, ``priority``)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TenantHasMail(ProvisioningError):
    """``pending`` messages are still to deliver; ``forced`` when the queued and
    shunted ones were removed already (so what is left is being delivered)."""

    def __init__(self, message: str, *, pending: int, forced: bool) -> None:
        super().__init__(message)
        self.pending = pending
        self.forced = forced


class SecretUnusable(ProvisioningError):
    pass


class StoreFailed(ProvisioningError):
    pass


@contextlib.contextmanager
def translated(subject: str) -> Iterator[None]:
    """The store's errors as provisioning errors about ``subject`` (``InUse`` passes)."""
    try:
        yield
    except Conflict as exc:
        raise AlreadyExists(f"{subject} exists") from exc
    except NotFound as exc:
        raise Unknown(f"{subject}: {exc}") from exc
    except InUse:
        raise
    except StoreError as exc:
        raise StoreFailed(str(exc)) from exc
