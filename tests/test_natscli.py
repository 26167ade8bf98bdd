"""The official `nats` CLI (natscli v0.5.0, real binary) against a running PAS (`pas up` processes on a real
nats-server): every `nats ...` example of README.md and subjects.md as written, the micro discovery verbs,
submit by request and by plain publish, subscriptions, streams, KV, and the error replies the CLI shows.

One PAS for the module: tests use their own run ids/titles, so they do not see each other's runs."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pas.config.model import load_config
from pas.protocol import subjects as S
from pas.transport.connection import connect as pas_connect
from tests.natscli_docs import doc_examples, doc_transcripts, least_user, normalise_transcript
from tests.natscli_support import CliSub, PasUnderCli, job, new_run_id, until_all_listed

AGENTS = [a.id for a in load_config().agents]
KV_RUNS_READER = "admin"  # NATS users: the client reads runs through pas.gateway.status, not the bucket
PAS_STREAMS = {S.STREAM_COMMS: (["pas.comms.>", "pas.mgr.*.started.*.*"], "limits"), S.STREAM_WORK: (["pas.work.>"], "workqueue"),
               S.STREAM_EVENTS: ([*S.EVENTS_COMMANDS, S.ALERT_ALL], "limits")}  # state events come from KV


@pytest.fixture(scope="module")
def pas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PasUnderCli]:
    p = PasUnderCli(tmp_path_factory.mktemp("natscli"))
    try:
        yield p.start()
    finally:
        p.stop()


@pytest.fixture(scope="module")
def done_run(pas: PasUnderCli) -> str:
    """A completed run, for the examples that read one."""
    return pas.run("natscli: a finished run")


# ---- every example of the documents ---------------------------------------------------------
EXAMPLES = doc_examples()
RUN_PLACEHOLDER = re.compile(r"\bRUN_ID\b|\br-1(?![\w-])")  # RUN_ID (README) and r-1 (subjects.md)


def substitute(cmd: str, run_id: str) -> list[str]:
    """The example's words with its placeholders replaced: a run id, an agent id. Anything left that
    looks like a placeholder fails the test: the documents use only these two."""
    words = [RUN_PLACEHOLDER.sub(run_id, w).replace("<agent_id>", "mgr-code-01") for w in shlex.split(cmd)]
    left = [w for w in words if re.search(r"<[a-z_]+>|\.\.\.", w)]
    assert not left, f"unknown placeholder in the documented command {cmd!r}: {left}"
    return words


def _trigger_run(pas: PasUnderCli, rid: str) -> None:
    pas.req("pas.gateway.submit", job("natscli: doc sub", run_id=rid))


def _trigger_replay(pas: PasUnderCli, rid: str) -> None:
    """A run, finished, then `pas replay --speed 0` (as client) re-publishes it on pas.replay.<run>.>."""
    pas.req("pas.gateway.submit", job("natscli: doc replay", run_id=rid))
    pas.wait_run(rid)
    r = subprocess.run([sys.executable, "-m", "pas", "replay", rid, "--speed", "0", "--nats-url", pas.url,
                        "--creds-dir", str(pas.creds_dir)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _trigger_model(pas: PasUnderCli, rid: str) -> None:
    pas.req("pas.ctl.prog-001.set_model", '{"primary":"gpt-4o"}', user="admin")


def _trigger_alert(pas: PasUnderCli, rid: str) -> None:
    pas.procs["prog-010"].kill()  # the monitor misses its beats and raises an alert; restarted below


# subject pattern of a documented `nats sub` -> (what makes a message arrive, what the message must be)
SUB_CASES: list[tuple[str, Callable[[PasUnderCli, str], None] | None, Callable[[str, str, Any], bool]]] = [
    (r"pas\.hb\.\*", None, lambda rid, subj, b: subj == f"pas.hb.{b['agent']}" and b["agent"] in AGENTS),
    (r"pas\.run\.[\w-]+\.>", _trigger_run,
     lambda rid, subj, b: subj == f"pas.run.{rid}.status" and b["status"] == "completed"),
    (r"pas\.comms\.[\w-]+\.>", _trigger_run,
     lambda rid, subj, b: subj.startswith(f"pas.comms.{rid}.") and b["run_id"] == rid and b["msg_type"] == "CMD"),
    (r"pas\.replay\.[\w-]+\.>", _trigger_replay,
     lambda rid, subj, b: subj == f"pas.replay.{rid}.end" and b["run_id"] == rid and b["messages"] > 10),
    (r"pas\.ctl\.\*\.model_changed", _trigger_model,
     lambda rid, subj, b: subj == "pas.ctl.prog-001.model_changed" and "gpt-4o" in json.dumps(b)),
    (r"pas\.alert\.>", _trigger_alert,
     lambda rid, subj, b: subj == "pas.alert.agent.prog-010" and b["kind"] == "dead"),
]


def run_sub_example(pas: PasUnderCli, words: list[str], rid: str, user: str) -> None:
    pattern = next(w for w in words[2:] if not w.startswith("-"))
    case = next((c for c in SUB_CASES if re.fullmatch(c[0], pattern.replace(rid, "r-x"))), None)
    assert case, f"no test case for the documented subscription {pattern!r}: add one to SUB_CASES"
    _, trigger, expect = case
    sub: CliSub = pas.sub(words, user)
    try:
        if trigger:
            trigger(pas, rid)
        sub.wait_for(lambda subj, body: expect(rid, subj, body), timeout_s=30)
    finally:
        sub.close()
        if trigger is _trigger_alert:
            pas.spawn("prog-010", "--only", "prog-010")


@pytest.mark.parametrize("cmd,user", EXAMPLES, ids=[c for c, _ in EXAMPLES])
def test_documented_command(pas: PasUnderCli, done_run: str, cmd: str, user: str | None) -> None:
    """As the user the document names (`eval "$(pas creds USER)"` before it), else the least one allowed."""
    verb = shlex.split(cmd)[1]
    user = user or least_user(shlex.split(cmd))
    if verb == "sub":
        rid = new_run_id("sub")  # a run that starts after the subscription
        return run_sub_example(pas, substitute(cmd, rid), rid, user)
    rid = done_run
    if "pas.gateway.cancel" in cmd:  # cancelling needs a run that is still running
        rid = pas.req("pas.gateway.submit", job("natscli: to cancel", "sleep 30"))["run_id"]
        pas.wait_run(rid, {"running"})
    if "pas.gateway.approve" in cmd or "pas.gateway.reject" in cmd:  # needs a run waiting for approval
        two = [{"lane": "code", "instruction": c, "command": c} for c in ("true", "echo two")]
        rid = pas.req("pas.gateway.submit", job("natscli: approval", approval_mode=True, tasks=two))["run_id"]
        pas.wait_run(rid, {"waiting_approval"})
    words = substitute(cmd, rid)
    if words[1:3] == ["stream", "view"]:  # pages only on a terminal
        out = pas.pty_run(words, until="Next Page?", user=user, linger_s=2.0)  # acks (refused?) follow a page
        assert "[1] Subject: " in out and "nats: error" not in out and "Violation" not in out, out
        return
    r = pas.nats(words, user=user)
    if verb == "pub" and words[2] == "pas.gateway.submit":  # no reply: find the run by its title
        assert pas.wait_run(pas.run_titled(json.loads(words[3])["title"]))["status"] == "completed"
    elif words[1:3] == ["kv", "get"]:
        assert json.loads(r.stdout)["run_id"] == rid, r.stdout
    elif verb in ("req", "request"):
        reply = json.loads(r.stdout)
        if "pas.gateway.cancel" in cmd:
            assert reply["run_id"] == rid and reply["status"] == "cancelled", reply
        elif "pas.gateway.approve" in cmd:  # subjects.md drops code-1-02
            assert reply["run_id"] == rid and reply["status"] == "running", reply
            st = pas.wait_run(rid)
            assert st["status"] == "completed" and [t["status"] for t in st["tasks"]] == ["completed", "skipped"]
        elif "pas.gateway.reject" in cmd:
            assert reply["run_id"] == rid and reply["status"] == "rejected", reply
        elif "pas.gateway.submit" in cmd:
            assert reply["status"] == "queued" and pas.wait_run(reply["run_id"])["status"] == "completed"
        else:
            assert reply, r.stdout
    elif words[1:3] == ["micro", "ls"]:  # natscli's 300 ms cut-off: listed again until each has answered once
        def names(out: str) -> set[str]:
            return {a for a in AGENTS if a in out}

        seen = until_all_listed(lambda: pas.nats(words, user=user).stdout, names, AGENTS, seen=names(r.stdout))
        assert seen == set(AGENTS), r.stdout
    elif verb == "micro":  # info/stats of one service
        assert words[3] in r.stdout and "health" in r.stdout, r.stdout


def test_documents_have_examples_of_every_verb() -> None:
    """The extraction found the documents' commands (an empty list would pass every test above)."""
    verbs = {tuple(w for w in shlex.split(c)[1:4] if not w.startswith("-"))[:2] for c, _ in EXAMPLES}
    assert {("micro", "ls"), ("micro", "info"), ("micro", "stats"), ("req", "pas.gateway.submit"),
            ("pub", "pas.gateway.submit"), ("sub", "pas.hb.*"), ("stream", "view"), ("kv", "get")} <= verbs, verbs
    assert len(EXAMPLES) >= 20 and doc_transcripts(), EXAMPLES


