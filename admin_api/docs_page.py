"""The API's docs page: ``/docs`` (also ``/redoc``) renders ``/openapi.json`` and tries it.

One page, its script ``/docs.js`` and its style ``/docs.css`` (``admin_api/static/``),
all served by the app: nothing comes from elsewhere (FastAPI's Swagger UI and ReDoc
pages load theirs from a CDN). The page lists each operation with its summary,
parameters, request body and responses, and a form to send it ("try it"): its
path, query and header parameters, a request body prefilled with an example
built from the schema, the response's status, headers and body shown. The
credential typed at the top is kept in the browser's ``sessionStorage`` and sent
as ``Authorization: Bearer``, never in a URL.

The page is served with a ``Content-Security-Policy`` allowing scripts, styles and
requests to this origin only, no inline script or style; the script sets every
text from the document or a response with ``textContent``, never as HTML.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""Only this origin's script, style and requests; no inline script or style."""

HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PenguinMails admin API</title>
<link rel="stylesheet" href="docs.css">
<script src="docs.js" defer></script>
</head>
<body>
<h1 id="title">PenguinMails admin API</h1>
<p id="description"></p>
<p>The OpenAPI document: <a href="openapi.json">openapi.json</a>.</p>
<form id="credentials" autocomplete="off">
<label>Credential (API key or operator token)
<input id="token" type="password" autocomplete="off"></label>
<label>Penguin-Tenant (the operator acting for a tenant)
<input id="tenant" type="text" autocomplete="off"></label>
<button id="forget" type="button">Forget</button>
<p>Kept in this tab's session storage only; sent as <code>Authorization: Bearer</code>.</p>
</form>
<div id="operations">Loading…</div>
</body>
</html>
"""

STATIC = resources.files("admin_api") / "static"
SCRIPT = (STATIC / "docs.js").read_text(encoding="utf-8")
STYLE = (STATIC / "docs.css").read_text(encoding="utf-8")

router = APIRouter(include_in_schema=False)


@router.get("/docs")
@router.get("/redoc")
def docs_page() -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE, headers=HEADERS)


@router.get("/docs.js")
def docs_script() -> Response:
    return Response(SCRIPT, media_type="text/javascript; charset=utf-8", headers=HEADERS)


@router.get("/docs.css")
def docs_style() -> Response:
    return Response(STYLE, media_type="text/css; charset=utf-8", headers=HEADERS)
