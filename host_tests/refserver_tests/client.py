"""Talking to the reference server in its tests: requests over loopback, raw sockets, the
command line as a subprocess. Tokens are secrets even here: assertions compare sha256
digests and Tok / Resp print redacted, so a failing test never shows a whole token."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import refserver
from refserver import RefServer, sha256_hex

TOOLS = Path(__file__).resolve().parents[2] / "tools"
REFRESH = refserver.REFRESH_PATH
TIMEOUT = 15.0  # every socket wait; generous for a loaded 2-core machine


def cli(*args: str) -> list[str]:
    """The command line that runs `python -m refserver ARGS` (with cli_env())."""
    return [sys.executable, "-m", "refserver", *args]


def cli_env() -> dict[str, str]:
    """The environment for cli(): tools/ on PYTHONPATH, as the Makefile runs it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TOOLS), env.get("PYTHONPATH")]))
    return env


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m refserver ARGS` to its end; output captured as text."""
    return subprocess.run(cli(*args), env=cli_env(), capture_output=True, text=True,
                          timeout=TIMEOUT * 4)


class Target(Protocol):
    """A server to talk to: a RefServer, or a ServerAt."""

    port: int


@dataclass
class ServerAt:
    """A server known only by its port on 127.0.0.1: the CLI's `serve` subprocess."""

    port: int


@dataclass(frozen=True)
class Tok:
    value: str
    expiration: Any

    @property
    def sha(self) -> str:
        return sha256_hex(self.value)

    @property
    def length(self) -> int:
        return len(self.value)

    @property
    def is_base64(self) -> bool:
        return re.fullmatch(r"[A-Za-z0-9+/]+=*", self.value) is not None

    def leaks_into(self, text: str) -> bool:
        """Whether `text` shows the token, or enough of it (12 characters) to matter."""
        return self.value[:12] in text

    def __repr__(self) -> str:
        return "Tok(%s, %r)" % (refserver.redact(self.value), self.expiration)


@dataclass
class Resp:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def __repr__(self) -> str:  # never the body: it may hold a token
        return "Resp(%d, %d bytes)" % (self.status, len(self.body))

    def json(self) -> Any:
        return json.loads(self.body)

    def tok(self) -> Tok:
        doc = self.json()
        return Tok(doc["registrationToken"], doc["expirationTime"])


def as_tok(doc: dict[str, Any]) -> Tok:
    return Tok(doc["registrationToken"], doc["expirationTime"])


def connection(srv: Target, ctx: ssl.SSLContext | None = None) -> http.client.HTTPConnection:
    if ctx is not None:
        return http.client.HTTPSConnection("127.0.0.1", srv.port, timeout=TIMEOUT, context=ctx)
    return http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)


def request(
    srv: Target,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    ctx: ssl.SSLContext | None = None,
) -> Resp:
    conn = connection(srv, ctx)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Resp(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def put(
    srv: Target,
    token: Tok | str | None,
    *,
    body: bytes | None = None,
    ctype: str | None = "application/json",
    headers: dict[str, str] | None = None,
    ctx: ssl.SSLContext | None = None,
) -> Resp:
    if body is None:
        value = token.value if isinstance(token, Tok) else token
        body = json.dumps({"registrationToken": value}).encode()
    hdrs = dict(headers or {})
    if ctype is not None:
        hdrs["Content-Type"] = ctype
    return request(srv, "PUT", REFRESH, body, hdrs, ctx)


def control(srv: RefServer, method: str, name: str, doc: Any = None) -> Any:
    body = None if doc is None else json.dumps(doc).encode()
    resp = request(srv, method, "/_control/" + name, body, {"Content-Type": "application/json"})
    assert resp.status == 200, resp  # not the body: it may hold a token
    return resp.json()


def refresh_request(token: Tok) -> bytes:
    body = json.dumps({"registrationToken": token.value}).encode()
    head = (
        "PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: %d\r\n\r\n" % (REFRESH, len(body))
    )
    return head.encode() + body


def raw_socket(srv: Target) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)


def read_to_eof(sock: socket.socket) -> tuple[bytes, int]:
    """Everything the server sends until it closes -> (data, number of recv calls)."""
    chunks: list[bytes] = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks), len(chunks)
        chunks.append(data)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def wait_for(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in %.0f s" % timeout)
        time.sleep(0.02)


def records(srv: RefServer) -> list[dict[str, Any]]:
    return list(srv.stats()["requests"])


def state_of(srv: RefServer, tok: Tok) -> str:
    states = [row["state"] for row in srv.lineage() if row["sha256"] == tok.sha]
    assert len(states) == 1
    return str(states[0])


def client_context(ca_der: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_der.read_bytes())