@pytest.mark.parametrize("cmd,shown", doc_transcripts(), ids=[c for c, _ in doc_transcripts()])
def test_documented_transcript(pas: PasUnderCli, cmd: str, shown: str) -> None:
    """A `$ nats ...` block shows what the CLI prints on a terminal, to the character but for times."""
    out = pas.pty_run(cmd, until="\x00")  # to the end of the command
    assert normalise_transcript(out) == normalise_transcript(shown)


# ---- micro discovery ----------------------------------------------------------------------
def test_micro_ls_lists_26_services(pas: PasUnderCli) -> None:
    listings: list[list[dict[str, Any]]] = []

    def names(out: str) -> set[str]:
        listings.append(json.loads(out))
        return {s["name"] for s in listings[-1]}

    seen = until_all_listed(lambda: pas.nats("nats micro ls --json").stdout, names, AGENTS)
    assert seen == set(AGENTS) and len(AGENTS) == 26
    assert all(len({s["name"] for s in one}) == len(one) for one in listings)  # one instance per agent


def test_micro_info_of_a_manager(pas: PasUnderCli) -> None:
    info = json.loads(pas.nats("nats micro info mgr-code-01 --json").stdout)["info"]
    assert info["name"] == "mgr-code-01" and info["type"] == "io.nats.micro.v1.info_response"
    assert info["metadata"]["lane"] == "code" and info["metadata"]["tier"] == "manager"
    subjects = {e["subject"] for e in info["endpoints"]}
    assert {"pas.mgr.mgr-code-01.health", "pas.mgr.mgr-code-01.status", "pas.mgr.code.submit"} <= subjects
    text = pas.nats("nats micro info mgr-code-01").stdout
    assert "pas.mgr.code.submit" in text and "mgr-code-01" in text


