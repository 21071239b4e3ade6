"""Pages the admin listener serves from files of the package: the API's docs page
(``admin_api/static/``) and the dashboard (``admin_api/dashboard/``).

They are public (they hold no data: what they show comes from ``/v1`` with the
credential the user types in) and every answer carries the same headers: a
``Content-Security-Policy`` allowing this origin's scripts, styles, images and
requests only (no inline script or style, nothing from a CDN), ``nosniff``, no
referrer, and ``no-cache`` so a new version is picked up at once.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import PurePosixPath

from fastapi import Response

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only this origin's script, style, images and requests; no inline script or style."""

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}


@functools.cache
def package_file(directory: str, name: str) -> bytes:
    """The bytes of ``admin_api/<directory>/<name>``."""
    return (resources.files("admin_api") / directory / name).read_bytes()


def served(directory: str, name: str) -> Response:
    """``admin_api/<directory>/<name>`` with its media type and the pages' headers."""
    media_type = MEDIA_TYPES[PurePosixPath(name).suffix]
    return Response(package_file(directory, name), media_type=media_type, headers=SECURITY_HEADERS)
