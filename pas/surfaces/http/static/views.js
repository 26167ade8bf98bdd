/* PAS HMI views: time helpers and the agent tree (runs.js: runs and run view; log.js: the comms log).
   Loaded after core.js (the state S, api(), el(), toast()). */
"use strict";

/* ---------- time helpers ---------- */
const parseTs = (ts) => (ts ? Date.parse(ts) : NaN);
// One formatter for every call: toLocaleTimeString builds a new one each time (it dominated the
// page's script time during a 2,000-task job).
const TIME_FMT = new Intl.DateTimeFormat([], { hourCycle: "h23", hour: "2-digit", minute: "2-digit", second: "2-digit" });
// Formatting still cost the most script time of a render, so each timestamp is formatted once.
const TIME_MEMO = new Map();
function fmtTime(ts) {
  let s = TIME_MEMO.get(ts);
  if (s !== undefined) return s;
  const t = parseTs(ts);
  s = isNaN(t) ? "-" : TIME_FMT.format(t) + "." + String(t % 1000).padStart(3, "0");
  if (TIME_MEMO.size >= 20000) TIME_MEMO.clear();
  TIME_MEMO.set(ts, s);
  return s;
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
  setData(e.row, "state", a.state || "unknown");
  setText(e.status, a.state === "dead" ? "dead" : (a.status || ""));
  setTitle(e.status, a.message || "");
  setText(e.age, fmtAge(a.last_beat));
  const deadline = (S.config.heartbeat_interval_s * (S.config.missed_beats + 1)) * 1000;
  const stale = a.state === "alive" && Date.now() - parseTs(a.last_beat) > deadline;
  e.row.classList.toggle("stale", stale);
  if (e.select && !e.select.disabled && a.model) e.select.value = a.model;
}

function updateSummary() {
  let alive = 0, dead = 0;
  for (const a of S.agents.values()) { if (a.state === "alive") alive++; else if (a.state === "dead") dead++; }
  const running = [...S.runs.values()].filter((r) => LIVE_RUN.has(r.status)).length;
  setText($("summary"), `${alive} alive · ${dead} dead · ${S.agents.size - alive - dead} unknown · ${running} active run(s)`);
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

