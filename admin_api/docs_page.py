"""The API's docs page: one self-contained HTML page rendering ``/openapi.json``.

No script, style or font comes from elsewhere (FastAPI's Swagger UI and ReDoc
pages load theirs from a CDN). The page lists each operation with its
summary, parameters, request body and responses, the schemas expanded as
JSON; every text from the document is set with ``textContent``, never as HTML.
"""

from __future__ import annotations

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>PenguinMails admin API</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; }
h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
details { border: 1px solid #ddd; border-radius: 4px; margin: .5em 0; padding: .3em .6em; }
summary { cursor: pointer; }
.method { display: inline-block; font-weight: bold; min-width: 5em; text-transform: uppercase; }
code, pre { background: #f5f5f5; font-size: 13px; }
pre { overflow: auto; padding: .5em; }
</style>
</head>
<body>
<h1 id="title">PenguinMails admin API</h1>
<p id="description"></p>
<p>The OpenAPI document: <a href="openapi.json">openapi.json</a>.</p>
<div id="operations">Loading…</div>
<script>
"use strict";
function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}
function resolve(doc, schema) {
  if (schema && schema.$ref) {
    const name = schema.$ref.split("/").pop();
    return resolve(doc, doc.components.schemas[name]);
  }
  return schema;
}
function expand(doc, schema, depth) {
  schema = resolve(doc, schema);
  if (!schema || typeof schema !== "object" || depth > 6) return schema;
  const out = Array.isArray(schema) ? [] : {};
  for (const [key, value] of Object.entries(schema)) {
    out[key] = typeof value === "object" ? expand(doc, value, depth + 1) : value;
  }
  return out;
}
function section(parent, title, value) {
  parent.appendChild(el("h4", title));
  parent.appendChild(el("pre", JSON.stringify(value, null, 2)));
}
function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("description").textContent = doc.info.description || "";
  const root = document.getElementById("operations");
  root.textContent = "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  for (const [tag, ops] of byTag) {
    root.appendChild(el("h2", tag));
    for (const [method, path, op] of ops) {
      const box = el("details");
      const head = el("summary");
      head.appendChild(el("span", method)).className = "method";
      head.appendChild(el("code", path));
      head.appendChild(document.createTextNode(" " + (op.summary || "")));
      box.appendChild(head);
      if (op.description) box.appendChild(el("p", op.description));
      if (op.parameters) section(box, "Parameters", expand(doc, op.parameters, 0));
      if (op.requestBody) section(box, "Request body", expand(doc, op.requestBody, 0));
      section(box, "Responses", expand(doc, op.responses, 0));
      root.appendChild(box);
    }
  }
}
fetch("openapi.json")
  .then((response) => response.json())
  .then(render)
  .catch((error) => {
    document.getElementById("operations").textContent = "Cannot load openapi.json: " + error;
  });
</script>
</body>
</html>
"""
