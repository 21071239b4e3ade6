// The dashboard's sections drawn from the API's answers. Text from the API is always
// set with textContent, never parsed as HTML.

import { SERIES, lineChart, ratesByHour } from "./charts.js";

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillTable(table, rows) {
  const body = table.tBodies[0];
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    tr.append(...cells);
    return tr;
  }));
}

function fillTotals(list, totals) {
  list.replaceChildren(...totals.map(([name, key, value]) => {
    const group = document.createElement("div");
    const term = document.createElement("dt");
    const number = document.createElement("dd");
    term.textContent = name;
    number.textContent = String(value);
    number.dataset.total = key;
    group.append(term, number);
    return group;
  }));
}

const count = (n) => cell(String(n), "number");
const when = (seconds) => new Date(seconds * 1000).toISOString().replace(".000", "");

// The messages of a queue summary (`/v1/queue`, `/v1/queues`) by state, into the list `id`.
export function showQueueTotals(id, body) {
  const byState = new Map();
  for (const row of body.queues) byState.set(row.state, (byState.get(row.state) || 0) + row.count);
  const states = ["queued", "leased", "shunted", "delivered", "bounced", "expired", "suppressed"];
  for (const state of byState.keys()) if (!states.includes(state)) states.push(state);
  fillTotals(document.getElementById(id),
    states.map((state) => [state, state, byState.get(state) || 0]));
}

export function showQueue(body) {
  showQueueTotals("queue-totals", body);
  fillTable(document.getElementById("queue-table"), body.queues.map((row) => [
    cell(row.queue), cell(row.state), count(row.count), cell(row.last_error || ""),
  ]));
}

export function showStats(body) {
  const sum = (pick) => body.rows.reduce((total, row) => total + (pick(row) || 0), 0);
  fillTotals(document.getElementById("stats-totals"),
    ["sent", "delivered", "deferred", "bounced", "complained"].map(
      (name) => [name, name, sum((r) => r[name])]));
  const points = ratesByHour(body.rows);
  document.getElementById("charts").replaceChildren(...SERIES.map((series) => {
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = `${series.label} (% of ${series.basis})`;
    figure.append(caption, lineChart(points, series));
    return figure;
  }));
}

export function showSources(body) {
  fillTable(document.getElementById("warmup-table"), body.sources.map((source) => {
    const bar = document.createElement("td");
    if (source.cap) {
      const progress = document.createElement("progress");
      progress.max = source.cap;
      progress.value = Math.min(source.sent_today, source.cap);
      progress.setAttribute("aria-label", `${source.source} ${source.provider}: sent of cap`);
      bar.append(progress);
    }
    return [
      cell(source.source), cell(source.provider), cell(source.plan || "none"),
      cell(source.day === null ? "" : String(source.day)), count(source.sent_today),
      cell(source.cap === null ? "no cap" : String(source.cap), "number"), bar,
      cell(source.reason ? `${source.state}: ${source.reason}` : source.state),
    ];
  }));
}

export function showSuppressions(body) {
  fillTable(document.getElementById("suppressions-table"), body.suppressions.map((s) => [
    cell(s.address), cell(s.reason), cell(when(s.created_at)),
  ]));
}

export function showTenants(body, chosen) {
  const select = document.getElementById("tenant");
  select.replaceChildren(...body.tenants.map((tenant) => {
    const option = document.createElement("option");
    option.value = tenant.name;
    option.textContent = tenant.name;
    option.selected = tenant.name === chosen;
    return option;
  }));
}

export function showError(id, failure) {
  document.getElementById(id).textContent = failure ? failure.message : "";
}
