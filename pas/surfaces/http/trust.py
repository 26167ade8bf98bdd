"""Who may call the HTTP adapter (README "Who is trusted"): one gate in front of every port.

    gate = Gate.from_config(cfg, token)       # token: http_token(cfg, data_dir)
    gate.host_ok(scope)                       # False: 421 (DNS rebinding), on every port, /health too
    gate.origin_ok(scope)                     # False on a write: 403 (CSRF)
    gate.authorized(scope)                    # False: 401, on every path but /health and the HMI's /login

A request is authorized by any of: `Authorization: Bearer <token>`; the HMI's login cookie (set by
/login from a one-time code that `pas up` prints, or from the token); or, with
settings.http.trust_same_user, a loopback connection whose client socket belongs to the OS user running
PAS, with a loopback Host, no foreign Origin and no cross-site Sec-Fetch-Site. The kernel tells whose a
socket is: a sock_diag query (netlink) for the socket whose local address is the peer's and whose remote
address is ours answers with its uid.
That is what lets the original HTTP PAS's clients (they send no token) and the user's own browser work
unchanged, while another local user, or a page of another site in the user's browser, is refused.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
import socket
import struct
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pas.base.redact import register_value

log = logging.getLogger("pas.surfaces.http")

TOKEN_FILE = "http-token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::", "[::]"})
MAX_CODES = 32
"""One-time login codes kept unused at once (each `pas login` makes one)."""
SAME_SITE = frozenset({"none", "same-origin"})
"""Sec-Fetch-Site values of a request the user made (typed URL, bookmark) or a page of this origin made."""


def http_token(creds_dir: Path) -> tuple[str, str]:
    """(token, how a shell gets it): PAS_HTTP_TOKEN if set, else the token in <creds_dir>/http-token,
    generated on first use (0600, directory 0700; created exclusively, so two processes starting at
    once agree on one token)."""
    env = os.environ.get("PAS_HTTP_TOKEN")
    if env:
        register_value(env)
        return env, "$PAS_HTTP_TOKEN"
    path = creds_dir / TOKEN_FILE
    creds_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = stored_token(creds_dir) or ""
        if not token:
            raise OSError(f"{path} is empty: delete it and PAS makes a new token") from None
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
    register_value(token)  # never shown in a log, an error or a comms entry
    return token, f"$(cat {path.resolve()})"


def stored_token(creds_dir: Path) -> str | None:
    """The token a client sends: PAS_HTTP_TOKEN, else <creds_dir>/http-token if it exists (never made here)."""
    env = os.environ.get("PAS_HTTP_TOKEN")
    if env:
        return env
    try:
        return (creds_dir / TOKEN_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


# ---- the kernel's view of a loopback connection --------------------------------------------
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
TCP_ESTABLISHED = 1
NO_COOKIE = 0xFFFFFFFF
_MSG_UID = 16 + 4 + 48 + 12  # nlmsghdr, family/state/timer/retrans, sockid, expires/rqueue/wqueue: then uid


def peer_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the client end of a TCP connection on this host, or None (not on this host, gone,
    or the kernel would not say). One exact sock_diag lookup over netlink, what `ss` uses: microseconds,
    where reading /proc/net/tcp walks the whole connection table (milliseconds)."""
    try:
        cip, sip = ipaddress.ip_address(client[0]), ipaddress.ip_address(server[0])
    except ValueError:
        return None
    if isinstance(cip, ipaddress.IPv6Address) and isinstance(sip, ipaddress.IPv6Address) \
            and cip.ipv4_mapped is not None and sip.ipv4_mapped is not None:
        cip, sip = cip.ipv4_mapped, sip.ipv4_mapped  # an IPv4 client of a dual-stack socket: its socket is IPv4
    family = socket.AF_INET if cip.version == 4 else socket.AF_INET6
    body = (struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_ESTABLISHED)  # inet_diag_req_v2
            + struct.pack("!HH", client[1], server[1]) + cip.packed.ljust(16, b"\0") + sip.packed.ljust(16, b"\0")
            + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE))  # the socket id: local = the client's end
    req = struct.pack("=IHHII", 16 + len(body), SOCK_DIAG_BY_FAMILY, 1, 1, 0) + body  # nlmsghdr, NLM_F_REQUEST
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.sendto(req, (0, 0))
            reply = nl.recv(8192)
    except OSError:
        return None
    if len(reply) < _MSG_UID + 4 or struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR:
        return None  # ENOENT: no such socket here
    if reply[17] != TCP_ESTABLISHED:  # (a TIME_WAIT socket of an earlier connection reports uid 0)
        return None
    return int(struct.unpack_from("=I", reply, _MSG_UID)[0])


def browser_host(host: str) -> str:
    """The address to open for a bind host: a wildcard bind is reached on loopback; IPv6 in brackets."""
    if host in WILDCARD_BINDS:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def base_url(host: str, port: int) -> str:
    """The URL a browser or client opens for a port the adapter binds on `host`."""
    return f"http://{browser_host(host)}:{port}"


def _is_loopback(ip: str) -> bool:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if isinstance(a, ipaddress.IPv6Address) and a.ipv4_mapped is not None:
        a = a.ipv4_mapped
    return a.is_loopback


