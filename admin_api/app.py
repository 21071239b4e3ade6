"""The admin HTTP application: the tenants' and operators' API, ``/metrics``, ``/healthz``.

Built by ``create_app(services)`` and served inside the engine process by the
composition root (``engine.runtime.http_serving``). Each resource's routes
live in ``admin_api.routes.<resource>``; authentication in ``admin_api.auth``;
the error body in ``admin_api.errors``.

What is public (no credential): ``/healthz`` (``200`` with ``"status":
"ok"`` when every service of the process is healthy, ``503`` with
``"status": "failing"`` when one is not), ``/openapi.json`` and the docs
page ``/docs`` (also ``/redoc``) with its script and style
(``admin_api.docs_page``: the OpenAPI document rendered and tried; nothing
from a CDN), and the dashboard's page and files under ``/dashboard``
(``admin_api.dashboard_page``; its data comes from ``/v1`` with the
credential the user types in). ``/metrics`` is served
without a credential to loopback peers only; any other peer needs the
operator token. Everything under ``/v1`` needs a tenant API key or the
operator token.

``POST /v1/messages``, the hot route, is served in front of the middleware and
the routing by ``admin_api.send_route``, with the route's own handler.
"""

from __future__ import annotations

import ipaddress

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp

from admin_api import docs_page, errors
from admin_api.auth import api_services, bearer, is_operator
from admin_api.body_bound import BodyLimitErrors
from admin_api.dashboard_page import router as dashboard_router
from admin_api.routes import (
    api_keys,
    campaigns,
    domains,
    inject,
    messages,
    operators,
    queue,
    records,
    smtp_users,
    sources,
    stats,
    suppressions,
    tracking_domains,
    webhooks,
)
from admin_api.send_route import SendRoute
from admin_api.services import ApiServices

JSON_BODY_MAX_BYTES = 1024 * 1024
"""The largest request body of a route that does not set its own: the JSON of a domain,
a webhook, a list of suppressions. The sending routes take messages
(``routes.messages.body_limit``), the uploads their files (recipient lists,
suppression CSVs); a larger body is refused with 413 as soon as its declared length or
its bytes pass the bound, before it is held."""

ROUTERS = (
    api_keys.router,
    campaigns.router,
    messages.router,
    operators.router,
    queue.router,
    sources.router,
    domains.router,
    tracking_domains.router,
    smtp_users.router,
    suppressions.router,
    stats.router,
    records.router,
    webhooks.router,
)
"""Every resource's router, included under ``/v1`` by ``create_app``."""


NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's own OpenTelemetry, off: the engine's metrics are Prometheus' (``/metrics``),
and FastAPI would otherwise look for OpenTelemetry providers on every request."""


class AdminApp(FastAPI):
    """The FastAPI application with ``SendRoute``, then ``BodyLimitErrors``, in front of
    its whole middleware stack."""

    def build_middleware_stack(self) -> ASGIApp:
        services: ApiServices = self.state.services
        return SendRoute(BodyLimitErrors(super().build_middleware_stack()), services)


def create_app(services: ApiServices) -> FastAPI:
    """The admin application on ``services``."""
    app = AdminApp(
        title="PenguinMails admin API",
        version="0.1.0",
        description=(
            "Tenants authenticate with an API key (`Authorization: Bearer pm_...`); the "
            "operator with the operator token, naming the tenant to act for in the "
            "`Penguin-Tenant` header on tenant endpoints. Errors answer "
            '`{"error": {"code", "message", "field"}}`.'
        ),
        docs_url=None,
        redoc_url=None,
        max_body_size=JSON_BODY_MAX_BYTES,
        telemetry=NO_TELEMETRY,
    )
    app.state.services = services
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router, prefix="/v1")
    app.include_router(inject.router)
    app.include_router(docs_page.router)
    app.include_router(dashboard_router)

    @app.get("/metrics", include_in_schema=False)
    def metrics(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        services: ApiServices = Depends(api_services),
    ) -> Response:
        if not _loopback(request) and (
            credentials is None or not is_operator(services, credentials.credentials)
        ):
            raise errors.ApiError(
                401,
                "unauthorized",
                "/metrics needs the operator token from a non-loopback address",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(generate_latest(services.metrics), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz(services: ApiServices = Depends(api_services)) -> JSONResponse:
        states = services.health()
        ok = all(service.ok for service in states.values())
        body = {
            "status": "ok" if ok else "failing",
            "services": {
                name: {"ok": service.ok, "detail": service.detail}
                for name, service in states.items()
            },
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


def _loopback(request: Request) -> bool:
    """Whether the peer is on the loopback (127.0.0.0/8, ::1)."""
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
