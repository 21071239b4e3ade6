// The dashboard's wiring: sign in, choose the tenant (operator), load each section.

import { ApiFailure, get, identify, session } from "./api.js";
import * as views from "./views.js";

const SUPPRESSION_PAGE = 20;
const state = { role: null, tenant: null, cursors: [null] };

const $ = (id) => document.getElementById(id);

async function section(errorId, load) {
  views.showError(errorId, null);
  try {
    await load();
  } catch (failure) {
    if (failure instanceof ApiFailure && failure.status === 401) return signOut();
    views.showError(errorId, failure);
  }
}

async function loadSuppressions() {
  const cursor = state.cursors[state.cursors.length - 1];
  const page = await get("/suppressions", { limit: SUPPRESSION_PAGE, cursor }, state.tenant);
  views.showSuppressions(page);
  state.nextCursor = page.next_cursor;
  $("suppressions-next").disabled = !page.next_cursor;
  $("suppressions-previous").disabled = state.cursors.length < 2;
}

// What the operator sees besides the tenant's: every tenant's queue.
function operatorSections() {
  return [
    section("all-queues-error", async () => views.showQueueTotals("all-queue-totals", await get("/queues"))),
  ];
}

async function loadTenant() {
  const as = state.tenant;
  state.cursors = [null];
  await Promise.all([
    section("queue-error", async () => views.showQueue(await get("/queue", {}, as))),
    section("stats-error", async () => views.showStats(await get("/stats", { group_by: "hour" }, as))),
    section("warmup-error", async () => views.showSources(await get("/sources", {}, as))),
    section("suppressions-error", loadSuppressions),
    ...(state.role === "operator" ? operatorSections() : []),
  ]);
  document.body.dataset.loaded = as || "key";
}

async function start() {
  const role = await identify();
  if (role === null) {
    session.forget();
    views.showError("login-error", new Error("That key or token was refused."));
    return;
  }
  state.role = role;
  $("login").hidden = true;
  $("board").hidden = false;
  $("logout").hidden = false;
  $("who").hidden = false;
  $("who").textContent = role === "operator" ? "Signed in as the operator" : "Signed in with an API key";
  $("tenants").hidden = role !== "operator";
  $("all-queues").hidden = role !== "operator";
  if (role === "operator") {
    const tenants = await get("/tenants");
    if (!tenants.tenants.length) {
      views.showError("queue-error", new Error("There are no tenants yet."));
      return;
    }
    state.tenant = state.tenant || tenants.tenants[0].name;
    views.showTenants(tenants, state.tenant);
  }
  await loadTenant();
}

function signOut() {
  session.forget();
  window.location.reload();
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("credential");
  session.keep(input.value.trim());
  input.value = "";
  views.showError("login-error", null);
  start().catch((failure) => views.showError("login-error", failure));
});
$("logout").addEventListener("click", signOut);
$("tenant").addEventListener("change", (event) => {
  state.tenant = event.target.value;
  loadTenant();
});
$("suppressions-next").addEventListener("click", () => {
  state.cursors.push(state.nextCursor);
  section("suppressions-error", loadSuppressions);
});
$("suppressions-previous").addEventListener("click", () => {
  state.cursors.pop();
  section("suppressions-error", loadSuppressions);
});

if (session.credential()) start().catch((failure) => views.showError("login-error", failure));
