/* PAS HMI: plain JS, no build step. State comes from /api once, then live over SSE (/api/events).
   The only timer is a 1 s local redraw of beat ages; nothing polls the server. */
"use strict";

const TIERS = ["gateway", "root", "architect", "director", "manager", "programmer", "monitor"];
const MSG_TYPES = ["CMD", "STATUS", "RESPONSE", "HEARTBEAT", "ERROR", "LLM", "EVENT"];
const LIVE_RUN = new Set(["queued", "running", "waiting_approval"]);
const MAX_LOG = 500;
const MAX_RUNS = 100;

const S = {
  config: { heartbeat_interval_s: 5, missed_beats: 2 },
  agents: new Map(),   // id -> row (from /api/agents, updated by events)
  els: new Map(),      // id -> {row, status, age, select, note}
  profiles: {},
  runs: new Map(),     // run_id -> summary {run_id, title, status, created_at, finished_at}
  tasks: new Map(),    // run_id -> Map(task_id -> TaskRecord)
  lanes: new Map(),    // run_id -> Map(lane -> status)
  selected: null,      // run id shown in the run view
  pinned: false,       // the user picked a run: do not follow the newest
  detail: null,        // the selected run's detail
  logBuffer: null,     // live comms entries held while the log reloads
  token: sessionStorage.getItem("pas-token") || "",
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}