def test_micro_stats_count_requests(pas: PasUnderCli) -> None:
    def health_requests() -> int:
        stats = json.loads(pas.nats("nats micro stats mgr-code-01 --json").stdout)
        assert len(stats) == 1 and stats[0]["type"] == "io.nats.micro.v1.stats_response"
        return next(e["num_requests"] for e in stats[0]["endpoints"] if e["name"] == "health")

    before = health_requests()
    for _ in range(3):
        assert pas.req("pas.mgr.mgr-code-01.health", "")["agent"] == "mgr-code-01"
    assert health_requests() == before + 3


def test_micro_ping_reaches_every_agent(pas: PasUnderCli) -> None:
    # ping collects replies until --timeout (default 5s): 26 local replies take milliseconds
    out = pas.nats("nats micro ping --timeout 2s").stdout
    answered = {line.split()[0] for line in out.splitlines() if "rtt=" in line}
    assert answered == set(AGENTS), out
    one = pas.nats("nats micro ping gateway --timeout 2s").stdout
    assert re.search(r"^gateway \w+ +rtt=", one, re.M), one


# ---- submit, publish, subscribe ---------------------------------------------------------------
def test_req_submit_plain_json(pas: PasUnderCli) -> None:
    reply = pas.req("pas.gateway.submit", job("natscli: plain"))
    assert reply["status"] == "queued" and reply["duplicate"] is False and reply["run_id"].startswith("r-")
    assert pas.wait_run(reply["run_id"])["status"] == "completed"


