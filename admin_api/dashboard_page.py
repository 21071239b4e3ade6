"""The dashboard: one page at ``/dashboard`` with its script and style, served as files.

The files live in ``admin_api/dashboard/`` (plain ES modules and CSS, no build
step, nothing from a CDN). The page asks for an API key or the operator token,
keeps it in the browser's ``sessionStorage`` and sends it on each ``/v1``
request as ``Authorization: Bearer``; the credential never goes in a URL. The
page and its files are public (they hold no data); every answer carries a
Content-Security-Policy allowing this origin only.
"""

from __future__ import annotations

import functools
from importlib import resources

from fastapi import APIRouter, Response

from admin_api.errors import ApiError

PAGE = "index.html"
ASSETS = {
    PAGE: "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "main.js": "text/javascript; charset=utf-8",
    "api.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "views.js": "text/javascript; charset=utf-8",
}
"""Each file served under ``/dashboard/`` and its media type."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of the dashboard's file ``name`` (one of ``ASSETS``)."""
    return (resources.files("admin_api") / "dashboard" / name).read_bytes()


def _served(name: str) -> Response:
    return Response(asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)


@router.get("/dashboard")
def dashboard() -> Response:
    return _served(PAGE)


@router.get("/dashboard/{name}")
def dashboard_file(name: str) -> Response:
    if name not in ASSETS or name == PAGE:
        raise ApiError(404, "not_found", f"the dashboard has no file {name!r}")
    return _served(name)