function toast(text, err) {
  const t = $("toast");
  t.textContent = text;
  t.className = "toast" + (err ? " err" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}

async function api(path, opts) {
  const o = Object.assign({ headers: {} }, opts || {});
  if (o.body !== undefined && typeof o.body !== "string") {
    o.body = JSON.stringify(o.body);
    o.headers["Content-Type"] = "application/json";
  }
  if (o.method && o.method !== "GET" && S.token) o.headers["Authorization"] = "Bearer " + S.token;
  const r = await fetch(path, o);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) $("token-form").hidden = false;
  if (!r.ok) {
    const d = body && body.detail;
    const msg = typeof d === "string" ? d : JSON.stringify(d || body || r.statusText);
    const err = new Error(`${r.status}: ${msg}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

/* ---------- live events ---------- */
function onRunEvent(ev) {
  const { kind, run_id: runId, data } = ev;
  const known = S.runs.get(runId);
  if (kind === "status") {
    if (!known) {
      S.runs.set(runId, { run_id: runId, title: "", status: data.status, created_at: data.ts });
      fetchRun(runId).then(() => { renderRuns(); if (runId === S.selected) renderRunView(); });
      if (!S.pinned) S.selected = runId;
    } else {
      known.status = data.message === "plan approved" && known.status === "waiting_approval"
        ? data.status : newer(known.status, data.status);
      if (data.status === "running" && !known.started_at) known.started_at = data.ts;
      if (["completed", "failed", "cancelled", "rejected"].includes(data.status)) {
        known.finished_at = data.ts;
        if (runId === S.selected) fetchRun(runId).then(scheduleRender);  // once: final usage and lanes
      }
    }
  } else if (kind === "lane") {
    if (!S.lanes.has(runId)) S.lanes.set(runId, new Map());
    S.lanes.get(runId).set(data.lane, newer(S.lanes.get(runId).get(data.lane), data.status));
  } else if (kind === "task") {
    if (!S.tasks.has(runId)) S.tasks.set(runId, new Map());
    const o = S.tasks.get(runId).get(data.task_id);
    if (!o || rank(o.status) <= rank(data.status)) S.tasks.get(runId).set(data.task_id, data);
  } else {
    return;
  }
  scheduleRender();
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; renderRuns(); renderRunView(); });
}

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("conn").dataset.state = "live"; $("conn").textContent = "live"; loadAll(); };
  es.onerror = () => { $("conn").dataset.state = "reconnecting"; $("conn").textContent = "reconnecting…"; };
  es.addEventListener("beats", (m) => {
    const beats = JSON.parse(m.data);
    for (const [id, b] of Object.entries(beats)) {
      const a = S.agents.get(id);
      if (!a) continue;
      a.last_beat = b.ts; a.status = b.status; a.message = b.message; a.state = "alive"; a.eventAt = Date.now();
      paintAgent(id);
    }
    updateSummary();
  });
  es.addEventListener("alert", (m) => {
    const al = JSON.parse(m.data);
    const a = S.agents.get(al.agent);
    if (!a) return;
    a.state = al.kind === "dead" ? "dead" : "alive";
    a.eventAt = Date.now();
    paintAgent(al.agent);
    updateSummary();
    if (al.kind === "dead") toast(`agent ${al.agent} is dead (no beat for ${al.missed_s}s)`, true);
  });
  es.addEventListener("model", (m) => {
    const ch = JSON.parse(m.data);
    const a = S.agents.get(ch.agent);
    if (!a) return;
    a.model = ch.model; a.backup_model = ch.backup_model; a.eventAt = Date.now();
    showModelChange(ch, "event");
    paintAgent(ch.agent);
  });
  es.addEventListener("run", (m) => onRunEvent(JSON.parse(m.data)));
  es.addEventListener("comms", (m) => {
    if ($("f-pause").checked) return;
    const e = JSON.parse(m.data);
    if (S.logBuffer) S.logBuffer.push(e); else appendLog([e]);
  });
  es.addEventListener("resync", () => loadAll());
}

async function loadAll() {
  const started = Date.now();
  try {
    const [cfg, models, agents, runs] = await Promise.all([
      api("/api/config"), api("/api/models"), api("/api/agents"), api("/api/runs?limit=50")]);
    S.config = cfg;
    S.profiles = models.profiles;
    // An agent that an event touched since this load began keeps the event's (newer) state.
    const fresh = new Map(agents.agents.map((a) => [a.id, a]));
    for (const [id, old] of S.agents) {
      const a = fresh.get(id);
      if (a && old.eventAt >= started) Object.assign(a, { state: old.state, status: old.status,
        last_beat: old.last_beat, model: old.model, eventAt: old.eventAt });
    }
    S.agents = fresh;
    renderTree();
    const fa = $("f-agent"), cur = fa.value;
    fa.replaceChildren(el("option", { value: "", text: "all agents" }),
      ...agents.agents.map((a) => el("option", { value: a.id, text: a.id })));
    fa.value = cur;
    for (const r of runs.runs) S.runs.set(r.run_id, Object.assign(S.runs.get(r.run_id) || {}, r));
    if (!S.selected && runs.runs.length) S.selected = runs.runs[0].run_id;
    if (S.selected) await fetchRun(S.selected);
    renderRuns();
    renderRunView();
    await reloadLog();
  } catch (err) {
    toast("loading state: " + err.message, true);
  }
}

function init() {
  $("f-type").append(...MSG_TYPES.map((t) => el("option", { value: t, text: t })));
  for (const id of ["f-run", "f-agent", "f-type"]) $(id).addEventListener("change", reloadLog);
  const lane = $("submit-lane");
  ["code", "models", "data", "devsecops", "docs"].forEach((l) => lane.append(el("option", { value: l, text: l })));
  $("submit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const title = $("submit-title").value.trim(), command = $("submit-command").value.trim();
    const job = { title, lanes: [lane.value] };
    if (command) job.tasks = [{ lane: lane.value, instruction: command, command, executor: "command" }];
    else job.goal = title;
    try {
      const r = await api("/api/submit", { method: "POST", body: job });
      S.pinned = false;
      toast(`submitted ${r.run_id}`);
      $("submit-title").value = "";
    } catch (err) {
      toast("submit: " + err.message, true);
    }
  });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    S.token = $("token").value;
    sessionStorage.setItem("pas-token", S.token);
    $("token-form").hidden = true;
    toast("token set for this tab");
  });
  setInterval(() => { for (const id of S.agents.keys()) paintAgent(id); }, 1000);  // local redraw only
  connect();
}

init();