def test_req_submit_twice_with_msg_id_gives_one_run(pas: PasUnderCli) -> None:
    key = f"natscli-{new_run_id('k')}"
    title = f"natscli: dedupe {key}"
    first = pas.req("pas.gateway.submit", job(title), "-H", f"Nats-Msg-Id:{key}")
    again = pas.req("pas.gateway.submit", job(title), "-H", f"Nats-Msg-Id:{key}")
    assert again["run_id"] == first["run_id"] and (first["duplicate"], again["duplicate"]) == (False, True)
    pas.wait_run(first["run_id"])
    runs = pas.req("pas.gateway.runs", '{"limit":100}')["runs"]
    assert [r["run_id"] for r in runs if r["title"] == title] == [first["run_id"]]


def test_pub_without_reply_still_runs(pas: PasUnderCli) -> None:
    rid = new_run_id("pub")
    r = pas.nats(["nats", "pub", "pas.gateway.submit", job("natscli: published", run_id=rid)])
    assert 'Published' in r.stderr
    assert pas.wait_run(rid)["status"] == "completed"


def test_sub_sees_every_state_change_up_to_terminal(pas: PasUnderCli) -> None:
    rid = new_run_id("sub")
    sub = pas.sub(["nats", "sub", f"pas.run.{rid}.>"])
    try:
        pas.req("pas.gateway.submit", job("natscli: watched", "echo watched", run_id=rid))
        sub.wait_for(lambda s, b: s == f"pas.run.{rid}.status" and b["status"] == "completed")
    finally:
        sub.close()
    seen = [(s.split(".", 3)[3], json.loads(b).get("status")) for s, b in sub.msgs if b]
    tasks = [st for s, st in seen if s.startswith("task.")]
    # a task this short may report no start (settings.pool.start_report_after_s): then queued -> completed
    assert tasks in (["queued", "completed"], ["queued", "running", "completed"]), seen
    assert seen[-1] == ("status", "completed") and ("status", "running") in seen, seen


# ---- streams and KV ------------------------------------------------------------------------
def test_stream_view_comms_shows_the_run(pas: PasUnderCli, done_run: str) -> None:
    out = pas.pty_run(["nats", "stream", "view", "PAS_COMMS", "--subject", f"pas.comms.{done_run}.>"],
                      until="Next Page?")
    entries = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    # (the request is the job as submitted: without a run id of its own unless the client chose one)
    assert entries and all(e["run_id"] in (done_run, None) for e in entries), out
    # The run's first entries are its record writes, copied in by the server (pas log shows each as the entry
    # it stands for): the request as submitted, then the run record, submitted with `nats req
    # pas.gateway.submit` (a subject any user may publish, so it names no user: `anonymous` in pas log).
    assert entries[0]["title"] and "from_agent" not in entries[0], out
    assert any(e.get("status") == "queued" and e.get("submitted_by") is None and "created_at" in e for e in entries), out


@pytest.mark.parametrize("stream", sorted(PAS_STREAMS))
def test_stream_info_of_every_pas_stream(pas: PasUnderCli, stream: str) -> None:
    info = json.loads(pas.nats(f"nats stream info {stream} --json").stdout)
    subjects, retention = PAS_STREAMS[stream]
    assert info["config"]["name"] == stream and info["config"]["subjects"] == subjects
    assert info["config"]["retention"] == retention and info["config"]["storage"] == "file"
    assert stream in pas.nats(f"nats stream info {stream}").stdout


def test_stream_ls_shows_streams_and_buckets(pas: PasUnderCli) -> None:
    names = set(pas.nats("nats stream ls --names", user="admin").stdout.split())  # listing: admin's right
    buckets = {S.KV_AGENTS, S.KV_RUNS, S.KV_TREE, S.KV_IDEMPOTENCY, S.KV_MODELS}
    assert set(PAS_STREAMS) | {f"KV_{b}" for b in buckets} <= names, names


def test_kv_get_run_record(pas: PasUnderCli, done_run: str) -> None:
    rec = json.loads(pas.nats(f"nats kv get pas_runs {done_run} --raw", user=KV_RUNS_READER).stdout)
    assert rec["run_id"] == done_run and rec["status"] == "completed"
    pretty = pas.nats(f"nats kv get pas_runs {done_run}", user=KV_RUNS_READER).stdout
    assert f"pas_runs > {done_run} revision:" in pretty
    missing = pas.nats("nats kv get pas_runs r-no-such-run", ok=False, user=KV_RUNS_READER)
    assert missing.returncode == 1 and "key not found" in missing.stderr


