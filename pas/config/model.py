"""Configuration: YAML files in a config directory loaded into pydantic models that reject unknown keys.

    configs/pas.yaml     settings: NATS, heartbeats, comms retention, pool, allowlist
    configs/models.yaml  named LLM profiles (litellm model strings)
    configs/agents.yaml  the topology: one entry per agent; adding a programmer is one entry

Any field can be overridden at start-up with `-c dotted.key=value` (values parsed as YAML) or
PAS_NATS_URL for the server URL, PAS_CREDS_DIR for the NATS users' credentials.

Which directory (find_config_dir): --config-dir > $PAS_CONFIG_DIR > ./configs in the working
directory if it exists > the defaults shipped inside the package (pas/defaults, identical to the
repository's configs/; `pas init` copies them out for editing).

Reading the files (precedence, overlays, overrides, environment) is pas.config.doc's, which also gives
the client commands a light view (settings.nats, the agents' names) that needs no pydantic.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pas.base.errors import ConfigError
from pas.config.doc import (
    CONFIG_FILES,
    PACKAGED_CONFIG_DIR,
    TIER_OF_ROLE,
    ClientNats,
    Role,
    find_config_dir,
    merge_agent_files,
    read_doc,
)
from pas.protocol.subjects import LANES, ROLES

DEFAULT_CONFIG_DIR = PACKAGED_CONFIG_DIR
_N = ClientNats()  # the defaults of the keys the client commands read (pas.config.doc)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class NatsConfig(Strict):
    url: str | None = _N.url
    """An existing server to use; None starts the embedded nats-server."""
    host: str = _N.host
    """Address the embedded server listens on."""
    port: int = _N.port
    """Port of the embedded server (-1 picks a free one)."""
    data_dir: str = _N.data_dir
    """Where the embedded server stores JetStream (relative to the working directory)."""
    sync_interval: str = "2m"
    """JetStream fsync interval. "always" loses nothing on power failure at a throughput cost."""
    request_timeout_s: float = _N.request_timeout_s
    """Timeout of request/reply calls made by the CLI and the HTTP adapter."""
    replicas: int = 1
    """Stream and KV replicas (3 on a cluster)."""
    connect_timeout_s: float = _N.connect_timeout_s
    """`pas up` and `pas http` wait this long for the server at start-up, then exit non-zero."""
    client_connect_timeout_s: float = _N.client_connect_timeout_s
    """The client commands (submit, status, agents, log, ...) wait this long for the server."""
    js_retry_s: float = 60.0
    """How long a JetStream write (publish, KV put, ack) is retried while the cluster is electing a
    leader or the connection moves to another node, before the handler gives up on it."""
    ping_interval_s: float = 3.0
    """Client pings; a server that misses two is treated as gone and the client moves to another."""
    auth: Literal["on", "off"] = _N.auth
    """Least-privilege NATS users (pas/transport/auth.py): the embedded server requires them and every agent
    connects as its own user (one per agent id). With an external server, credentials are used when found in creds_dir."""
    creds_dir: str | None = _N.creds_dir
    """Where the users' credentials are (one <user>.json each, mode 0600); None: <data_dir>/creds.
    PAS_CREDS_DIR and --creds-dir set it."""

    @field_validator("auth", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        return ("on" if v else "off") if isinstance(v, bool) else v  # YAML reads on/off as booleans


class HeartbeatConfig(Strict):
    interval_s: float = 5.0
    """Every agent publishes pas.hb.<id> this often."""
    missed_beats: int = 2
    """The monitor raises pas.alert.agent.<id> after this many missed beats."""


class CommsConfig(Strict):
    max_age_days: float = 30.0
    """PAS_COMMS keeps entries this long."""
    max_bytes: int = 1024 * 1024 * 1024
    """PAS_COMMS size cap (oldest entries dropped first)."""
    preview_chars: int = 2000
    """Message text longer than this is truncated in the log entry."""


class PoolConfig(Strict):
    capacity: int = 1
    """Tasks one programmer runs at a time."""
    ack_wait_s: float = 6.0
    """A task not acked or marked in-progress for this long is redelivered to another programmer. A
    running task is marked every ack_wait_s/3, so only a dead programmer's task waits this out."""
    max_deliver: int = 5
    """Attempts per task: a task delivered more often than this (its programmers keep dying) fails."""
    task_timeout_s: float = 900.0
    """Default timeout of one task's command."""
    output_cap_bytes: int = 65536
    """Command output kept per task (the first and last halves)."""
    output_kill_bytes: int = 64 * 1024 * 1024
    """A task's command that prints more than this is killed (its output is read incrementally)."""
    env: str | None = None
    """Python environment of tasks whose repository has no .venv/venv (and whose job names none): a
    venv or conda directory, an interpreter, or a command prefix such as "uv run". None: the first
    python3 on PATH. See pas/execution/repoenv.py."""
    priority_burst: int = Field(8, ge=1)
    """Aging: after this many tasks in a row from one priority band, a programmer takes its next task
    from a lower band that has work (in turn), so low-priority work is never starved."""
    start_report_after_s: float = Field(0.25, ge=0.0)
    """A programmer reports the start of an echo or command task (its "running" record and its "run
    task" comms entry) once the task has run this long; one that ends sooner is reported once, by its
    result (which carries its start time). Model tasks (llm, aider) report at once. 0: every start at once."""


