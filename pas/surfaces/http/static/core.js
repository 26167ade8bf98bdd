/* PAS HMI core, loaded first: the state S, DOM and API helpers, and the one render per animation
   frame (events only change S and mark what is dirty; views.js, runs.js and log.js draw it). Nothing
   touches the DOM between frames, so reading layout is never forced; a hidden page gets no frames
   (and app.js closes its stream until it is visible again). */
"use strict";

const TIERS = ["gateway", "root", "architect", "director", "manager", "programmer", "monitor"];
const MSG_TYPES = ["CMD", "STATUS", "RESPONSE", "HEARTBEAT", "ERROR", "LLM", "EVENT"];
const LIVE_RUN = new Set(["queued", "running", "waiting_approval"]);
const MAX_LOG = 5000;
const MAX_RUNS = 100;
const LAG_WARN_MS = 1000;

const S = {
  config: { heartbeat_interval_s: 5, missed_beats: 2 },
  agents: new Map(),   // id -> row (from /api/agents, updated by events)
  els: new Map(),      // id -> {row, status, age, select, note}
  profiles: {},
  runs: new Map(),     // run_id -> summary {run_id, title, status, created_at, finished_at}
  tasks: new Map(),    // run_id -> {byId: Map(task_id -> TaskRecord), order: [task_id sorted], done}
  counts: new Map(),   // run_id -> {done, total} of the tasks as planned (job records)
  lanes: new Map(),    // run_id -> Map(lane -> status)
  selected: null,      // run id shown in the run view
  pinned: false,       // the user picked a run (or the URL named one): do not follow the newest
  detail: null,        // the selected run's detail
  log: [],             // comms entries in time order (log.js)
  logKeys: new Set(),
  logShown: null,      // S.log through the filters (null: compute again)
  logBuffer: null,     // live comms entries held while the log reloads
  liveSeq: null,       // the last PAS_COMMS sequence the live stream brought
  gaps: 0,             // holes in the live comms filled from PAS_COMMS
  clockOffset: 0,      // server clock minus ours (ms), from "hello"
  taskFields: [],      // how to read a live task row, from "hello"
  taskStates: [],
  oldest: null,        // server time (ms) the oldest unrendered item reached the adapter
  lagMs: 0,            // how far behind the bus the last render was
  renderedAt: 0,
  renders: 0,          // renders so far (tests and pas bench count them)
  trace: null,         // ?trace=1: per-item arrival and paint times, for pas bench (hmiTrace)
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

/* ---------- rendering: once per animation frame, only what changed, paced by what the user watches ----------
   Each render costs a style, layout, paint and raster pass, and five pages open during a 2,000-task
   job took that CPU from PAS (issue 22). So what is on screen and watched renders promptly, and the
   rest at most twice a second:
   - markDirty (a task row in view changed state, a run's status, an alert, a fetched run): in the next
     frame, at most every MIN_FRAME_MS. The adapter sends a batch at most every 0.1 s
     (pas.surfaces.http.events), so its batches pace these renders, and a batch waits for no timer here;
   - markLater (comms lines, counts, tasks out of view, lanes, the lag indicator): at most every
     SLOW_FRAME_MS, or with the next prompt render. During a big job the rows in view settle in the
     first second; from then on the page renders twice a second instead of at every batch;
   - markNow (a scroll, a resize): the next frame, so scrolling stays smooth.
   Beats render with the 1 s redraw of their ages (app.js), not on arrival. Idle, no timer runs here. */
const MIN_FRAME_MS = 50;
const SLOW_FRAME_MS = 500;
let lastRender = 0;
const dirty = { agents: false, runs: false, view: false, log: false };
const agentsDirty = new Set();  // agents whose row changed (beats, alerts) since the last render

function agentChanged(id, later) {
  agentsDirty.add(id);
  if (!later) markDirty("agents");
}

let dueAt = Infinity;  // when the render scheduled will run (performance.now() time)
let renderTimer = null;

function schedule(what, spacing) {
  for (const w of what) dirty[w] = true;
  const now = performance.now(), at = Math.max(now, lastRender + spacing);
  if (at >= dueAt) return;  // a render at least as soon is on its way
  dueAt = at;
  clearTimeout(renderTimer);
  renderTimer = setTimeout(() => requestAnimationFrame(render), at - now);
}

function markDirty(...what) { schedule(what, MIN_FRAME_MS); }
function markLater(...what) { schedule(what, SLOW_FRAME_MS); }

let nowPending = false;
function markNow(what) {
  dirty[what] = true;
  if (nowPending) return;
  nowPending = true;
  requestAnimationFrame(() => { nowPending = false; render(); });
}

function render() {
  lastRender = performance.now();
  dueAt = Infinity;
  S.renders++;
  if (dirty.agents) {
    dirty.agents = false;
    for (const id of agentsDirty) paintAgent(id);
    agentsDirty.clear();
    updateSummary();
  }
  if (dirty.runs) { dirty.runs = false; renderRuns(); }
  if (dirty.view) { dirty.view = false; renderRunView(); }
  if (dirty.log) { dirty.log = false; renderLog(); }
  if (S.oldest !== null) {
    S.lagMs = Date.now() + S.clockOffset - S.oldest;
    S.oldest = null;
    S.renderedAt = Date.now();
    showLag();
  }
}

/* "live", or "behind by N s" while what the page shows is more than a second older than the bus. */
function showLag() {
  const c = $("conn");
  if (["connecting", "reconnecting", "paused"].includes(c.dataset.state)) return;
  const idle = Date.now() - S.renderedAt > 2000 && S.oldest === null;
  const behind = !idle && S.lagMs > LAG_WARN_MS;
  setData(c, "state", behind ? "behind" : "live");
  setData(c, "lag", String(Math.round(behind ? S.lagMs : 0)));
  setText(c, behind ? `behind by ${(S.lagMs / 1000).toFixed(1)} s` : "live");
}

function received(t) {
  if (typeof t === "number" && (S.oldest === null || t < S.oldest)) S.oldest = t;
}

