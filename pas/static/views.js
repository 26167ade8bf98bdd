/* PAS HMI views: the agent tree, the runs table and run view, the comms log. Plain JS, loaded
   before app.js (which holds the state S, api(), el(), toast() and the live event wiring). */
"use strict";

/* ---------- time helpers ---------- */
const parseTs = (ts) => (ts ? Date.parse(ts) : NaN);
function fmtTime(ts) {
  const t = parseTs(ts);
  if (isNaN(t)) return "-";
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
function secsBetween(a, b) {
  const x = parseTs(a), y = parseTs(b);
  return isNaN(x) || isNaN(y) ? null : (y - x) / 1000;
}
function fmtSecs(s) {
  if (s === null || s === undefined) return "-";
  return s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : Math.round(s).toString();
}
function fmtAge(ts) {
  const t = parseTs(ts);
  if (isNaN(t)) return "";
  return fmtSecs(Math.max(0, (Date.now() - t) / 1000)) + "s";
}

/* ---------- agents ---------- */
function renderTree() {
  const tree = $("tree");
  tree.replaceChildren();
  S.els.clear();
  for (const tier of TIERS) {
    const agents = [...S.agents.values()].filter((a) => a.tier === tier);
    if (!agents.length) continue;
    const block = el("div", { class: "tier", "data-testid": "tier-" + tier }, el("h3", { text: tier }));
    const groups = new Map();
    for (const a of agents) {
      const key = a.lane || "";
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(a);
    }
    for (const [lane, list] of groups) {
      const box = el("div", { class: "lane-agents" });
      list.forEach((a) => box.append(agentRow(a)));
      const laneEl = lane
        ? el("div", { class: "lane", "data-testid": `lane-${tier}-${lane}` }, el("span", { class: "lane-name", text: lane }), box)
        : el("div", { class: "lane nolane" }, box);
      block.append(laneEl);
    }
    tree.append(block);
  }
  $("agent-count").textContent = `${S.agents.size} configured`;
  updateSummary();
}

function agentRow(a) {
  const status = el("span", { class: "status" });
  const age = el("span", { class: "age" });
  const note = el("span", { class: "model-note", "data-testid": "model-note-" + a.id });
  let select = null;
  let modelBox;
  if (a.model_editable) {
    select = el("select", { "data-testid": "model-" + a.id, title: "primary model profile of " + a.id,
      onchange: () => setModel(a.id, select.value) });
    for (const [name, p] of Object.entries(S.profiles)) {
      select.append(el("option", { value: name, title: p.model, text: name }));
    }
    if (a.model && !(a.model in S.profiles)) select.append(el("option", { value: a.model, text: a.model }));
    select.value = a.model || "";
    modelBox = el("span", { class: "model" }, select, note);
  } else {
    modelBox = el("span", { class: "model", text: a.model || "" }, note);
  }
  const row = el("div", { class: "agent", "data-testid": "agent-" + a.id, "data-state": a.state || "unknown",
    title: `${a.id} (${a.tier}${a.lane ? ", " + a.lane : ""}) parent ${a.parent || "-"}, port ${a.http_port || "-"}` },
    el("span", { class: "dot" }), el("span", { class: "id", text: a.id }), status, age, modelBox);
  S.els.set(a.id, { row, status, age, select, note });
  paintAgent(a.id);
  return row;
}

function paintAgent(id) {
  const a = S.agents.get(id), e = S.els.get(id);
  if (!a || !e) return;
  e.row.dataset.state = a.state || "unknown";
  e.status.textContent = a.state === "dead" ? "dead" : (a.status || "");
  e.status.title = a.message || "";
  e.age.textContent = fmtAge(a.last_beat);
  const deadline = (S.config.heartbeat_interval_s * (S.config.missed_beats + 1)) * 1000;
  const stale = a.state === "alive" && Date.now() - parseTs(a.last_beat) > deadline;
  e.row.classList.toggle("stale", stale);
  if (e.select && !e.select.disabled && a.model) e.select.value = a.model;
}

function updateSummary() {
  let alive = 0, dead = 0;
  for (const a of S.agents.values()) { if (a.state === "alive") alive++; else if (a.state === "dead") dead++; }
  const running = [...S.runs.values()].filter((r) => LIVE_RUN.has(r.status)).length;
  $("summary").textContent = `${alive} alive · ${dead} dead · ${S.agents.size - alive - dead} unknown · ${running} active run(s)`;
}

async function setModel(id, profile) {
  const e = S.els.get(id);
  e.select.disabled = true;
  e.note.className = "model-note";
  e.note.textContent = "switching…";
  try {
    const r = await api(`/api/agents/${id}/model`, { method: "POST", body: { primary: profile } });
    S.agents.get(id).model = r.model;
    showModelChange(r, "reply");
  } catch (err) {
    e.note.className = "model-note err";
    e.note.textContent = err.message;
    e.select.value = S.agents.get(id).model || "";
  } finally {
    e.select.disabled = false;
  }
}

/* The change is shown twice over: the set_model reply, then the agent's model_changed event. */
function showModelChange(ch, source) {
  const e = S.els.get(ch.agent);
  if (!e) return;
  const prev = ch.previous && ch.previous.model;
  e.note.className = "model-note";
  e.note.textContent = "✓";
  e.note.dataset.model = ch.model;
  e.note.dataset.source = source;
  e.note.title = `${prev} → ${ch.model} (${source} ${fmtTime(ch.ts)})`;
  if (e.select) {
    e.select.classList.add("changed");
    e.select.title = e.note.title;
  }
  if (source === "event") toast(`${ch.agent}: model ${prev} → ${ch.model}`);
}

/* Records only move forward (queued -> running -> terminal): a late snapshot must not undo an event. */
// waiting_approval outranks running (a stale "running" snapshot must not hide the plan); an approval
// moves a run back to running: fetchRun and onRunEvent let that through (approved / "plan approved").
const RANK = { queued: 0, running: 1, waiting_approval: 1.5 };
const rank = (s) => (s in RANK ? RANK[s] : 2);
const newer = (old, fresh) => (old && rank(old) > rank(fresh) ? old : fresh);

/* ---------- runs ---------- */
function taskCounts(runId) {
  const m = S.tasks.get(runId);
  if (!m || !m.size) return "";
  let done = 0;
  for (const t of m.values()) if (!LIVE_RUN.has(t.status)) done++;
  return `${done}/${m.size}`;
}

function renderRuns() {
  const body = $("runs-body");
  const runs = [...S.runs.values()].sort((a, b) => parseTs(b.created_at) - parseTs(a.created_at)).slice(0, MAX_RUNS);
  body.replaceChildren(...runs.map((r) => {
    const cancel = LIVE_RUN.has(r.status)
      ? el("button", { "data-testid": "cancel-" + r.run_id, text: "cancel",
        onclick: (ev) => { ev.stopPropagation(); cancelRun(r.run_id); } })
      : null;
    return el("tr", { class: "run" + (r.run_id === S.selected ? " selected" : ""), "data-testid": "run-" + r.run_id,
      "data-status": r.status, onclick: () => selectRun(r.run_id, true) },
      el("td", { class: "mono", text: r.run_id }),
      el("td", { class: "title", text: r.title || "", title: r.title || "" }),
      el("td", {}, el("span", { class: "badge " + r.status, text: r.status })),
      el("td", { class: "mono", text: taskCounts(r.run_id) }),
      el("td", { text: fmtTime(r.created_at) }),
      el("td", { text: fmtSecs(secsBetween(r.started_at || r.created_at, r.finished_at)) }),
      el("td", {}, cancel));
  }));
  $("runs-empty").hidden = runs.length > 0;
  const f = $("f-run"), cur = f.value;
  f.replaceChildren(el("option", { value: "", text: "all runs" }),
    ...runs.map((r) => el("option", { value: r.run_id, text: r.run_id })));
  f.value = cur;
  updateSummary();
}

async function cancelRun(runId) {
  try {
    const r = await api(`/api/runs/${runId}/cancel`, { method: "POST" });
    toast(`${r.run_id} ${r.status}`);
  } catch (err) {
    toast(`cancel ${runId}: ${err.message}`, true);
  }
}

async function fetchRun(runId) {
  try {
    const d = await api(`/api/runs/${runId}`);
    const prev = S.runs.get(runId) || {};
    const approved = d.approval && d.approval.status === "approved" && prev.status === "waiting_approval";
    const late = prev.status && rank(prev.status) > rank(d.status) && !approved;
    S.runs.set(runId, Object.assign(prev, { run_id: d.run_id, title: d.title, created_at: d.created_at },
      late ? {} : { status: d.status, started_at: d.started_at, finished_at: d.finished_at }));
    const tm = S.tasks.get(runId) || new Map();
    d.tasks.forEach((t) => { const o = tm.get(t.task_id); tm.set(t.task_id, o && rank(o.status) > rank(t.status) ? o : t); });
    S.tasks.set(runId, tm);
    const lm = S.lanes.get(runId) || new Map();
    (d.lane_states || []).forEach((l) => lm.set(l.lane, newer(lm.get(l.lane), l.status)));
    S.lanes.set(runId, lm);
    if (runId === S.selected) S.detail = d;
    return d;
  } catch (err) {
    return null;
  }
}

async function selectRun(runId, byUser) {
  if (byUser) S.pinned = true;
  S.selected = runId;
  await fetchRun(runId);
  renderRuns();
  renderRunView();
}

function renderRunView() {
  const v = $("run-view");
  const r = S.selected && S.runs.get(S.selected);
  if (!r) { v.hidden = true; return; }
  v.hidden = false;
  $("rv-title").textContent = `${r.run_id} — ${r.title || ""}`;
  // The replay timeline (pas replay's page, from PAS_EVENTS and PAS_COMMS), rendered by the adapter.
  $("rv-timeline").href = `/api/runs/${encodeURIComponent(r.run_id)}/timeline.html`;
  const st = $("rv-status");
  st.className = "badge " + r.status;
  st.textContent = r.status;
  st.dataset.status = r.status;
  const tasks = [...(S.tasks.get(r.run_id) || new Map()).values()].sort((a, b) => a.task_id.localeCompare(b.task_id));
  // The gateway's usage (tasks plus planning calls) once fetched; the tasks' own sum until then.
  const usage = S.detail && S.detail.run_id === r.run_id && S.detail.usage;
  const tokens = usage ? usage.tokens : tasks.reduce((n, t) => n + (t.tokens || 0), 0);
  const costUnknown = usage ? usage.cost_usd === null : tasks.some((t) => t.cost_usd === null);
  const cost = usage ? usage.cost_usd || 0 : tasks.reduce((n, t) => n + (t.cost_usd || 0), 0);
  $("rv-meta").textContent = `created ${fmtTime(r.created_at)} · started ${fmtTime(r.started_at)} · ` +
    `finished ${fmtTime(r.finished_at)} · ${fmtSecs(secsBetween(r.started_at || r.created_at, r.finished_at))} s · ` +
    `${tokens} tokens · ${costUnknown ? "cost unknown" : "$" + cost.toFixed(4)}`;
  const lanes = S.lanes.get(r.run_id) || new Map();
  $("rv-lanes").replaceChildren(...[...lanes.entries()].map(([lane, status]) =>
    el("span", { class: "lane-chip", "data-testid": "lane-" + lane, "data-status": status },
      lane + " ", el("span", { class: "badge " + status, text: status }))));
  $("rv-tasks").replaceChildren(...tasks.map((t) => el("tr", { "data-testid": "task-" + t.task_id, "data-status": t.status },
    el("td", { class: "mono", text: t.task_id }),
    el("td", { text: t.lane }),
    el("td", {}, el("span", { class: "badge " + t.status, text: t.status })),
    el("td", { class: "mono", text: t.programmer || "-" }),
    el("td", { text: String(t.attempts || 0) }),
    el("td", { text: fmtTime(t.started_at) }),
    el("td", { text: fmtSecs(secsBetween(t.started_at, t.finished_at)) }),
    el("td", { text: String(t.tokens || 0) }),
    el("td", { text: t.cost_usd === null ? "?" : "$" + (t.cost_usd || 0).toFixed(4) }),
    el("td", { class: "result", title: (t.error || t.output || "").slice(0, 2000),
      text: t.error || (t.command || t.instruction || "").slice(0, 80) }))));
  renderPlan(r);
}

/* ---------- plan and approval (approval_mode runs) ---------- */
async function renderPlan(r) {
  const box = $("rv-plan");
  if (r.status !== "waiting_approval") { box.hidden = true; box.dataset.run = ""; return; }
  if (box.dataset.run === r.run_id) return;  // shown (or loading): keep the user's choices
  box.dataset.run = r.run_id;
  let plan;
  try {
    plan = await api(`/api/runs/${r.run_id}/plan`);
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
    el("td", { class: "result", text: (t.spec.command || t.spec.instruction || "").slice(0, 120) }))));
  const reason = el("input", { type: "text", placeholder: "reason", "data-testid": "plan-reason" });
  const a = plan.approval || {};
  box.replaceChildren(
    el("div", { class: "plan-head" },
      el("strong", { text: `Plan waiting for approval: ${rows.length} task(s)` }),
      el("span", { class: "meta", text: ` · deadline ${(a.deadline || "-").replace("T", " ").slice(0, 19)} UTC` })),
    el("table", { class: "tasks" },
      el("thead", {}, el("tr", {}, ...["keep", "task", "lane", "executor", "what"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...rows)),
    el("div", { class: "plan-actions" },
      el("button", { "data-testid": "approve-" + r.run_id, text: "Approve", onclick: () => decide(r.run_id, true) }),
      reason,
      el("button", { "data-testid": "reject-" + r.run_id, text: "Reject",
        onclick: () => decide(r.run_id, false, reason.value) })));
  box.hidden = false;
}

async function decide(runId, approve, reason) {
  const box = $("rv-plan");
  const drop = [...box.querySelectorAll("input[data-task]")].filter((c) => !c.checked).map((c) => c.dataset.task);
  try {
    const r = await api(`/api/runs/${runId}/${approve ? "approve" : "reject"}`,
      { method: "POST", body: approve ? { drop } : { reason: reason || "" } });
    toast(`${r.run_id} ${r.status}` + (drop.length && approve ? ` (dropped ${drop.join(", ")})` : ""));
    const known = S.runs.get(runId);
    if (known) known.status = r.status;
    fetchRun(runId).then(scheduleRender);
  } catch (err) {
    toast(`${approve ? "approve" : "reject"} ${runId}: ${err.message}`, true);
  }
}

/* ---------- comms log ---------- */
function logMatches(e) {
  const run = $("f-run").value, agent = $("f-agent").value, type = $("f-type").value;
  if (run && e.run_id !== run) return false;
  if (agent && e.from_agent !== agent && e.to_agent !== agent) return false;
  if (type && e.msg_type !== type) return false;
  return true;
}

function logLine(e) {
  return el("div", { class: "log-entry " + e.msg_type, "data-testid": "log-entry", "data-run": e.run_id || "",
    "data-type": e.msg_type, "data-t": String(parseTs(e.ts) || 0) },
  el("span", { class: "ts", text: fmtTime(e.ts) + " " }),
  el("span", { class: "run", text: (e.run_id || "-") + " " }),
  el("span", { class: "who", text: `${e.from_agent} → ${e.to_agent} ` }),
  el("span", { class: "type", text: e.msg_type + " " }),
  el("span", { class: "st", text: (e.status || "") + " " }),
  el("span", { class: "msg", text: e.message + (e.llm_model ? ` [${e.llm_model} tok=${e.tokens}]` : "") }));
}

/* Entries come from several processes, so the stream's order is not the order things happened in
   (a programmer's RESPONSE can be stored after the run's completion). The log shows time order. */
function insertByTime(log, line) {
  const t = Number(line.dataset.t);
  let after = log.lastElementChild;
  while (after && Number(after.dataset.t) > t) after = after.previousElementSibling;
  if (after) after.after(line); else log.prepend(line);
}

function appendLog(entries) {
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 30;
  for (const e of entries) if (logMatches(e)) insertByTime(log, logLine(e));
  while (log.childElementCount > MAX_LOG) log.firstElementChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

/* Live entries that arrive while a reload is in flight are kept and replayed after it, so a
   slow snapshot never wipes what the stream already showed. */
const logKey = (e) => `${e.ts}|${e.from_agent}|${e.to_agent}|${e.msg_type}|${e.message}`;

async function reloadLog() {
  const q = new URLSearchParams({ limit: "200" });
  if ($("f-run").value) q.set("run", $("f-run").value);
  if ($("f-agent").value) q.set("agent", $("f-agent").value);
  if ($("f-type").value) q.set("type", $("f-type").value);
  const buffer = [];
  S.logBuffer = buffer;
  try {
    const r = await api("/api/comms?" + q);
    if (S.logBuffer !== buffer) return;  // a newer reload took over
    const have = new Set(r.entries.map(logKey));
    $("log").replaceChildren();
    appendLog(r.entries.concat(buffer.filter((e) => !have.has(logKey(e)))));
    $("log").scrollTop = $("log").scrollHeight;
  } catch (err) {
    toast("comms log: " + err.message, true);
  } finally {
    if (S.logBuffer === buffer) S.logBuffer = null;
  }
}
