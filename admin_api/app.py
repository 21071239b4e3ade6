"""The admin HTTP application: operator endpoints for now (``/metrics``, ``/healthz``).

Built by ``create_app`` and served inside the engine process by the
composition root (``engine.runtime.http_serving``). ``/healthz`` reports the
health of each service of that process: ``200`` with ``"status": "ok"``
when all are healthy, ``503`` with ``"status": "failing"`` when one is not.
Tenant endpoints and HTTP injection come later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from engine.service import Health


def create_app(registry: CollectorRegistry, health: Callable[[], Mapping[str, Health]]) -> FastAPI:
    """The admin application; ``health`` gives each service's health by name."""
    app = FastAPI(title="PenguinMails admin API", version="0.1.0")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        services = health()
        ok = all(service.ok for service in services.values())
        body = {
            "status": "ok" if ok else "failing",
            "services": {
                name: {"ok": service.ok, "detail": service.detail}
                for name, service in services.items()
            },
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
