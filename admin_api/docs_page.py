"""The API's docs page: ``/docs`` (also ``/redoc``) renders ``/openapi.json`` and tries it.

One page, its script ``/docs.js`` and its style ``/docs.css`` (``admin_api/static/``,
served through ``admin_api.pages``): nothing comes from elsewhere (FastAPI's Swagger UI
and ReDoc pages load theirs from a CDN). The page lists each operation with its
summary, parameters, request body and responses, and a form to send it ("try it"):
its path, query and header parameters, a request body prefilled with an example built
from the schema, the response's status, headers and body shown. The credential typed
at the top is kept in the browser's ``sessionStorage`` and sent as ``Authorization:
Bearer``, never in a URL; the script sets every text from the document or a response
with ``textContent``, never as HTML.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from admin_api.pages import served

DIRECTORY = "static"

router = APIRouter(include_in_schema=False)


@router.get("/docs")
@router.get("/redoc")
def docs_page() -> Response:
    return served(DIRECTORY, "docs.html")


@router.get("/docs.js")
def docs_script() -> Response:
    return served(DIRECTORY, "docs.js")


@router.get("/docs.css")
def docs_style() -> Response:
    return served(DIRECTORY, "docs.css")
