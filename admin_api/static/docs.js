// The API's docs page: renders /openapi.json, and sends requests from it ("try it").
//
// The credential (an API key or the operator token) and the tenant to act for
// are kept in sessionStorage only and sent as headers, never in a URL. Every
// text from the document or a response is set with textContent, never as HTML.
// The functions above "The page" touch no DOM; Node can load them for tests.
"use strict";

const CREDENTIAL_KEYS = { token: "penguin-docs-token", tenant: "penguin-docs-tenant" };
const FROM_CREDENTIALS = new Set(["authorization", "penguin-tenant"]);
const METHODS = new Set(["get", "put", "post", "delete", "patch", "head", "options"]);
const BODY_TYPES = ["application/json", "text/csv", "text/plain", "message/rfc822"];

function resolve(doc, schema) {
  let seen = 0;
  while (schema && schema.$ref && seen++ < 20) {
    schema = doc.components.schemas[schema.$ref.split("/").pop()];
  }
  return schema;
}

function exampleString(schema) {
  const formats = {
    email: "user@example.com",
    "date-time": "2026-01-01T00:00:00Z",
    date: "2026-01-01",
    uri: "https://example.com/",
    uuid: "00000000-0000-0000-0000-000000000000",
    binary: "",
  };
  const text = formats[schema.format] !== undefined ? formats[schema.format] : "string";
  return schema.maxLength !== undefined ? text.slice(0, schema.maxLength) : text;
}

// A JSON value matching `schema`, in the manner of Swagger UI: the schema's
// example, else its non-empty default, else one built from its type, with
// every property of an object and one item in an array.
function exampleOf(doc, schema, depth = 0) {
  schema = resolve(doc, schema);
  if (!schema || depth > 8) return null;
  if (schema.example !== undefined) return schema.example;
  if (schema.examples && schema.examples.length) return schema.examples[0];
  const fallback = schema.default;
  if (fallback !== undefined && fallback !== null && !(Array.isArray(fallback) && !fallback.length)) {
    return fallback;
  }
  if (schema.const !== undefined) return schema.const;
  if (schema.enum) return schema.enum[0];
  const choices = schema.anyOf || schema.oneOf;
  if (choices) {
    const usable = choices.find((choice) => resolve(doc, choice).type !== "null");
    return usable ? exampleOf(doc, usable, depth + 1) : null;
  }
  if (schema.allOf) {
    return Object.assign({}, ...schema.allOf.map((part) => exampleOf(doc, part, depth + 1)));
  }
  switch (schema.type) {
    case "object": {
      const out = {};
      for (const [name, property] of Object.entries(schema.properties || {})) {
        out[name] = exampleOf(doc, property, depth + 1);
      }
      return out;
    }
    case "array":
      return schema.items ? [exampleOf(doc, schema.items, depth + 1)] : [];
    case "string":
      return exampleString(schema);
    case "integer":
    case "number":
      return schema.minimum !== undefined ? schema.minimum : 0;
    case "boolean":
      return false;
    case "null":
      return null;
    default:
      return schema.properties ? exampleOf(doc, { ...schema, type: "object" }, depth) : null;
  }
}

// The media type "try it" sends for an operation's request body, and the text
// prefilled for it; null when the operation takes no body we can send.
function bodyOf(doc, op) {
  const content = (op.requestBody && op.requestBody.content) || {};
  const type = BODY_TYPES.find((candidate) => candidate in content);
  if (!type) return null;
  const media = content[type];
  if (media.example !== undefined) {
    const example = media.example;
    return { type, text: typeof example === "string" ? example : JSON.stringify(example, null, 2) };
  }
  const value = exampleOf(doc, media.schema);
  if (type !== "application/json") return { type, text: typeof value === "string" ? value : "" };
  return { type, text: JSON.stringify(value, null, 2) };
}

// The parameters "try it" asks for: path, query and header parameters, but
// not those the credential fields fill in.
function inputsOf(op) {
  return (op.parameters || []).filter(
    (p) => p.in !== "cookie" && !(p.in === "header" && FROM_CREDENTIALS.has(p.name.toLowerCase())),
  );
}

// The URL and fetch options of a request: `values` by parameter name (empty
// ones left out), `body` the request body's text (or null), `credentials`
// {token, tenant}. Throws an Error naming a required parameter left empty.
function requestOf(path, method, op, values, body, credentials) {
  const query = new URLSearchParams();
  const headers = {};
  for (const parameter of inputsOf(op)) {
    const value = values[parameter.name];
    if (value === undefined || value === "") {
      if (parameter.required) throw new Error(parameter.name + " is required");
      continue;
    }
    if (parameter.in === "path") {
      path = path.split("{" + parameter.name + "}").join(encodeURIComponent(value));
    } else if (parameter.in === "query") {
      query.append(parameter.name, value);
    } else {
      headers[parameter.name] = value;
    }
  }
  if (credentials.token) headers.Authorization = "Bearer " + credentials.token;
  if (credentials.tenant) headers["Penguin-Tenant"] = credentials.tenant;
  const init = { method: method.toUpperCase(), headers };
  if (body !== null && body !== undefined) {
    headers["Content-Type"] = body.type;
    init.body = body.text;
  }
  const search = query.toString();
  return { url: search ? path + "?" + search : path, init };
}

// A response body as shown: JSON pretty-printed, anything else as it came.
function prettyBody(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (error) {
    return text;
  }
}

