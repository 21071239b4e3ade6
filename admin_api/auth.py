"""Who is calling: tenant API keys, the operator token, scopes and rates.

Every protected route depends on one of:

- ``tenant_caller(scope)``: a tenant endpoint. ``Authorization: Bearer pm_...``
  (a tenant's API key holding ``scope``) acts for the key's tenant;
  ``Authorization: Bearer <operator token>`` with ``Penguin-Tenant: NAME``
  acts for that tenant with every scope. Gives a ``Caller``.
- ``operator_caller``: an operator endpoint; the operator token only (a valid
  tenant API key gets 403 there).

Answers: 401 without a credential or with one that proves nothing (unknown,
revoked, malformed, or the operator token where none is configured); 403
for a key without the scope; 404 for an unknown ``Penguin-Tenant``; 429 with
``Retry-After`` (whole seconds, at least 1) once a key goes over
``admin.key_rate`` (GCRA through the engine's limiter, shared by every
process with ``redis.url``). The operator is not rate limited.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from admin_api.errors import ApiError
from admin_api.services import ApiServices
from engine.model import ApiScope as Scope
from engine.model import Tenant

TENANT_HEADER = "Penguin-Tenant"
KEY_RATE_PREFIX = "api-key:"
"""Limiter keys of the API keys' rates: ``api-key:<prefix>``."""

bearer = HTTPBearer(
    auto_error=False,
    description="A tenant API key (`pm_...`) or the operator token.",
)


class Caller(NamedTuple):
    """Who a tenant endpoint acts for, and what it may do (made for every request)."""

    tenant: Tenant
    scopes: frozenset[Scope]
    key_prefix: str | None
    """The API key's prefix; None when the operator acts for the tenant."""
    operator: bool


async def api_services(request: Request) -> ApiServices:
    """The process's ``ApiServices`` (set by ``create_app``). A coroutine, so that
    FastAPI runs it on the event loop rather than handing it to a thread per request."""
    return services_of(request)


def services_of(request: Request) -> ApiServices:
    """The process's ``ApiServices``, outside dependency injection."""
    services: ApiServices = request.app.state.services
    return services


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_credential(credentials: HTTPAuthorizationCredentials | None) -> str | None:
    """The credential ``bearer`` read; None when there is none."""
    return None if credentials is None else credentials.credentials


def _credential(credential: str | None) -> str:
    """The Bearer credential; 401 without one."""
    if not credential:
        raise _unauthorized("an Authorization: Bearer credential is required")
    return credential


def is_operator(services: ApiServices, credential: str) -> bool:
    """Whether ``credential`` is the operator token (constant-time compare)."""
    token = services.operator_token
    if token is None:
        return False
    return hmac.compare_digest(credential.encode("utf-8"), token.encode("utf-8"))


def tenant_caller(scope: Scope) -> Callable[..., Awaitable[Caller]]:
    """A dependency giving the ``Caller`` of a tenant endpoint that needs ``scope``."""

    async def caller(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        tenant_name: str | None = Header(
            default=None,
            alias=TENANT_HEADER,
            description="With the operator token: the tenant to act for.",
        ),
        services: ApiServices = Depends(api_services),
    ) -> Caller:
        return await authorized(services, bearer_credential(credentials), tenant_name, scope)

    return caller


async def authorized(
    services: ApiServices, credential: str | None, tenant_name: str | None, scope: Scope
) -> Caller:
    """The ``Caller`` that the Bearer ``credential`` (None when there is none) proves for
    a tenant endpoint needing ``scope``; ``ApiError`` otherwise."""
    credential = _credential(credential)
    if is_operator(services, credential):
        return await _operator_for(services, tenant_name)
    known = await services.provisioning.authenticate_api_key(credential)
    if known is None:
        raise _unauthorized("the API key is not valid (unknown, revoked or malformed)")
    if scope not in known.key.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the {scope.value!r} scope")
    await _within_rate(services, known.key.prefix)
    return Caller(known.tenant, known.key.scopes, known.key.prefix, operator=False)


async def _operator_for(services: ApiServices, tenant_name: str | None) -> Caller:
    if not tenant_name:
        message = f"the operator names the tenant to act for in the {TENANT_HEADER} header"
        raise ApiError(422, "invalid", message, field=TENANT_HEADER)
    tenant = await services.provisioning.tenant(tenant_name)
    return Caller(tenant, frozenset(Scope), None, operator=True)


async def _within_rate(services: ApiServices, prefix: str) -> None:
    grant = await services.limiter.throttle(
        KEY_RATE_PREFIX + prefix, services.key_rate, services.clock.now()
    )
    if grant.granted:
        return
    wait = max(1, math.ceil(grant.retry_after))
    raise ApiError(
        429,
        "rate_limited",
        f"this API key is over its rate ({services.key_rate}); retry later",
        headers={"Retry-After": str(wait)},
    )


async def operator_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> None:
    """A dependency admitting the operator token only: 403 for a valid tenant API key
    (known, but not the operator's), 401 for anything else."""
    services = services_of(request)
    credential = _credential(bearer_credential(credentials))
    if is_operator(services, credential):
        return
    if await services.provisioning.authenticate_api_key(credential) is not None:
        raise ApiError(403, "forbidden", "operator routes need the operator token, not a key")
    raise _unauthorized("the operator token is required")


__all__ = ["Caller", "Scope", "api_services", "authorized", "operator_caller", "tenant_caller"]