class WorkConfig(Strict):
    ack_wait_s: float = 30.0
    """Ack deadline of the tier work queues (root, architect, directors, managers)."""
    dedupe_window_s: float = 120.0
    """JetStream duplicate window and idempotency-key lifetime."""
    handler_concurrency: int = 32
    """Concurrent handlers per agent for work and request endpoints."""
    max_tasks_per_job: int = 10
    """A director splits a lane's tasks into job cards of at most this many tasks."""
    approval_timeout_s: float = Field(86400.0, gt=0)
    """A run in approval mode waits this long for approve/reject, then ends `rejected`
    ("approval timed out")."""


class PolicyConfig(Strict):
    command_allowlist: list[str] = Field(default_factory=list)
    """Glob patterns; a task's command must match one (matched against the whole command line)."""
    filesystem_allowlist: list[str] = Field(default_factory=list)
    """Globs of files an LLM or aider task may edit inside its worktree."""
    repo_roots: list[str] = Field(default_factory=list)
    """Directories a job's repository must be in (after symlinks; pas.execution.policy.admit). Empty: the
    directory `pas up` started in. `pas up` logs them at start."""
    sandbox: Literal["auto", "bwrap", "off"] = "auto"
    """auto/bwrap (also on/true): every process a task starts runs in bubblewrap (see pas/execution/sandbox.py);
    without a working bwrap, command/llm/aider tasks are refused. off (also false): no sandbox, a
    warning on every task."""
    sandbox_bwrap: str = "bwrap"
    """The bubblewrap executable (a name on PATH or a path)."""
    sandbox_cpu_s: int = Field(1800, ge=1)
    """CPU seconds per sandboxed process (RLIMIT_CPU)."""
    sandbox_memory_mb: int = Field(8192, ge=16)
    """Address space per sandboxed process (RLIMIT_AS)."""
    sandbox_nproc: int = Field(512, ge=4)
    """Processes a task may have at once (RLIMIT_NPROC, counted per sandbox)."""
    sandbox_file_mb: int = Field(1024, ge=1)
    """Largest file a task may write (RLIMIT_FSIZE)."""
    sandbox_tmp_mb: int = Field(1024, ge=1)
    """Size of a task's private /tmp."""
    sandbox_ro: list[str] = Field(default_factory=list)
    """Extra host paths tasks may read (a toolchain in an unusual place, e.g. what a settings.pool.env
    runner script uses). The interpreter or virtualenv a command runs from is found by itself."""
    sandbox_env: list[str] = Field(default_factory=list)
    """Extra variables (names or globs) passed from PAS's environment to tasks; by default only PATH,
    LANG, LC_*, TERM, TZ, VIRTUAL_ENV, NO_COLOR are."""

    @field_validator("sandbox", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:  # YAML reads on/off as booleans
        return {True: "bwrap", False: "off", "on": "bwrap", "true": "bwrap", "false": "off"}.get(v, v)


class ModelProfile(Strict):
    model: str
    """litellm model string, e.g. gemini/gemini-2.5-flash or ollama/qwen2.5-coder:7b-instruct."""
    api_base: str | None = None
    """Override the provider's endpoint (a local server, Ollama)."""
    api_key_env: str | None = None
    """Name of the environment variable that holds the key."""
    temperature: float = 0.3
    max_tokens: int = 4096
    timeout_s: float = 60.0


class AgentConfig(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    """Agent id; also its NATS micro service name."""
    role: Role
    lane: str | None = None
    """One of code, models, data, devsecops, docs for directors, managers (and optionally programmers)."""
    parent: str | None = None
    """The agent this one reports to."""
    port: int | None = None
    """Port of the legacy HTTP endpoint for this agent (served by the adapter)."""
    model: str | None = None
    """Primary model profile (a key of models.yaml)."""
    backup_model: str | None = None
    """Backup model profile."""
    capacity: int | None = None
    """Programmers: concurrent tasks (default pool.capacity)."""
    description: str = ""

    @property
    def tier(self) -> str:
        return TIER_OF_ROLE[self.role]


class HttpConfig(Strict):
    host: str = "127.0.0.1"
    """Address the HTTP adapter binds (every agent port and the HMI)."""
    cors_origins: list[str] = []
    """Browser origins (e.g. http://localhost:3000) allowed to call every port, writes included:
    CORS headers and preflights (pas.surfaces.http.legacy). None by default: only the ports' own pages."""
    hmi_port: int = 6101
    monitor_port: int = 6109
    port_offset: int = 0
    """Added to every agent port and to hmi_port (run a second stack, or tests, on a free range)."""
    request_limit_bytes: int = 2 * 1024 * 1024
    """Request bodies larger than this are refused with 413."""
    auth: Literal["on", "off"] = "on"
    """on: every endpoint but /health needs the token (<creds dir>/http-token, or PAS_HTTP_TOKEN), the HMI's
    login cookie, or a loopback connection from PAS's own OS user (trust_same_user). off: open to anyone who
    reaches the port, as before (a WARNING at start)."""
    trust_same_user: bool = True
    """A loopback connection whose socket belongs to the OS user running PAS (the kernel says whose it is:
    a sock_diag lookup), with a loopback Host, no foreign Origin and no cross-site Sec-Fetch-Site, needs no
    token: the original HTTP PAS's clients and the user's own browser work unchanged."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Host header names accepted besides localhost, 127.0.0.1, [::1] and a specific bind host; any other
    Host gets 421 on every port (DNS rebinding)."""
    max_connections: int = Field(512, ge=1, le=100_000)
    """Open connections per adapter (all ports together); a request past it gets 503."""
    max_sse: int = Field(64, ge=1, le=100_000)
    """Open event streams (HMI /api/events, MCP and A2A streams) per adapter; past it 503."""

    @field_validator("auth", mode="before")
    @classmethod
    def _on_off(cls, v: Any) -> Any:
        return ("on" if v else "off") if isinstance(v, bool) else v  # YAML reads on/off as booleans


class LlmConfig(Strict):
    max_fix_iterations: int = 3
    aider_binary: str = "aider"
    max_tokens_per_job: int = 80000
    max_cost_per_job_usd: float = 2.5


class TracingConfig(Strict):
    enabled: bool = False
    """OpenTelemetry spans for every hop, task command and model call, the trace context carried in
    NATS headers (traceparent). Also on when OTEL_TRACES_EXPORTER (not "none") or an OTLP endpoint
    variable is set (pas/transport/tracing.py)."""
    exporter: Literal["otlp", "console"] = "otlp"
    """otlp: OTLP over HTTP/protobuf; console: each span printed as JSON. OTEL_TRACES_EXPORTER overrides."""
    endpoint: str | None = None
    """OTLP/HTTP collector, e.g. http://localhost:4318 (/v1/traces is added to a bare host:port); None:
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT, else http://localhost:4318."""
    service_name: str = "pas"
    """service.name of the spans; OTEL_SERVICE_NAME overrides."""


class Settings(Strict):
    nats: NatsConfig = Field(default_factory=NatsConfig)
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    comms: CommsConfig = Field(default_factory=CommsConfig)
    pool: PoolConfig = Field(default_factory=PoolConfig)
    work: WorkConfig = Field(default_factory=WorkConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    llm: LlmConfig = Field(default_factory=LlmConfig)
    tracing: TracingConfig = Field(default_factory=TracingConfig)


class PasConfig(Strict):
    settings: Settings = Field(default_factory=Settings)
    models: dict[str, ModelProfile] = Field(default_factory=dict)
    agents: list[AgentConfig]

    @model_validator(mode="after")
    def _check_topology(self) -> PasConfig:
        seen: dict[str, AgentConfig] = {}
        ports: dict[int, str] = {}
        reserved = {self.settings.http.hmi_port: "hmi"}
        for a in self.agents:
            if a.id in seen:
                raise ValueError(f"agent {a.id!r}: duplicate id")
            # pas.transport.auth.SERVICE_USERS and ANONYMOUS: each agent id is a NATS user and a comms sender
            if a.id in ("client", "adapter", "admin", "anonymous"):
                raise ValueError(f"agent {a.id!r}: the id is the name of a NATS service user; choose another")
            seen[a.id] = a
            if a.port is not None:
                other = ports.get(a.port) or reserved.get(a.port)
                if other:
                    raise ValueError(f"agent {a.id!r}: port {a.port} already used by {other!r}")
                ports[a.port] = a.id
        for a in self.agents:
            if a.lane is not None and a.lane not in LANES:
                raise ValueError(f"agent {a.id!r}: unknown lane {a.lane!r} (lanes: {', '.join(LANES)})")
            if a.role in ("dir", "mgr") and a.lane is None:
                raise ValueError(f"agent {a.id!r}: a {a.role} needs a lane")
            if a.parent is not None and a.parent not in seen:
                raise ValueError(f"agent {a.id!r}: unknown parent {a.parent!r}")
            for which in ("model", "backup_model"):
                prof = getattr(a, which)
                if prof is not None and prof not in self.models:
                    raise ValueError(f"agent {a.id!r}: unknown {which} profile {prof!r}")
        for role in ("gateway", "root", "architect", "monitor"):
            if sum(1 for a in self.agents if a.role == role) > 1:
                raise ValueError(f"more than one {role} agent")
        return self

    def agent(self, agent_id: str) -> AgentConfig:
        for a in self.agents:
            if a.id == agent_id:
                return a
        raise KeyError(agent_id)

    def by_role(self, role: str, lane: str | None = None) -> list[AgentConfig]:
        return [a for a in self.agents if a.role == role and (lane is None or a.lane == lane)]

    def lanes(self) -> list[str]:
        return [lane for lane in LANES if self.by_role("dir", lane)]

    def select(self, only: list[str] | None, exclude: list[str] | None) -> list[AgentConfig]:
        out = []
        for a in self.agents:
            if only and not any(fnmatch.fnmatchcase(a.id, g) for g in only):
                continue
            if exclude and any(fnmatch.fnmatchcase(a.id, g) for g in exclude):
                continue
            out.append(a)
        return out


def _describe(e: ValidationError, doc: dict[str, Any]) -> str:
    lines = []
    for err in e.errors():
        loc = list(err["loc"])
        where = ".".join(str(x) for x in loc)
        if len(loc) >= 2 and loc[0] == "agents" and isinstance(loc[1], int):
            try:
                where = f"agent {doc['agents'][loc[1]].get('id', loc[1])!r}" + (
                    "." + ".".join(str(x) for x in loc[2:]) if loc[2:] else ""
                )
            except (IndexError, KeyError, AttributeError):
                pass
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r}"
        lines.append(f"{where}: {msg}")
    return "; ".join(lines)


def load_config(config_dir: str | Path | None = None, overrides: list[str] | None = None,
                agent_files: list[str | Path] | None = None) -> PasConfig:
    """Load {pas,models,agents}.yaml from find_config_dir(config_dir), merge overlay agent files,
    apply `key=value` overrides, validate."""
    d, doc = read_doc(config_dir, overrides, agent_files)
    try:
        return PasConfig.model_validate(doc)
    except ValidationError as e:
        where = ", ".join([str(d), *(str(f) for f in agent_files or [])])
        raise ConfigError(f"invalid config in {where}: {_describe(e, doc)}") from None


__all__ = [
    "CONFIG_FILES",
    "PACKAGED_CONFIG_DIR",
    "ROLES",
    "AgentConfig",
    "ModelProfile",
    "PasConfig",
    "Settings",
    "find_config_dir",
    "load_config",
    "merge_agent_files",
]
