/* PAS HMI: plain JS, no build step. State comes from /api once, then live over SSE (/api/events):
   batches of coalesced run states and comms entries (pas.surfaces.http.events). The only timer is a 1 s
   local redraw of beat ages and of the lag indicator; nothing polls the server. */
"use strict";

/* ---------- live events ---------- */
/* A task's state comes as one array, ["task", run_id, ...fields] (pas.surfaces.http.events: the
   fields and the status codes are in "hello"); runs, lanes and jobs as {kind, run_id, data}. */
function taskFromRow(row) {
  const rec = { run_id: row[1] }, f = S.taskFields;
  for (let i = 0; i < f.length; i++) rec[f[i]] = row[i + 2];
  rec.status = S.taskStates[rec.status];
  return rec;
}

function onRunItem(ev) {
  if (Array.isArray(ev)) ev = { kind: "task", run_id: ev[1], data: taskFromRow(ev) };
  const { kind, run_id: runId, data } = ev;
  const known = S.runs.get(runId);
  if (kind === "status") {
    if (!known) {
      S.runs.set(runId, { run_id: runId, title: "", status: data.status, created_at: data.ts });
      if (!S.pinned) S.selected = runId;
      fetchRun(runId);
    } else {
      known.status = data.message === "plan approved" && known.status === "waiting_approval"
        ? data.status : newer(known.status, data.status);
      if (data.status === "running" && !known.started_at) known.started_at = data.ts;
      if (["completed", "failed", "cancelled", "rejected"].includes(data.status)) {
        known.finished_at = data.ts;
        if (runId === S.selected) fetchRun(runId);  // once: final usage and lanes
      }
    }
  } else if (kind === "lane") {
    if (!S.lanes.has(runId)) S.lanes.set(runId, new Map());
    S.lanes.get(runId).set(data.lane, newer(S.lanes.get(runId).get(data.lane), data.status));
    markLater("runs", "view");
    return;
  } else if (kind === "task") {
    if (!putTask(runId, data)) return;
    // A row the user sees renders promptly; a task out of view only moves the counts (later).
    if (taskInView(runId, data.task_id)) markDirty("view");
    markLater("runs", "view");
    return;
  } else {
    return;
  }
  markDirty("runs");
  if (runId === S.selected) markDirty("view");
}

let stream = null;  // the EventSource, closed while the page is hidden

/* A hidden page (a background tab) costs nothing: its stream is closed, and when it is visible again
   it reconnects and loads the current state from /api, as after any reconnect. */
function onVisibility() {
  if (document.hidden && stream) {
    stream.close();
    stream = null;
    setData($("conn"), "state", "paused");
    setText($("conn"), "paused (hidden)");
  } else if (!document.hidden && !stream) {
    connect();
  }
}

function connect() {
  const es = stream = new EventSource("/api/events");
  es.onopen = () => { setData($("conn"), "state", "live"); setText($("conn"), "live"); loadAll(); };
  es.onerror = () => { setData($("conn"), "state", "reconnecting"); setText($("conn"), "reconnecting…"); };
  es.addEventListener("hello", (m) => {
    const h = JSON.parse(m.data);
    S.clockOffset = h.now - Date.now();
    S.taskFields = h.task_fields;
    S.taskStates = h.task_states;
  });
  es.addEventListener("beats", (m) => {
    const beats = JSON.parse(m.data);
    for (const [id, b] of Object.entries(beats)) {
      const a = S.agents.get(id);
      if (!a) continue;
      a.last_beat = b.ts; a.status = b.status; a.message = b.message; a.state = "alive"; a.eventAt = Date.now();
      agentChanged(id, true);  // painted by the 1 s redraw
    }
  });
  es.addEventListener("alert", (m) => {
    const al = JSON.parse(m.data);
    const a = S.agents.get(al.agent);
    if (!a) return;
    a.state = al.kind === "dead" ? "dead" : "alive";
    a.eventAt = Date.now();
    agentChanged(al.agent);
    if (al.kind === "dead") toast(`agent ${al.agent} is dead (no beat for ${al.missed_s}s)`, true);
  });
  es.addEventListener("model", (m) => {
    const ch = JSON.parse(m.data);
    const a = S.agents.get(ch.agent);
    if (!a) return;
    a.model = ch.model; a.backup_model = ch.backup_model; a.eventAt = Date.now();
    showModelChange(ch, "event");
    agentChanged(ch.agent);
  });
  es.addEventListener("runs", (m) => {
    const batch = JSON.parse(m.data);
    received(batch.t);
    batch.items.forEach(onRunItem);
    markLater();  // the lag indicator
  });
  es.addEventListener("comms", (m) => {
    const batch = JSON.parse(m.data);
    received(batch.t);
    if (!$("f-pause").checked) onComms(batch.entries, batch.upto, batch.seqs);
    markLater();
  });
}

/* Everything from /api: on the first connection and after a reconnect (nothing missed stays missed). */
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
    for (const r of runs.runs) {
      const known = S.runs.get(r.run_id);
      const status = known ? newer(known.status, r.status) : r.status;
      S.runs.set(r.run_id, Object.assign(known || {}, r, { status }));
      if (r.tasks) S.counts.set(r.run_id, r.tasks);
    }
    const chosen = runFromUrl();
    if (chosen) { S.pinned = true; S.selected = chosen; }
    else if (!S.pinned && runs.runs.length) S.selected = runs.runs[0].run_id;
    if (S.selected) await fetchRun(S.selected);
    markDirty("runs", "view");
    await reloadLog();
  } catch (err) {
    toast("loading state: " + err.message, true);
  }
}

/* ?trace=1 (pas bench): when each task state and comms entry reached the page and when it was painted, by the
   page's own clock. pas bench runs the browser beside the server, on one clock; the hello's offset (S.clockOffset)
   would carry that message's own delivery delay into every time (lags below zero on a loaded machine). */
function hmiTrace() {
  const t = { received: new Map(), painted: new Map(), commsAt: new Map() };
  t.task = (runId, rec) => { const k = `${runId}/${rec.task_id}/${rec.status}`; if (!t.received.has(k)) t.received.set(k, Date.now()); };
  t.shown = (rec) => { const k = `${rec.run_id}/${rec.task_id}/${rec.status}`; if (!t.painted.has(k)) t.painted.set(k, Date.now()); };
  t.comms = (e) => { if (!t.commsAt.has(e.seq)) t.commsAt.set(e.seq, [e.run_id, Date.now()]); };
  t.dump = () => ({ received: Object.fromEntries(t.received), painted: Object.fromEntries(t.painted),
    comms: Object.fromEntries(t.commsAt), gaps: S.gaps, lag_ms: S.lagMs });
  return t;
}

function init() {
  if (new URLSearchParams(location.search).get("trace") === "1") S.trace = hmiTrace();
  $("f-type").append(...MSG_TYPES.map((t) => el("option", { value: t, text: t })));
  for (const id of ["f-run", "f-agent", "f-type"]) $(id).addEventListener("change", reloadLog);
  $("f-pause").addEventListener("change", () => { if (!$("f-pause").checked) markDirty("log"); });
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
  window.addEventListener("hashchange", () => { const id = runFromUrl(); if (id) selectRun(id, true); });
  setInterval(() => { for (const id of S.agents.keys()) agentChanged(id); showLag(); }, 1000);  // local redraw only
  document.addEventListener("visibilitychange", onVisibility);
  connect();
}

init();