# ---- error replies --------------------------------------------------------------------------
BAD = [
    ("pas.gateway.submit", "not json", "400", "bad_request"),
    ("pas.gateway.submit", '{"title": 5}', "400", "bad_request"),
    ("pas.gateway.submit", '{"title":"x","tasks":[{"lane":"nowhere","instruction":"i"}]}', "400", "bad_request"),
    ("pas.gateway.status", '{"run_id":"r-no-such-run"}', "404", "not_found"),
    ("pas.gateway.status", "[1,2]", "400", "bad_request"),
    ("pas.mgr.code.submit", "{}", "400", "bad_request"),
    ("pas.gateway.submit", "x" * (3 * 1024 * 1024), "413", None),
]


@pytest.mark.parametrize("subject,body,code,error", BAD, ids=lambda v: v if len(str(v)) < 40 else "big")
def test_req_bad_body_shows_error_headers_and_json(pas: PasUnderCli, subject: str, body: str, code: str,
                                                   error: str | None) -> None:
    big = len(body) > 100_000  # beyond one argv entry: the CLI reads the body from stdin
    argv = ["nats", "req", subject, *(["--force-stdin"] if big else [body])]
    r = pas.nats(argv, ok=False, stdin=body if big else None, user=least_user(argv))
    assert r.returncode == 0, r.stderr  # the CLI got a reply: the error is in it
    assert re.search(rf"Nats-Service-Error-Code: {code}$", r.stderr, re.M), r.stderr
    message = re.search(r"Nats-Service-Error: (.+)$", r.stderr, re.M)
    assert message and message.group(1).strip(), r.stderr
    reply = json.loads(r.stdout)
    assert str(reply["code"]) == code and reply["message"] == message.group(1).strip()
    if error:
        assert reply["error"] == error
    assert pas.req("pas.gateway.runs", '{"limit":1}')["runs"] is not None  # the gateway still serves


# ---- `nats bench` floors (pas bench) ------------------------------------------------------------
async def test_natsbench_floors_measure_and_clean_up(tmp_path: Path) -> None:
    """The three `nats bench` floors on a server of their own: figures from the CLI's CSV, its streams gone."""

    from benchmarks import natsbench, run
    from pas.transport.server import EmbeddedServer
    from tests.natscli_support import natscli

    natscli()  # skip only without Go; fail when Go is there and natscli is not
    srv = EmbeddedServer(tmp_path / "nats", port=-1, extra_args=["-m", "-1"])
    url = srv.start()
    sizes = run.Sizes.for_mode(True)
    ctx = run.BenchContext(url=url, quick=True, data_dir=tmp_path, sizes=sizes, server=srv)
    try:
        floors = [r for r in run.FLOOR_PRODUCERS if r.name.startswith("natsbench")]
        assert [r.name for r in floors] == ["natsbench_pubsub", "natsbench_reqrep", "natsbench_js_pub"]
        for r in floors:
            ctx.figures += await r.fn(ctx)
        nc = await pas_connect(url)
        try:
            streams = [s.config.name for s in await nc.jetstream().streams_info()]
        finally:
            await nc.close()
    finally:
        srv.stop()
    by = {f.name: f for f in ctx.figures}
    assert sorted(by) == sorted([
        "natsbench.pubsub.sub_per_s", "natsbench.pubsub.pub_per_s", "natsbench.reqrep.msgs_per_s",
        "natsbench.reqrep.p50", "natsbench.reqrep.p99", "natsbench.js_pub_async.msgs_per_s",
        "natsbench.js_pub_sync.msgs_per_s", "natsbench.js_pub_sync.p50"]), by
    assert all(f.value > 0 and f.passed is None and f.target == "floor" for f in by.values()), by
    assert by["natsbench.reqrep.p50"].value <= by["natsbench.reqrep.p99"].value
    d = ctx.details
    assert d["natsbench.pubsub"]["n"] == sizes.nb_pubsub_n and d["natsbench.reqrep"]["n"] == sizes.nb_reqrep_n
    # the CSV's duration and rate agree with the count asked for (the CLI ran the whole count)
    for key, n in (("async", sizes.nb_js_async_n), ("sync", sizes.nb_js_sync_n)):
        row = d["natsbench.js_pub"][key]
        assert row["msgs_per_s"] * row["duration_s"] == pytest.approx(n, rel=0.01)
    assert streams == [], streams  # the benchmark streams were deleted

    # set against the nats-py floors: ratio = value / (hops x one CLI round trip)
    ctx.figures.append(run.Figure("core_chain.p50", 2.0, "ms"))
    cmp = {f.name: f for f in await natsbench.natsbench_compare(ctx)}
    f = cmp["core_chain.p50.vs_natsbench"]
    assert f.floor_value == pytest.approx(sizes.hops * by["natsbench.reqrep.p50"].value)
    assert f.ratio == pytest.approx(2.0 / f.floor_value)