def _hostname(host: str) -> str:
    """The name part of a Host header or an Origin's netloc: 'a:6120' -> 'a', '[::1]:6120' -> '[::1]'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


@dataclass
class Gate:
    token: str | None
    """None: settings.http.auth is off (every request is authorized)."""
    allowed_hosts: frozenset[str]
    trust_same_user: bool = True
    cors_origins: frozenset[str] = frozenset()
    """settings.http.cors_origins: browser origins the user allowed to call every port, writes included."""
    token_hint: str = "$PAS_HTTP_TOKEN"
    """How a shell gets the token, for messages: `$(cat <creds dir>/http-token)` or `$PAS_HTTP_TOKEN`."""
    cookie_name: str = "pas_hmi"
    uid: int = field(default_factory=os.getuid)
    codes: list[str] = field(default_factory=list)
    """One-time login codes not used yet (pas up prints one), oldest first, at most MAX_CODES."""

    @classmethod
    def from_config(cls, cfg: Any, token: str | None, token_hint: str = "$PAS_HTTP_TOKEN") -> Gate:
        h = cfg.settings.http
        hosts = set(LOOPBACK_NAMES) | {_hostname(x) for x in h.allowed_hosts}
        if h.host not in WILDCARD_BINDS:
            hosts.add(browser_host(h.host).lower())
        return cls(token=token if h.auth == "on" else None, allowed_hosts=frozenset(hosts),
                   trust_same_user=h.trust_same_user, token_hint=token_hint,
                   cors_origins=frozenset(o.rstrip("/") for o in h.cors_origins),
                   cookie_name=f"pas_hmi_{h.hmi_port + h.port_offset}")

    @property
    def required(self) -> bool:
        return self.token is not None

    @property
    def cookie_value(self) -> str:
        """What the login cookie holds: derived from the token, so the token itself never sits in a browser."""
        assert self.token is not None
        return hmac.new(self.token.encode(), b"pas-hmi-login", "sha256").hexdigest()

    # ---- checks on a request's ASGI scope ------------------------------------------------
    def host_ok(self, scope: dict[str, Any]) -> bool:
        host = _header(scope, b"host")
        return host is None or _hostname(host) in self.allowed_hosts  # no Host: not a browser, not rebinding

    def origin_ok(self, scope: dict[str, Any]) -> bool:
        """A browser names the page that sent a request in Origin: only this host:port's own pages and
        settings.http.cors_origins pass (clients that send no Origin, curl and scripts, are not browsers)."""
        origin = _header(scope, b"origin")
        return origin is None or self._configured(origin) or \
            urlsplit(origin).netloc.lower() == (_header(scope, b"host") or "").lower()

    def _configured(self, origin: str | None) -> bool:
        return origin is not None and origin.rstrip("/") in self.cors_origins

    def authorized(self, scope: dict[str, Any]) -> bool:
        if self.token is None:
            return True
        bearer = _header(scope, b"authorization") or ""
        if bearer[:7].lower() == "bearer " and hmac.compare_digest(bearer[7:].strip().encode(), self.token.encode()):
            return True
        cookie = self._cookie(scope)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie_value.encode()):
            return True
        return self.trust_same_user and self.same_user(scope)

    def same_user(self, scope: dict[str, Any]) -> bool:
        """A loopback connection of PAS's own OS user, made by a program or by the user's browser at its
        own request (not by a page of another site)."""
        client, server = scope.get("client"), scope.get("server")
        if not client or not server or not _is_loopback(client[0]):
            return False
        host = _header(scope, b"host")
        if host is None or _hostname(host) not in LOOPBACK_NAMES or not self.origin_ok(scope):
            return False
        fetch_site = _header(scope, b"sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() not in SAME_SITE \
                and not self._configured(_header(scope, b"origin")):  # a page the user allowed (cors_origins)
            return False
        return peer_uid((client[0], client[1]), (server[0], server[1])) == self.uid

    def _cookie(self, scope: dict[str, Any]) -> str | None:
        raw = _header(scope, b"cookie")
        if not raw:
            return None
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:  # a malformed Cookie header is no login
            return None
        morsel = jar.get(self.cookie_name)
        return morsel.value if morsel is not None else None

    # ---- the HMI's login -----------------------------------------------------------------
    def mint_code(self) -> str:
        code = secrets.token_urlsafe(16)
        self.codes = [*self.codes[-(MAX_CODES - 1):], code]  # a forgotten link expires after MAX_CODES newer ones
        return code

    def redeem(self, code: str | None, token: str | None) -> bool:
        """A one-time code (used up here) or the token itself."""
        if self.token is None:
            return True
        if token is not None and hmac.compare_digest(token.encode(), self.token.encode()):
            return True
        for c in list(self.codes):  # compare each in constant time
            if code is not None and hmac.compare_digest(code.encode(), c.encode()):
                self.codes.remove(c)
                return True
        return False

    def set_cookie_header(self) -> str:
        return f"{self.cookie_name}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope.get("headers") or ():
        if k == name:
            return str(v.decode("latin-1"))
    return None
