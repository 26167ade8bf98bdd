/* PAS HMI: the runs table, the run view (virtualised task rows) and the plan waiting for approval.
   Loaded after views.js and virtual.js, before app.js (which holds the state S and the event wiring).
   Everything here writes text with textContent/setAttribute (el(), setText): no field from the bus
   is ever parsed as HTML. */
"use strict";

/* Records only move forward (queued -> running -> terminal): a late snapshot must not undo an event. */
// waiting_approval outranks running (a stale "running" snapshot must not hide the plan); an approval
// moves a run back to running: fetchRun and onRunItem let that through (approved / "plan approved").
const RANK = { queued: 0, running: 1, waiting_approval: 1.5 };
const rank = (s) => (s in RANK ? RANK[s] : 2);
const newer = (old, fresh) => (old && rank(old) > rank(fresh) ? old : fresh);
const ended = (s) => rank(s) >= 2;
const TASK_ROW_H = 20;

/* ---------- task bookkeeping: one map per run, ids kept sorted, done counted as states arrive ---------- */
function runTasks(runId) {
  let t = S.tasks.get(runId);
  if (!t) {
    t = { byId: new Map(), order: [], done: 0 };
    S.tasks.set(runId, t);
  }
  return t;
}

/* Keeps the newer of the record known and rec; true when something changed. */
function putTask(runId, rec) {
  const t = runTasks(runId);
  const old = t.byId.get(rec.task_id);
  if (old && rank(old.status) > rank(rec.status)) return false;
  if (!old) {
    let lo = 0, hi = t.order.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (t.order[mid] < rec.task_id) lo = mid + 1; else hi = mid; }
    t.order.splice(lo, 0, rec.task_id);
  }
  if (ended(rec.status) && !(old && ended(old.status))) t.done++;
  t.byId.set(rec.task_id, rec);
  if (S.trace) S.trace.task(runId, rec);
  return true;
}

/* Whether task taskId of runId is in the rows of the run view (its window, as last rendered). */
function taskInView(runId, taskId) {
  if (runId !== S.selected) return false;
  const order = runTasks(runId).order;
  let lo = 0, hi = order.length;
  while (lo < hi) { const mid = (lo + hi) >> 1; if (order[mid] < taskId) lo = mid + 1; else hi = mid; }
  const [first, last] = taskView.window(order.length);
  return lo >= first && lo < last;
}

/* done/total of the tasks as planned: the job records' counts (GET /api/runs, a run's detail), or the
   tasks heard of when that is more (each task is announced "queued" as its job is planned). */
function taskCounts(runId) {
  const planned = S.counts.get(runId), t = S.tasks.get(runId);
  const total = Math.max(planned ? planned.total : 0, t ? t.order.length : 0);
  if (!total) return "";
  return `${Math.max(planned ? planned.done : 0, t ? t.done : 0)}/${total}`;
}

/* ---------- runs table: rows updated in place ---------- */
const runRows = new Map();  // run id -> {tr, cells}
let runOptionsKey = "";

function runRow(runId) {
  let r = runRows.get(runId);
  if (r) return r;
  const cells = Array.from({ length: 7 }, () => el("td"));
  cells[0].className = "mono";
  cells[1].className = "title";
  cells[3].className = "mono";
  const badge = el("span", { class: "badge" });
  cells[2].append(badge);
  const tr = el("tr", { class: "run", "data-testid": "run-" + runId, onclick: () => selectRun(runId, true) }, ...cells);
  r = { tr, cells, badge, cancel: null, sig: "" };
  runRows.set(runId, r);
  return r;
}

