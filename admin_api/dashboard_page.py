"""The dashboard: one page at ``/dashboard`` with its script and style, served as files.

The files live in ``admin_api/dashboard/`` (plain ES modules and CSS, no build
step, nothing from a CDN) and are served through ``admin_api.pages``. The page
asks for an API key or the operator token, keeps it in the browser's
``sessionStorage`` and sends it on each ``/v1`` request as ``Authorization:
Bearer``; the credential never goes in a URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from admin_api.errors import ApiError
from admin_api.pages import served

DIRECTORY = "dashboard"
PAGE = "index.html"
ASSETS = frozenset({PAGE, "dashboard.css", "main.js", "api.js", "charts.js", "views.js"})
"""The files served under ``/dashboard/``."""

router = APIRouter(include_in_schema=False)


@router.get("/dashboard")
def dashboard() -> Response:
    return served(DIRECTORY, PAGE)


@router.get("/dashboard/{name}")
def dashboard_file(name: str) -> Response:
    if name not in ASSETS or name == PAGE:
        raise ApiError(404, "not_found", f"the dashboard has no file {name!r}")
    return served(DIRECTORY, name)