# ---- NATS users: the client's credentials ---------------------------------------------------------
def test_client_credentials_by_context_flags_and_env(pas: PasUnderCli) -> None:
    """`pas creds client` saves a natscli context (with the client's inbox prefix) and prints exports only:
    a non-interactive shell, a script and `timeout` see them (an alias they would not); plain flags work too."""
    sh = pas.shell("client")
    assert sh.env["NATS_USER"] == "client" and sh.env["NATS_URL"] == pas.url and sh.env["NATS_CONTEXT"] == "pas-client"
    ctx = Path(pas.base_env["XDG_CONFIG_HOME"]) / "nats" / "context" / "pas-client.json"
    assert json.loads(ctx.read_text())["inbox_prefix"] == "_INBOX.client" and ctx.stat().st_mode & 0o777 == 0o600
    script = (f'eval "$({shlex.quote(sys.executable)} -m pas creds client --creds-dir {pas.creds_dir} '
              f'--nats-url {pas.url})"; timeout 20 nats req pas.gateway.runs \'{{"limit":1}}\'')
    env = {**pas.base_env, "PATH": f"{Path(pas.bin).parent}:{pas.base_env['PATH']}"}
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "Violation" not in r.stderr and '"runs"' in r.stdout, r.stderr + r.stdout
    flags = ["nats", "--server", pas.url, "--user", "client", "--password", sh.env["NATS_PASSWORD"], "--inbox-prefix",
             "_INBOX.client"]
    reply = json.loads(pas.nats([*flags, "req", "pas.gateway.submit", job("natscli: client flags")], bare=True).stdout)
    assert pas.wait_run(reply["run_id"])["status"] == "completed"
    listing = lambda: pas.nats("nats --context pas-client micro ls --json", bare=True).stdout  # noqa: E731
    assert until_all_listed(listing, lambda out: {s["name"] for s in json.loads(out)}, AGENTS) == set(AGENTS)
    wrong = pas.nats([*flags[:6], "not-the-password", *flags[7:], "micro", "ls"], ok=False, bare=True)
    assert wrong.returncode != 0 and "Authorization Violation" in wrong.stderr, wrong.stderr


def test_client_refused_what_agents_do(pas: PasUnderCli) -> None:
    """The client may submit and watch, never feed a work queue, switch models or use another user's inbox."""
    def work_last_seq() -> int:
        info = pas.nats("nats stream info PAS_WORK --json", user="admin").stdout
        return json.loads(info)["state"]["last_seq"]

    before = work_last_seq()
    pub = pas.nats(["nats", "pub", "pas.work.prog", '{"run_id":"r-x","task_id":"t"}'], ok=False)
    assert 'Permissions Violation for Publish to "pas.work.prog"' in pub.stderr, pub.stderr
    assert work_last_seq() == before  # nothing reached the work queue
    ctl = pas.nats(["nats", "req", "pas.ctl.prog-001.set_model", '{"primary":"gpt-4o"}'], ok=False)
    assert 'Permissions Violation for Publish to "pas.ctl.prog-001.set_model"' in ctl.stderr, ctl.stderr
    sub = pas.nats(["nats", "sub", "pas.work.>", "--count", "1"], ok=False)
    assert sub.returncode != 0 and 'Permissions Violation for Subscription to "pas.work.>"' in sub.stderr, sub.stderr
    other = pas.nats(["nats", "--inbox-prefix", "_INBOX.gateway", "req", "pas.gateway.runs", "{}"], ok=False,
                     bare=True, env=pas.shell("client").env)
    assert 'Permissions Violation for Subscription to "_INBOX.gateway.' in other.stderr, other.stderr
    assert '"runs"' not in other.stdout
