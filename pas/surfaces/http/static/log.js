/* PAS HMI: the comms log. Entries are kept in time order in S.log (at most MAX_LOG), each with its
   PAS_COMMS sequence; the pane shows only the rows in view (VirtualRows). The live stream is every
   entry in sequence order, so a hole in the sequence (the adapter dropped entries for a page that
   fell behind) is filled from PAS_COMMS by sequence (GET /api/comms?start_seq=). */
"use strict";

const LOG_ROW_H = 18;
const GAP_FILL_MAX = 2000;

/* The filters' current values, read once per use (not once per entry). */
function logFilter() {
  const run = $("f-run").value, agent = $("f-agent").value, type = $("f-type").value;
  if (!run && !agent && !type) return null;
  return (e) => (!run || e.run_id === run) && (!agent || e.from_agent === agent || e.to_agent === agent)
    && (!type || e.msg_type === type);
}

/* The text of each cell of an entry's row (also what tests compare against the API). */
function logCells(e) {
  return {
    ts: fmtTime(e.ts) + " ",
    run: (e.run_id || "-") + " ",
    who: `${e.from_agent} → ${e.to_agent} `,
    type: e.msg_type + " ",
    st: (e.status || "") + " ",
    msg: e.message + (e.llm_model ? ` [${e.llm_model} tok=${e.tokens}]` : ""),
  };
}

const logView = new VirtualRows({
  scroller: $("log"), holder: $("log-rows"), rowH: LOG_ROW_H, stick: true,
  spacer: () => el("div"),
  make: () => {
    const parts = {};
    const row = el("div", { class: "log-entry", "data-testid": "log-entry" },
      ...["ts", "run", "who", "type", "st", "msg"].map((k) => (parts[k] = el("span", { class: k }))));
    row.parts_ = parts;
    return row;
  },
  fill: (row, e) => {
    // A row shows another entry as the log grows: each cell is compared with what the row showed
    // (a plain object, no DOM read), and an entry's cells are computed once.
    const cells = e.cells_ || (e.cells_ = logCells(e)), shown = row.vals_ || {};
    const run = e.run_id || "", seq = String(e.seq || "");
    if (e.msg_type !== shown.type_) {
      row.className = "log-entry " + e.msg_type;
      row.dataset.type = e.msg_type;
    }
    if (run !== shown.run_) row.dataset.run = run;
    if (seq !== shown.seq_) row.dataset.seq = seq;
    for (const k in cells) if (cells[k] !== shown[k]) row.parts_[k].textContent = cells[k];
    if (cells.msg !== shown.msg) row.parts_.msg.title = cells.msg;  // the whole line on hover, however long
    row.vals_ = Object.assign({ type_: e.msg_type, run_: run, seq_: seq }, cells);
  },
});
logView.onchange = () => markNow("log");

/* Entries come from several processes, so the stream's order is not the order things happened in
   (a programmer's RESPONSE can be stored after the run's completion). The log shows time order. */
const logKey = (e) => (e.seq ? "#" + e.seq : `${e.ts}|${e.from_agent}|${e.to_agent}|${e.msg_type}|${e.message}`);
const logT = (e) => (e.t_ === undefined ? (e.t_ = parseTs(e.ts) || 0) : e.t_);

function addLog(entries) {
  let added = 0;
  for (const e of entries) {
    const k = logKey(e);
    if (S.logKeys.has(k)) continue;
    S.logKeys.add(k);
    const t = logT(e);
    let i = S.log.length;
    while (i > 0 && logT(S.log[i - 1]) > t) i--;
    S.log.splice(i, 0, e);
    added++;
  }
  if (S.log.length > MAX_LOG) for (const e of S.log.splice(0, S.log.length - MAX_LOG)) S.logKeys.delete(logKey(e));
  if (added) { S.logShown = null; markLater("log"); }
}

/* Live entries, in stream order: a hole in the sequence is read back from PAS_COMMS. upto (after the
   adapter caught this page up instead of sending what it missed): the last sequence it has read. */
function onComms(entries, upto) {
  for (const e of entries) {
    if (S.liveSeq !== null && e.seq > S.liveSeq + 1) fillGap(S.liveSeq + 1, e.seq - 1);
    if (S.liveSeq === null || e.seq > S.liveSeq) S.liveSeq = e.seq;
    if (S.trace) S.trace.comms(e);
  }
  if (typeof upto === "number" && S.liveSeq !== null && upto > S.liveSeq) {
    fillGap(S.liveSeq + 1, upto);
    S.liveSeq = upto;
  }
  if (S.logBuffer) S.logBuffer.push(...entries); else addLog(entries);
}

async function fillGap(from, to) {
  from = Math.max(from, to - GAP_FILL_MAX + 1);
  S.gaps += 1;
  try {
    const r = await api(`/api/comms?start_seq=${from}&limit=${to - from + 1}`);
    const got = r.entries.filter((e) => e.seq <= to);
    if (S.trace) got.forEach((e) => S.trace.comms(e));
    if (S.logBuffer) S.logBuffer.push(...got); else addLog(got);
  } catch (err) {
    toast(`comms log: entries ${from}-${to} could not be read: ${err.message}`, true);
  }
}

function renderLog() {
  if (!S.logShown) {
    const match = logFilter();
    S.logShown = match ? S.log.filter(match) : S.log;
  }
  const shown = S.logShown;
  logView.set(shown.length, (i) => shown[i]);
  logView.render();
}

/* The entries the filters select, from PAS_COMMS, then what arrived live meanwhile. */
async function reloadLog() {
  const q = new URLSearchParams({ limit: "500" });
  if ($("f-run").value) q.set("run", $("f-run").value);
  if ($("f-agent").value) q.set("agent", $("f-agent").value);
  if ($("f-type").value) q.set("type", $("f-type").value);
  const buffer = [];
  S.logBuffer = buffer;
  try {
    const r = await api("/api/comms?" + q);
    if (S.logBuffer !== buffer) return;  // a newer reload took over
    S.log = [];
    S.logKeys = new Set();
    addLog(r.entries.concat(buffer));
    S.logShown = null;
    logView.reset();
    if (S.liveSeq === null && !q.has("run") && !q.has("agent") && !q.has("type") && r.entries.length) {
      S.liveSeq = Math.max(...r.entries.map((e) => e.seq || 0));
    }
  } catch (err) {
    toast("comms log: " + err.message, true);
  } finally {
    if (S.logBuffer === buffer) S.logBuffer = null;
  }
}
