"""The admin HTTP application: operator endpoints for now (``/metrics``, ``/healthz``).

Built by ``create_app`` and served by uvicorn inside the engine process
(``admin_api.server``). Tenant endpoints and HTTP injection come later.
"""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def create_app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI(title="PenguinMails admin API", version="0.1.0")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
