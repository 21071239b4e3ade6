"""The docs page through the real app: served to anyone under a strict
Content-Security-Policy, nothing from elsewhere, no inline script or style; and its
script's logic (the example bodies built from the document, the requests "try it"
sends) run in Node on the app's own OpenAPI document."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from admin_api.app import create_app
from admin_api.pages import CONTENT_SECURITY_POLICY
from admin_api.services import ApiServices
from tests.integration.api_support import client_of

SCRIPT = Path(__file__).parents[2] / "admin_api" / "static" / "docs.js"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/docs", "text/html"),
        ("/redoc", "text/html"),
        ("/docs.js", "text/javascript"),
        ("/docs.css", "text/css"),
    ],
)
async def test_the_page_its_script_and_style_are_public_under_the_policy(
    api_services: ApiServices, path: str, media_type: str
) -> None:
    async with client_of(create_app(api_services), ("10.0.0.1", 1234)) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_policy_allows_this_origin_only_and_nothing_inline() -> None:
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'none'"
    for kind in ("script-src", "style-src", "connect-src"):
        assert directives[kind] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY


async def test_the_page_loads_nothing_from_elsewhere_and_nothing_inline(
    api_client: httpx.AsyncClient,
) -> None:
    page = (await api_client.get("/docs")).text
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sorted(links) == ["docs.css", "docs.js", "openapi.json"]
    assert re.findall(r"<script[^>]*>", page) == ['<script src="docs.js" defer>']
    assert "</script>" in page and '<script src="docs.js" defer></script>' in page
    assert "<style" not in page and "style=" not in page
    assert not re.search(r"\son\w+=", page)  # no inline event handler
    assert "@import" not in (await api_client.get("/docs.css")).text


def test_the_script_writes_no_html_and_keeps_the_credential_in_the_session() -> None:
    script = SCRIPT.read_text()
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert unsafe not in script
    assert "localStorage" not in script and "sessionStorage.setItem" in script
    assert "http:" not in script and "https://" not in script.replace("https://example.com/", "")


def run_script(code: str, data: Any) -> Any:
    """``code`` run in Node with ``docs`` (the page's script) and ``data`` bound; what it
    ``print``s, parsed."""
    assert NODE is not None
    program = (
        f"const docs = require({json.dumps(str(SCRIPT))});\n"
        'const data = JSON.parse(require("fs").readFileSync(0, "utf8"));\n'
        "const print = (value) => console.log(JSON.stringify(value));\n" + code
    )
    done = subprocess.run(
        [NODE, "-e", program], input=json.dumps(data), capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def violations(doc: dict[str, Any], schema: dict[str, Any], value: Any, at: str) -> list[str]:
    """Where ``value`` breaks ``schema``'s shape: types, required and unknown properties,
    enums (the document's own rules; not formats or lengths)."""
    schema = resolve(doc, schema)
    choices = schema.get("anyOf") or schema.get("oneOf")
    if choices:
        if any(not violations(doc, choice, value, at) for choice in choices):
            return []
        return [f"{at}: no choice fits"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind is None:
        return []
    if not isinstance(value, JSON_TYPES[kind]) or (kind != "boolean" and isinstance(value, bool)):
        return [f"{at}: not {kind}"]
    if isinstance(value, list):
        item = schema.get("items", {})
        return [v for n, x in enumerate(value) for v in violations(doc, item, x, f"{at}[{n}]")]
    if not isinstance(value, dict):
        return []
    properties = schema.get("properties", {})
    found = [f"{at}.{name}: missing" for name in schema.get("required", []) if name not in value]
    if schema.get("additionalProperties") is False:
        found += [f"{at}.{name}: unknown" for name in value if name not in properties]
    for name, x in value.items():
        if name in properties:
            found += violations(doc, properties[name], x, f"{at}.{name}")
    return found


@needs_node
async def test_every_example_body_fits_its_schema(api_client: httpx.AsyncClient) -> None:
    doc = (await api_client.get("/openapi.json")).json()
    bodies = run_script(
        """
        const out = {};
        for (const [path, item] of Object.entries(data.paths)) {
          for (const [method, op] of Object.entries(item)) {
            const body = docs.bodyOf(data, op);
            if (body) out[method + " " + path] = body;
          }
        }
        print(out);
        """,
        doc,
    )
    with_body = {
        f"{method} {path}"
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if "requestBody" in op
    }
    assert set(bodies) == with_body
    for key, body in bodies.items():
        method, path = key.split(" ")
        content = doc["paths"][path][method]["requestBody"]["content"]
        if body["type"] != "application/json":
            assert body == {"type": "text/csv", "text": content["text/csv"]["example"]}
            continue
        value = json.loads(body["text"])
        assert violations(doc, content["application/json"]["schema"], value, "body") == [], key
    message = json.loads(bodies["post /v1/messages"]["text"])
    assert {"from", "to", "subject", "text", "html", "attachments"} <= set(message)


@needs_node
async def test_try_it_fills_the_url_and_sends_the_credential_as_headers(
    api_client: httpx.AsyncClient,
) -> None:
    doc = (await api_client.get("/openapi.json")).json()
    tenant_get = doc["paths"]["/v1/tenants/{name}"]["get"]
    queue = doc["paths"]["/v1/queues/{queue}/messages"]["get"]
    sent = run_script(
        """
        const credentials = { token: "pm_secret", tenant: "acme" };
        const [tenantGet, queue] = data;
        const missing = () => {
          try { docs.requestOf("/v1/tenants/{name}", "get", tenantGet, {}, null, credentials); }
          catch (error) { return error.message; }
        };
        print({
          inputs: docs.inputsOf(tenantGet).map((p) => p.name),
          tenant: docs.requestOf("/v1/tenants/{name}", "get", tenantGet,
            { name: "a/b c?" }, null, credentials),
          queue: docs.requestOf("/v1/queues/{queue}/messages", "get", queue,
            { queue: "default:acme@example.com", limit: "5" }, null, { token: "", tenant: "" }),
          unlimited: docs.requestOf("/v1/queues/{queue}/messages", "get", queue,
            { queue: "q", limit: "" }, null, credentials).url,
          posted: docs.requestOf("/v1/tenants", "post", tenantGet, { name: "x" },
            { type: "application/json", text: "{}" }, credentials),
          missing: missing(),
          pretty: docs.prettyBody('{"a":[1]}'),
          plain: docs.prettyBody("not json"),
        });
        """,
        [tenant_get, queue],
    )
    assert sent["inputs"] == ["name"]  # Penguin-Tenant comes from the field at the top
    assert sent["tenant"] == {
        "url": "/v1/tenants/a%2Fb%20c%3F",
        "init": {
            "method": "GET",
            "headers": {"Authorization": "Bearer pm_secret", "Penguin-Tenant": "acme"},
        },
    }
    assert sent["queue"] == {
        "url": "/v1/queues/default%3Aacme%40example.com/messages?limit=5",
        "init": {"method": "GET", "headers": {}},
    }
    assert sent["unlimited"] == "/v1/queues/q/messages"
    assert sent["posted"]["init"]["body"] == "{}"
    assert sent["posted"]["init"]["headers"]["Content-Type"] == "application/json"
    assert sent["missing"] == "name is required"
    assert sent["pretty"] == '{\n  "a": [\n    1\n  ]\n}' and sent["plain"] == "not json"