function renderRuns() {
  const body = $("runs-body");
  const runs = [...S.runs.values()].sort((a, b) => parseTs(b.created_at) - parseTs(a.created_at)).slice(0, MAX_RUNS);
  const keep = new Set(runs.map((r) => r.run_id));
  for (const [id, row] of runRows) if (!keep.has(id)) { row.tr.remove(); runRows.delete(id); }
  runs.forEach((r, i) => {
    const row = runRow(r.run_id), c = row.cells;
    if (body.children[i] !== row.tr) body.insertBefore(row.tr, body.children[i] || null);
    // What the row shows: unchanged (most runs, most renders), the row is not touched.
    const counts = taskCounts(r.run_id);
    const sig = [r.status, r.title, counts, r.created_at, r.started_at, r.finished_at, r.run_id === S.selected].join("|");
    if (row.sig === sig) return;
    row.sig = sig;
    row.tr.classList.toggle("selected", r.run_id === S.selected);
    setData(row.tr, "status", r.status);
    setText(c[0], r.run_id);
    setText(c[1], r.title || "");
    setTitle(c[1], r.title || "");
    row.badge.className = "badge " + r.status;
    setText(row.badge, r.status);
    setText(c[3], counts);
    setText(c[4], fmtTime(r.created_at));
    setText(c[5], fmtSecs(secsBetween(r.started_at || r.created_at, r.finished_at)));
    const live = LIVE_RUN.has(r.status);
    if (live && !row.cancel) {
      row.cancel = el("button", { "data-testid": "cancel-" + r.run_id, text: "cancel",
        onclick: (ev) => { ev.stopPropagation(); cancelRun(r.run_id); } });
      c[6].append(row.cancel);
    } else if (!live && row.cancel) {
      row.cancel.remove();
      row.cancel = null;
    }
  });
  $("runs-empty").hidden = runs.length > 0;
  const key = runs.map((r) => r.run_id).join(" ");
  if (key !== runOptionsKey) {
    runOptionsKey = key;
    const f = $("f-run"), cur = f.value;
    f.replaceChildren(el("option", { value: "", text: "all runs" }),
      ...runs.map((r) => el("option", { value: r.run_id, text: r.run_id })));
    f.value = cur;
  }
  updateSummary();
}

async function cancelRun(runId) {
  try {
    const r = await api(`/api/runs/${encodeURIComponent(runId)}/cancel`, { method: "POST" });
    toast(`${r.run_id} ${r.status}`);
  } catch (err) {
    toast(`cancel ${runId}: ${err.message}`, true);
  }
}

/* The run's detail (status, every task, lanes, usage, planned counts), merged so that nothing the
   events already moved forward goes back. */
async function fetchRun(runId) {
  let d;
  try {
    d = await api(`/api/runs/${encodeURIComponent(runId)}`);
  } catch (err) {
    return null;
  }
  const prev = S.runs.get(runId) || {};
  const approved = d.approval && d.approval.status === "approved" && prev.status === "waiting_approval";
  const late = prev.status && rank(prev.status) > rank(d.status) && !approved;
  S.runs.set(runId, Object.assign(prev, { run_id: d.run_id, title: d.title, created_at: d.created_at },
    late ? {} : { status: d.status, started_at: d.started_at, finished_at: d.finished_at }));
  d.tasks.forEach((t) => putTask(runId, t));
  if (d.task_counts) S.counts.set(runId, d.task_counts);
  const lm = S.lanes.get(runId) || new Map();
  (d.lane_states || []).forEach((l) => lm.set(l.lane, newer(lm.get(l.lane), l.status)));
  S.lanes.set(runId, lm);
  if (runId === S.selected) S.detail = d;
  markDirty("runs", "view");
  return d;
}

