/* xAI usage page: reads api/usage, api/budgets and api/forecasts (same origin, the Airflow
   login cookie) and draws them. */
"use strict";

const PALETTE = ["#3b82f6", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16", "#f97316", "#64748b"];
const OTHERS = "other DAGs";
const charts = {};
let lastReport = null;

const $ = (id) => document.getElementById(id);
const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
const fmtUsd = (n) => "$" + Number(n || 0).toFixed(6);
const fmtSec = (n) => Number(n || 0).toLocaleString("en-US", { maximumFractionDigits: 1 }) + " s";

/* --- theme: ?theme=, else the Airflow UI around this frame, else the system setting ------ */
function parentTheme() {
  try {
    const root = window.parent !== window && window.parent.document.documentElement;
    if (!root) return null;
    if (root.classList.contains("dark")) return "dark";
    if (root.classList.contains("light")) return "light";
    const scheme = root.style.colorScheme;
    return scheme === "dark" || scheme === "light" ? scheme : null;
  } catch (err) {
    return null; // another origin: not ours to read
  }
}

function currentTheme() {
  const asked = new URLSearchParams(location.search).get("theme");
  if (asked === "dark" || asked === "light") return asked;
  return parentTheme() || (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
}

function applyTheme() {
  const theme = currentTheme();
  if (document.documentElement.dataset.theme === theme) return;
  document.documentElement.dataset.theme = theme;
  if (lastReport) drawCharts(lastReport);
}

function watchTheme() {
  applyTheme();
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", applyTheme);
  try {
    if (window.parent !== window) {
      new MutationObserver(applyTheme).observe(window.parent.document.documentElement, {
        attributes: true, attributeFilter: ["class", "style", "data-theme"],
      });
    }
  } catch (err) { /* another origin */ }
}

/* --- filters ------------------------------------------------------------------------- */
function params() {
  const q = new URLSearchParams(location.search);
  const out = new URLSearchParams();
  for (const name of ["start", "end"]) if (q.get(name)) out.set(name, q.get(name));
  for (const dag of q.getAll("dag_id")) if (dag) out.append("dag_id", dag);
  return out;
}

function fillFilters(report) {
  $("start").value = report.window.first;
  $("end").value = report.window.last;
  const select = $("dag");
  const chosen = report.selected_dags[0] || "";
  select.replaceChildren(new Option("All DAGs", ""), ...report.dags.map((d) => new Option(d, d, false, d === chosen)));
}

function onSubmit(event) {
  event.preventDefault();
  const q = new URLSearchParams();
  for (const name of ["start", "end"]) if ($(name).value) q.set(name, $(name).value);
  if ($("dag").value) q.set("dag_id", $("dag").value);
  const theme = new URLSearchParams(location.search).get("theme");
  if (theme) q.set("theme", theme);
  history.replaceState(null, "", "?" + q.toString());
  load();
}

/* --- rendering ------------------------------------------------------------------------ */
function cell(text, cls) {
  const td = document.createElement("td");
  if (text instanceof Node) td.append(text); else td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function sourceBadge(group) {
  const total = group.cost_ticks, estimated = group.estimate_ticks;
  if (!total) return null;
  const kind = estimated === 0 ? "xai" : estimated === total ? "estimate" : "mixed";
  const span = document.createElement("span");
  span.className = "src src-" + kind;
  span.textContent = { xai: "xAI", estimate: "est.", mixed: "mixed" }[kind];
  span.title = kind === "xai" ? "reported by xAI" : kind === "estimate" ? "estimated from the price table"
    : `${fmtUsd(group.estimated_cost_usd)} of it estimated`;
  return span;
}

function costCell(group) {
  const td = cell(fmtUsd(group.cost_usd), "num cost");
  const badge = sourceBadge(group);
  if (badge) td.append(badge);
  if (group.unpriced_requests) td.title = `${group.unpriced_requests} request(s) without a known price`;
  return td;
}

function runLink(run) {
  const a = document.createElement("a");
  a.href = new URL(`../dags/${encodeURIComponent(run.dag_id)}/runs/${encodeURIComponent(run.run_id)}`, location.href).href;
  a.target = "_top";
  a.textContent = run.run_id;
  a.addEventListener("click", openInAirflow);
  return a;
}

/* The Airflow UI frames this page in a sandbox without allow-top-navigation, so a plain
   target=_top link does nothing: ask the UI's router (same origin) to go there instead. */
function openInAirflow(event) {
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  try {
    const top = window.parent;
    if (top === window) return; // opened on its own: the link works as it is
    const url = new URL(event.currentTarget.href);
    top.history.pushState({}, "", url.pathname + url.search);
    top.dispatchEvent(new PopStateEvent("popstate", { state: {} }));
    event.preventDefault();
  } catch (err) { /* another origin: leave it to the browser */ }
}

function fillTable(table, headers, rows, makeCells, emptyText = "No usage in this range") {
  const head = document.createElement("thead");
  const tr = document.createElement("tr");
  headers.forEach(([label, cls]) => { const th = document.createElement("th"); th.textContent = label; if (cls) th.className = cls; tr.append(th); });
  head.append(tr);
  const body = document.createElement("tbody");
  if (!rows.length) {
    const empty = document.createElement("tr");
    const td = cell(emptyText, "empty");
    td.colSpan = headers.length;
    empty.append(td);
    body.append(empty);
  }
  rows.forEach((row) => { const r = document.createElement("tr"); r.append(...makeCells(row, r)); body.append(r); });
  table.replaceChildren(head, body);
}

const USAGE_HEADERS = [["Requests", "num"], ["Tokens", "num"], ["Cost (USD)", "num"]];
const usageCells = (g) => [cell(fmtInt(g.requests), "num"), cell(fmtInt(g.total_tokens), "num tokens"), costCell(g)];

function renderTotals(report) {
  const t = report.totals;
  $("total-cost").textContent = fmtUsd(t.cost_usd);
  const xai = (t.cost_ticks - t.estimate_ticks) / 1e10;
  $("cost-split").textContent = `${fmtUsd(xai)} reported by xAI · ${fmtUsd(t.estimated_cost_usd)} estimated`
    + (t.unpriced_requests ? ` · ${fmtInt(t.unpriced_requests)} request(s) unpriced` : "");
  $("total-tokens").textContent = fmtInt(t.total_tokens);
  $("token-split").textContent = `prompt ${fmtInt(t.prompt_tokens)} · completion ${fmtInt(t.completion_tokens)} · `
    + `reasoning ${fmtInt(t.reasoning_tokens)} · cached ${fmtInt(t.cached_tokens)} `
    + `(${Math.round(100 * t.cache_hit_share)}% of the prompt from xAI's cache)`;
  $("total-requests").textContent = fmtInt(t.requests);
  $("request-split").textContent = `${fmtInt(report.by_dag.length)} DAG(s) · ${fmtInt(report.by_model.length)} model(s)`;
  $("total-tools").textContent = fmtInt(t.num_server_side_tools_used);
  $("tool-split").textContent = `${fmtInt(t.num_sources_used)} source(s) used`;
  $("total-waited").textContent = fmtSec(t.waited_s);
  $("wait-split").textContent = `in workers · ${fmtSec(t.deferred_s)} deferred · ${fmtInt(t.rate_limited)} 429(s)`;
  $("total-exceeded").textContent = fmtInt(report.exceeded_runs.length);
  $("budget-card").classList.toggle("alert", report.exceeded_runs.length > 0);
  const skipped = report.skipped_records || 0;
  $("skipped").hidden = !skipped;
  $("skipped").textContent = skipped
    ? `${fmtInt(skipped)} stored value(s) under the usage keys were not usage records and are left out.` : "";
}

function renderTables(report) {
  const body = $("runs").querySelector("tbody");
  body.replaceChildren();
  if (!report.runs.length) {
    const tr = document.createElement("tr");
    const td = cell("No usage in this range", "empty"); td.colSpan = 6; tr.append(td); body.append(tr);
  }
  for (const run of report.runs) {
    const tr = document.createElement("tr");
    tr.dataset.dagId = run.dag_id;
    tr.dataset.runId = run.run_id;
    const badge = document.createElement("span");
    if (run.budget) {
      tr.className = "over";
      badge.className = "badge over";
      badge.textContent = "Over budget";
      badge.title = run.budget.message || "";
    } else {
      badge.className = "badge ok";
      badge.textContent = "–";
    }
    tr.append(cell(run.dag_id), cell(runLink(run)), ...usageCells(run), cell(badge));
    body.append(tr);
  }
  fillTable($("by-dag"), [["DAG"], ...USAGE_HEADERS], report.by_dag, (g, tr) => { tr.dataset.dagId = g.dag_id; return [cell(g.dag_id), ...usageCells(g)]; });
  fillTable($("by-model"), [["Model"], ...USAGE_HEADERS], report.by_model, (g) => [cell(g.model), ...usageCells(g)]);
  fillTable($("by-task"), [["DAG"], ["Task"], ...USAGE_HEADERS], report.by_task, (g) => [cell(g.dag_id), cell(g.task_id), ...usageCells(g)]);
  const apiName = { chat: "Chat Completions", responses: "Responses", batch: "Batch" };
  fillTable($("by-kind"), [["API"], ...USAGE_HEADERS, ["Tool calls", "num"]], report.by_kind,
    (g) => [cell(apiName[g.kind] || g.kind), ...usageCells(g), cell(fmtInt(g.num_server_side_tools_used), "num")]);
  fillTable($("waits"), [["DAG"], ["Model"], ["Requests", "num"], ["Waited in workers", "num"], ["Deferred", "num"], ["429s", "num"]],
    report.waits, (g) => [cell(g.dag_id), cell(g.model), cell(fmtInt(g.requests), "num"), cell(fmtSec(g.waited_s), "num waited"),
      cell(fmtSec(g.deferred_s), "num deferred"), cell(fmtInt(g.rate_limited), "num refused")]);
  fillTable($("tools"), [["Tool"], ["Calls", "num"], ["Requests using it", "num"]], report.tools,
    (g) => [cell(g.tool), cell(fmtInt(g.calls), "num"), cell(fmtInt(g.records), "num")]);
}

function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

function drawCharts(report) {
  const days = report.window.days;
  const ranked = report.by_dag.map((g) => g.dag_id);
  const shown = ranked.slice(0, PALETTE.length - 1);
  const seriesOf = (dag) => (shown.includes(dag) ? dag : OTHERS);
  const names = ranked.length > shown.length ? [...shown, OTHERS] : shown;
  const text = cssVar("--text"), muted = cssVar("--muted"), grid = cssVar("--border");
  for (const [id, field, format] of [["cost-chart", "cost_usd", fmtUsd], ["token-chart", "total_tokens", fmtInt]]) {
    const data = Object.fromEntries(names.map((n) => [n, days.map(() => 0)]));
    for (const row of report.daily) {
      const at = days.indexOf(row.day);
      if (at >= 0) data[seriesOf(row.dag_id)][at] += row[field];
    }
    const config = {
      type: "bar",
      data: {
        labels: days,
        datasets: names.map((n, i) => ({ label: n, data: data[n], backgroundColor: PALETTE[n === OTHERS ? PALETTE.length - 1 : i], stack: "usage" })),
      },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: {
          legend: { position: "bottom", labels: { color: text, boxWidth: 12 } },
          tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${format(c.parsed.y)}` } },
        },
        scales: {
          x: { stacked: true, ticks: { color: muted, maxRotation: 0, autoSkip: true }, grid: { color: grid } },
          y: { stacked: true, beginAtZero: true, ticks: { color: muted, callback: (v) => format(v) }, grid: { color: grid } },
        },
      },
    };
    if (charts[id]) charts[id].destroy();
    charts[id] = new Chart($(id), config);
  }
}

/* --- budgets and forecast against actual ------------------------------------------------- */
const fmtAmount = (unit, n) => (unit === "usd" ? fmtUsd(n) : fmtInt(n) + " tokens");
const fmtShare = (n) => Math.round(100 * n) + "%";

function burnBar(b) {
  const bar = document.createElement("div");
  bar.className = "burn";
  bar.title = `${fmtShare(b.used_share)} of the limit used, ${fmtShare(b.elapsed_share)} of the period gone`;
  const used = document.createElement("div");
  used.className = b.over ? "used over" : "used";
  used.style.width = fmtShare(Math.min(b.used_share, 1));
  const elapsed = document.createElement("div");
  elapsed.className = "elapsed";
  elapsed.style.left = fmtShare(b.elapsed_share);
  bar.append(used, elapsed);
  const td = cell(bar);
  td.append(` ${fmtShare(b.used_share)}`);
  return td;
}

function renderBudgets(report) {
  $("budget-source").textContent = report.store ? `connection ${report.conn_id} · ${report.store}` : `connection ${report.conn_id}`;
  $("budget-error").hidden = !report.error;
  $("budget-error").textContent = report.error || "";
  fillTable($("budgets"), [["Budget"], ["Scope"], ["Period"], ["Limit", "num"], ["Committed", "num"], ["Remaining", "num"], ["Burn-down"], ["Resets (UTC)"]],
    report.budgets, (b, tr) => {
      tr.dataset.budget = b.name;
      if (b.over) tr.className = "over";
      return [cell(b.name), cell(b.scope), cell(`${b.period} ${b.period_id}`), cell(fmtAmount(b.unit, b.limit), "num"),
        cell(fmtAmount(b.unit, b.committed), "num committed"), cell(fmtAmount(b.unit, b.remaining), "num remaining"),
        burnBar(b), cell(b.resets_at.replace("T", " ").slice(0, 16))];
    }, report.error ? "Budgets unavailable" : "No budgets declared");
}

function renderForecasts(report) {
  const t = report.totals;
  $("forecast-total").textContent = t.compared
    ? `billed ${fmtUsd(t.actual_usd)} of ${fmtUsd(t.forecast_usd)} forecast (${fmtShare(t.ratio)}) over ${fmtInt(t.compared)} call(s)`
      + (t.over_forecast ? ` · ${fmtInt(t.over_forecast)} over its forecast` : "") + (t.refused ? ` · ${fmtInt(t.refused)} refused` : "")
    : "";
  fillTable($("forecasts"), [["When (UTC)"], ["DAG"], ["Run"], ["Task"], ["Model"], ["Forecast (USD)", "num"], ["Actual (USD)", "num"], ["Actual / forecast", "num"]],
    report.calls, (c, tr) => {
      tr.dataset.dagId = c.dag_id;
      tr.dataset.runId = c.run_id;
      const actual = c.refused ? cell("refused", "num empty") : cell(c.actual_usd === null ? "–" : fmtUsd(c.actual_usd), "num actual");
      if (c.refused) actual.title = c.refused;
      const over = c.ratio !== null && c.ratio > 1;
      return [cell(c.at.replace("T", " ").slice(0, 19)), cell(c.dag_id), cell(runLink(c)), cell(c.task_id), cell(c.model),
        cell(c.forecast_usd === null ? "unpriced" : fmtUsd(c.forecast_usd), "num forecast"), actual,
        cell(c.ratio === null ? "–" : fmtShare(c.ratio), over ? "num ratio over" : "num ratio")];
    }, "No forecasts in this range");
}

/* A part that cannot load says so in its place; the rest of the page stays. */
async function loadPart(path, render, errorId) {
  try {
    const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.status);
    render(body);
  } catch (err) {
    $(errorId).hidden = false;
    $(errorId).textContent = `Could not load: ${err.message}`;
  }
}

async function load() {
  $("status").hidden = false;
  delete document.body.dataset.loaded;
  $("status").textContent = "Loading…";
  const response = await fetch("api/usage?" + params().toString(), { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) {
    const detail = await response.json().catch(() => ({}));
    $("report").hidden = true;
    $("status").textContent = response.status === 401 || response.status === 403
      ? "Log in to Airflow to see xAI usage." : `Could not load usage: ${detail.detail || response.status}`;
    return;
  }
  const report = await response.json();
  lastReport = report;
  fillFilters(report);
  renderTotals(report);
  renderTables(report);
  $("report").hidden = false;
  drawCharts(report);
  await Promise.all([
    loadPart("api/budgets", renderBudgets, "budget-error"),
    loadPart("api/forecasts?" + params().toString(), renderForecasts, "forecast-error"),
  ]);
  $("status").hidden = true;
  document.body.dataset.loaded = "true";
}

watchTheme();
$("filters").addEventListener("submit", onSubmit);
load();