if (typeof module !== "undefined") {
  module.exports = { exampleOf, bodyOf, inputsOf, requestOf, prettyBody };
}

// The page.

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
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

// A schema section, folded: the operation's form comes first.
function section(parent, title, value) {
  const folded = el("details");
  folded.className = "schema";
  folded.appendChild(el("summary", title));
  folded.appendChild(el("pre", JSON.stringify(value, null, 2)));
  parent.appendChild(folded);
}

function credentials() {
  return {
    token: sessionStorage.getItem(CREDENTIAL_KEYS.token) || "",
    tenant: sessionStorage.getItem(CREDENTIAL_KEYS.tenant) || "",
  };
}

function keepCredentials() {
  for (const [field, key] of Object.entries(CREDENTIAL_KEYS)) {
    const input = document.getElementById(field);
    input.value = sessionStorage.getItem(key) || "";
    input.addEventListener("input", () => sessionStorage.setItem(key, input.value));
  }
  document.getElementById("forget").addEventListener("click", () => {
    for (const [field, key] of Object.entries(CREDENTIAL_KEYS)) {
      sessionStorage.removeItem(key);
      document.getElementById(field).value = "";
    }
  });
}

function parameterInput(parameter) {
  const schema = parameter.schema || {};
  const choices = schema.enum || (schema.type === "boolean" ? ["true", "false"] : null);
  let input;
  if (choices) {
    input = el("select");
    input.appendChild(el("option", ""));
    for (const choice of choices) input.appendChild(el("option", String(choice)));
  } else {
    input = el("input");
    input.type = schema.type === "integer" || schema.type === "number" ? "number" : "text";
    if (schema.default !== undefined && schema.default !== null) input.placeholder = String(schema.default);
  }
  input.name = parameter.name;
  input.required = Boolean(parameter.required);
  return input;
}

function tryItForm(doc, path, method, op) {
  const form = el("form");
  form.className = "try";
  form.appendChild(el("h4", "Try it"));
  for (const parameter of inputsOf(op)) {
    const label = el("label");
    label.appendChild(el("span", parameter.name + " (" + parameter.in + ")"));
    label.appendChild(parameterInput(parameter));
    if (parameter.required) label.appendChild(el("strong", " required")).className = "required";
    form.appendChild(label);
  }
  const body = bodyOf(doc, op);
  let textarea = null;
  if (body) {
    form.appendChild(el("label", "Request body (" + body.type + ")"));
    textarea = el("textarea");
    textarea.name = "body";
    textarea.rows = Math.min(20, body.text.split("\n").length + 1);
    textarea.value = body.text;
    form.appendChild(textarea);
  } else if (op.requestBody) {
    form.appendChild(el("p", "This body cannot be sent from here; use curl."));
  }
  form.appendChild(el("button", "Send")).type = "submit";
  const result = el("div");
  result.className = "result";
  form.appendChild(result);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = {};
    for (const input of form.querySelectorAll("input, select")) values[input.name] = input.value;
    const sent = textarea && textarea.value.trim() ? { type: body.type, text: textarea.value } : null;
    send(path, method, op, values, sent, result);
  });
  return form;
}

async function send(path, method, op, values, body, result) {
  result.textContent = "";
  let request;
  try {
    request = requestOf(path, method, op, values, body, credentials());
  } catch (error) {
    result.appendChild(el("p", error.message)).className = "status";
    return;
  }
  try {
    const response = await fetch(request.url, request.init);
    const text = await response.text();
    result.appendChild(el("p", response.status + " " + response.statusText)).className = "status";
    const headers = [...response.headers].map(([name, value]) => name + ": " + value);
    result.appendChild(el("pre", headers.join("\n"))).className = "headers";
    result.appendChild(el("pre", prettyBody(text))).className = "body";
  } catch (error) {
    result.appendChild(el("p", "The request failed: " + error)).className = "status";
  }
}

function render(doc) {
  document.getElementById("title").textContent = doc.info.title + " " + doc.info.version;
  document.getElementById("description").textContent = doc.info.description || "";
  const root = document.getElementById("operations");
  root.textContent = "";
  const byTag = new Map();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (!METHODS.has(method)) continue;
      const tag = (op.tags && op.tags[0]) || "other";
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  for (const [tag, ops] of byTag) {
    root.appendChild(el("h2", tag));
    for (const [method, path, op] of ops) {
      const box = el("details");
      box.id = op.operationId || method + " " + path;
      const head = el("summary");
      head.appendChild(el("span", method)).className = "method";
      head.appendChild(el("code", path));
      head.appendChild(document.createTextNode(" " + (op.summary || "")));
      box.appendChild(head);
      if (op.description) box.appendChild(el("p", op.description));
      box.appendChild(tryItForm(doc, path, method, op));
      if (op.parameters) section(box, "Parameters", expand(doc, op.parameters, 0));
      if (op.requestBody) section(box, "Request body", expand(doc, op.requestBody, 0));
      section(box, "Responses", expand(doc, op.responses, 0));
      root.appendChild(box);
    }
  }
}

if (typeof document !== "undefined") {
  keepCredentials();
  fetch("openapi.json")
    .then((response) => response.json())
    .then(render)
    .catch((error) => {
      document.getElementById("operations").textContent = "Cannot load openapi.json: " + error;
    });
}