/* The run in view, chosen by the user (a click, or the URL: #/runs/<id> or ?run=<id>), else the newest. */
function runFromUrl() {
  const m = location.hash.match(/^#\/runs\/([A-Za-z0-9_-]{1,64})$/);
  if (m) return m[1];
  const q = new URLSearchParams(location.search).get("run");
  return q && /^[A-Za-z0-9_-]{1,64}$/.test(q) ? q : null;
}

async function selectRun(runId, byUser) {
  if (byUser) {
    S.pinned = true;
    const hash = "#/runs/" + runId;
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }
  if (S.selected !== runId) {
    S.selected = runId;
    S.detail = null;
    taskView.reset();
  }
  markDirty("runs", "view");
  await fetchRun(runId);
}

/* ---------- run view ---------- */
const taskView = new VirtualRows({
  scroller: $("rv-tasks-wrap"), holder: $("rv-tasks"), rowH: TASK_ROW_H,
  spacer: () => el("tr", {}, el("td", { colspan: "10" })),
  make: () => {
    const cells = Array.from({ length: 10 }, () => el("td"));
    cells[0].className = cells[3].className = "mono";
    cells[9].className = "result";
    const badge = el("span", { class: "badge" });
    cells[2].append(badge);
    const tr = el("tr", { class: "task" }, ...cells);
    tr.cells_ = cells;
    tr.badge_ = badge;
    return tr;
  },
  fill: (tr, t) => {
    // Only a row whose record changed is filled (VirtualRows), and each cell is compared with what
    // the row last showed (a plain array, no DOM read).
    const vals = [t.task_id, t.lane, t.status, t.programmer || "-", String(t.attempts || 0), fmtTime(t.started_at),
      fmtSecs(secsBetween(t.started_at, t.finished_at)), String(t.tokens || 0),
      t.cost_usd === null ? "?" : "$" + (t.cost_usd || 0).toFixed(4),
      t.text ?? (t.error || t.command || t.instruction || "")];  // text, hover: a live row's (app.js)
    const shown = tr.vals_ || [], c = tr.cells_;
    if (vals[0] !== shown[0]) tr.dataset.testid = "task-" + vals[0];
    if (vals[2] !== shown[2]) {
      tr.dataset.status = vals[2];
      tr.badge_.className = "badge " + vals[2];
    }
    for (let i = 0; i < vals.length; i++) if (vals[i] !== shown[i]) (i === 2 ? tr.badge_ : c[i]).textContent = vals[i];
    const title = (t.hover ?? (t.error || t.output || t.command || t.instruction || "")).slice(0, 2000);
    if (title !== tr.title_) c[9].title = tr.title_ = title;
    tr.vals_ = vals;
    if (S.trace) S.trace.shown(t);
  },
});
taskView.onchange = () => markNow("view");

let lanesKey = "";
function renderRunView() {
  const v = $("run-view");
  const r = S.selected && S.runs.get(S.selected);
  if (!r) { v.hidden = true; return; }
  v.hidden = false;
  setText($("rv-title"), `${r.run_id} — ${r.title || ""}`);
  // The replay timeline (pas replay's page, from PAS_EVENTS and PAS_COMMS), rendered by the adapter.
  const href = `/api/runs/${encodeURIComponent(r.run_id)}/timeline.html`;
  if ($("rv-timeline").getAttribute("href") !== href) $("rv-timeline").setAttribute("href", href);
  const st = $("rv-status");
  st.className = "badge " + r.status;
  setText(st, r.status);
  setData(st, "status", r.status);
  const t = runTasks(r.run_id);
  // The gateway's usage (tasks plus planning calls) once fetched; the tasks' own sum until then.
  const usage = S.detail && S.detail.run_id === r.run_id && S.detail.usage;
  let tokens = 0, cost = 0, costUnknown = false;
  if (usage) {
    tokens = usage.tokens; cost = usage.cost_usd || 0; costUnknown = usage.cost_usd === null;
  } else {
    for (const x of t.byId.values()) { tokens += x.tokens || 0; cost += x.cost_usd || 0; costUnknown ||= x.cost_usd === null; }
  }
  const counts = taskCounts(r.run_id);
  setText($("rv-meta"), `created ${fmtTime(r.created_at)} · started ${fmtTime(r.started_at)} · ` +
    `finished ${fmtTime(r.finished_at)} · ${fmtSecs(secsBetween(r.started_at || r.created_at, r.finished_at))} s · ` +
    `${tokens} tokens · ${costUnknown ? "cost unknown" : "$" + cost.toFixed(4)}` + (counts ? ` · ${counts} tasks done` : ""));
  // A run waiting for approval: its lanes are planned and wait too (their records say running).
  const lanes = [...(S.lanes.get(r.run_id) || new Map()).entries()].map(([lane, s]) =>
    [lane, r.status === "waiting_approval" && s === "running" ? "waiting" : s]);
  const key = r.run_id + JSON.stringify(lanes);
  if (key !== lanesKey) {
    lanesKey = key;
    $("rv-lanes").replaceChildren(...lanes.map(([lane, status]) =>
      el("span", { class: "lane-chip", "data-testid": "lane-" + lane, "data-status": status },
        lane + " ", el("span", { class: "badge " + status, text: status }))));
  }
  taskView.set(t.order.length, (i) => t.byId.get(t.order[i]));
  taskView.render();
  renderPlan(r);
}

/* ---------- plan and approval (approval_mode runs): the buttons first, the plan's tasks below ---------- */
async function renderPlan(r) {
  const box = $("rv-plan");
  if (r.status !== "waiting_approval") { box.hidden = true; box.dataset.run = ""; return; }
  if (box.dataset.run === r.run_id) return;  // shown (or loading): keep the user's choices
  box.dataset.run = r.run_id;
  let plan;
  try {
    plan = await api(`/api/runs/${encodeURIComponent(r.run_id)}/plan`);
  } catch (err) {
    box.dataset.run = "";
    toast(`plan ${r.run_id}: ${err.message}`, true);
    return;
  }
  const rows = plan.jobs.flatMap((j) => j.tasks.map((t) => el("tr", { "data-testid": "plan-task-" + t.task_id },
    el("td", {}, el("input", { type: "checkbox", checked: "checked", "data-task": t.task_id,
      "data-testid": "plan-keep-" + t.task_id, title: "untick to drop this task when approving" })),
    el("td", { class: "mono", text: t.task_id }),
    el("td", { text: j.lane }),
    el("td", { text: t.spec.executor || "-" }),
    el("td", { class: "result", text: t.spec.command || t.spec.instruction || "",
      title: (t.spec.command || t.spec.instruction || "").slice(0, 2000) }))));
  const reason = el("input", { type: "text", placeholder: "reason", "data-testid": "plan-reason" });
  const a = plan.approval || {};
  box.replaceChildren(
    el("div", { class: "plan-head" },
      el("strong", { text: `Plan waiting for approval: ${rows.length} task(s)` }),
      el("span", { class: "meta", text: ` · deadline ${(a.deadline || "-").replace("T", " ").slice(0, 19)} UTC` })),
    el("div", { class: "plan-actions" },
      el("button", { "data-testid": "approve-" + r.run_id, text: "Approve", onclick: () => decide(r.run_id, true) }),
      reason,
      el("button", { "data-testid": "reject-" + r.run_id, text: "Reject",
        onclick: () => decide(r.run_id, false, reason.value) })),
    el("div", { class: "plan-tasks" }, el("table", { class: "tasks" },
      el("thead", {}, el("tr", {}, ...["keep", "task", "lane", "executor", "what"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows))));
  box.hidden = false;
}

async function decide(runId, approve, reason) {
  const box = $("rv-plan");
  const drop = [...box.querySelectorAll("input[data-task]")].filter((c) => !c.checked).map((c) => c.dataset.task);
  try {
    const r = await api(`/api/runs/${encodeURIComponent(runId)}/${approve ? "approve" : "reject"}`,
      { method: "POST", body: approve ? { drop } : { reason: reason || "" } });
    toast(`${r.run_id} ${r.status}` + (drop.length && approve ? ` (dropped ${drop.join(", ")})` : ""));
    const known = S.runs.get(runId);
    if (known) known.status = r.status;
    fetchRun(runId);
  } catch (err) {
    toast(`${approve ? "approve" : "reject"} ${runId}: ${err.message}`, true);
  }
}
