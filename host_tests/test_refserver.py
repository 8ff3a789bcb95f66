"""Tests of tools/refserver.py, the reference server for the token refresh API (CPython).

Tokens are secrets even here: assertions compare sha256 digests and the helper types print
redacted, so a failing test never shows a whole token.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import queue
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import refserver  # noqa: E402
from refserver import RefServer, is_loopback, make_tls_files, sha256_hex  # noqa: E402

REFRESH = refserver.REFRESH_PATH
TIMEOUT = 15.0  # every socket wait; generous for a loaded 2-core machine
SCRIPT = str(TOOLS / "refserver.py")


# ---------------------------------------------------------------- helpers


class Target(Protocol):
    """A server to talk to: a RefServer here, or a CLI subprocess (Remote)."""

    port: int


@dataclass
class Remote:
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


@pytest.fixture
def make_server() -> Iterator[Callable[..., RefServer]]:
    servers: list[RefServer] = []

    def make(**kwargs: Any) -> RefServer:
        kwargs.setdefault("log", None)
        srv = RefServer(**kwargs)
        servers.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in servers:
            srv.close()


@pytest.fixture
def srv(make_server: Callable[..., RefServer]) -> RefServer:
    return make_server()


# ---------------------------------------------------------------- platform semantics


def test_rotation_201_and_grandparent_revoked(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    r1 = put(srv, t0)
    assert r1.status == 201
    assert r1.headers["content-type"] == "application/json"
    t1 = r1.tok()
    assert 240 <= t1.length <= 260 and t1.is_base64
    assert srv.current_sha256() == t1.sha
    assert (state_of(srv, t0), state_of(srv, t1)) == ("grace", "current")

    t2 = put(srv, t1).tok()
    assert (state_of(srv, t0), state_of(srv, t1), state_of(srv, t2)) == (
        "revoked", "grace", "current")
    assert put(srv, t0).status == 410  # the grandparent went at once, not after grace
    assert put(srv, t2).status == 201


def test_lost_answer_gets_200_and_keeps_the_original_grace(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    lost = put(srv, t0).tok()  # the device never stored this one
    deadline = [r["revoked_at"] for r in srv.lineage() if r["sha256"] == t0.sha][0]
    srv.advance(10)
    again = put(srv, t0)
    assert again.status == 200
    t1 = again.tok()
    assert t1.sha != lost.sha
    assert state_of(srv, lost) == "revoked"
    assert [r["revoked_at"] for r in srv.lineage() if r["sha256"] == t0.sha] == [deadline]
    assert put(srv, lost).status == 410
    assert srv.stats()["requests"][-1]["reason"] == "revoked-child"

    srv.advance(19)  # 29 s after the first rotation: still inside the 30 s grace
    assert put(srv, t0).status == 200
    srv.advance(2)
    assert put(srv, t0).status == 410


def test_parent_after_grace_is_gone(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(grace=5.0)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    srv.advance(5.0)
    gone = put(srv, t0)
    assert gone.status == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert put(srv, t1).status == 201


def test_unknown_and_expired_tokens_are_gone(srv: RefServer) -> None:
    unknown = put(srv, refserver.new_token())
    assert unknown.status == 410
    doc = unknown.json()
    assert set(doc) == {"type", "title", "status", "detail", "instance"}
    assert doc["status"] == 410

    t0 = as_tok(srv.mint())  # lifetime 60 s
    srv.advance(59.5)
    t1 = put(srv, t0).tok()
    srv.advance(60.0)
    assert put(srv, t1).status == 410
    assert [r["reason"] for r in records(srv)] == ["unknown", None, "expired"]


def test_device_token_is_required(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(device_token="s3cret")
    t0 = as_tok(srv.mint())
    assert put(srv, t0).status == 403
    wrong = put(srv, t0, headers={"Authorization": "DeviceToken nope"})
    assert wrong.status == 403 and wrong.json()["status"] == 403
    assert put(srv, t0, headers={"Authorization": "Bearer s3cret"}).status == 403
    assert srv.current_sha256() == t0.sha  # a 403 never touches the lineage
    assert put(srv, t0, headers={"Authorization": "DeviceToken s3cret"}).status == 201


@pytest.mark.parametrize("retry_after", [None, 7])
def test_rate_limit_412(make_server: Callable[..., RefServer], retry_after: int | None) -> None:
    srv = make_server(rate_limit=2, rate_window=60.0, retry_after_412=retry_after, lifetime=600)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    t2 = put(srv, t1).tok()
    limited = put(srv, t2)
    assert limited.status == 412
    assert limited.json()["status"] == 412
    if retry_after is None:
        assert "retry-after" not in limited.headers
    else:
        assert limited.headers["retry-after"] == "7"
    assert srv.current_sha256() == t2.sha
    other = as_tok(srv.mint())  # the limit is per lineage
    assert put(srv, other).status == 201
    srv.advance(61)
    assert put(srv, t2).status == 201


def test_lifetime_null_never_expires(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(lifetime=None)
    t0 = as_tok(srv.mint())
    assert t0.expiration is None
    resp = put(srv, t0)
    assert resp.status == 201 and b'"expirationTime": null' in resp.body
    srv.advance(10 * 365 * 86400)
    assert put(srv, resp.tok()).status == 201
    assert as_tok(srv.mint(lifetime=5.0)).expiration is not None


@pytest.mark.parametrize(
    "time_format, expected",
    [
        ("z", ["2023-11-14T22:14:20.250Z"] * 3),
        ("offset", ["2023-11-14T22:14:20+00:00"] * 3),
        ("mixed", ["2023-11-14T22:14:20.250Z", "2023-11-14T22:14:20+00:00",
                   "2023-11-14T22:14:20.250Z"]),
    ],
)
def test_expiration_time_formats(
    make_server: Callable[..., RefServer], time_format: str, expected: list[str]
) -> None:
    srv = make_server(time_format=time_format, clock=lambda: 1700000000.25, lifetime=60.0)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    t2 = put(srv, t1).tok()
    seen = [t.expiration for t in (t0, t1, t2)]
    assert seen == expected
    for text in seen:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert parsed.timestamp() == pytest.approx(1700000060.25, abs=1.0)


def test_restart_on_the_same_sqlite_file_keeps_the_lineage(
    make_server: Callable[..., RefServer], tmp_path: Path
) -> None:
    db = str(tmp_path / "tokens.sqlite3")
    first = make_server(db=db)
    t0 = as_tok(first.mint())
    t1 = put(first, t0).tok()
    first.close()

    second = make_server(db=db)
    assert second.port != 0
    assert second.current_sha256() == t1.sha
    t2 = put(second, t1).tok()
    assert put(second, t0).status == 410
    assert [r["sha256"] for r in second.lineage()] == [t0.sha, t1.sha, t2.sha]


@pytest.mark.parametrize(
    "ctype, status",
    [
        ("application/json", 201),
        ("application/json; charset=utf-8", 201),
        ("Application/JSON", 201),
        ("application/json-patch+json", 201),
        ("text/json", 201),
        ("application/vnd.example+json", 201),
        ("text/plain", 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/jsonx", 415),
        (None, 415),
    ],
)
def test_content_types(srv: RefServer, ctype: str | None, status: int) -> None:
    t0 = as_tok(srv.mint())
    resp = put(srv, t0, ctype=ctype)
    assert resp.status == status
    if status == 415:
        assert resp.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b'{"registrationToken": 5}', b'["x"]', b'{"token": "x"}', b"\xff\xfe{}",
     b'{"registrationToken": null}'],
)
def test_malformed_bodies_are_400(srv: RefServer, body: bytes) -> None:
    resp = put(srv, None, body=body)
    assert resp.status == 400
    assert resp.json()["status"] == 400


def test_wrong_method_and_path(srv: RefServer) -> None:
    resp = request(srv, "GET", REFRESH)
    assert resp.status == 405 and resp.headers["allow"] == "PUT"
    assert request(srv, "PUT", "/devices/other").status == 404
    assert request(srv, "PUT", REFRESH + "/more").status == 404  # no sloppy path matching
    assert request(srv, "PUT", "/api" + REFRESH).status == 404


def test_every_answer_has_date_length_and_close(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    answers = [put(srv, t0), put(srv, t0), put(srv, "nope"), request(srv, "GET", "/x"),
               request(srv, "GET", "/_control/stats")]
    for resp in answers:
        assert resp.headers["connection"] == "close"
        assert int(resp.headers["content-length"]) == len(resp.body)
        date = datetime.datetime.strptime(resp.headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
        assert abs(date.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()) < 600


def test_date_header_follows_the_server_clock(srv: RefServer) -> None:
    srv.advance(86400 * 3)
    resp = request(srv, "GET", "/nothing")
    date = datetime.datetime.strptime(resp.headers["date"], "%a, %d %b %Y %H:%M:%S GMT")
    skew = date.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
    assert 86400 * 3 - 600 < skew < 86400 * 3 + 600


def test_log_lines_redact_tokens(make_server: Callable[..., RefServer]) -> None:
    lines: list[str] = []
    srv = make_server(log=lines.append)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    put(srv, t0)
    put(srv, t0, ctype="text/plain")
    srv.fault("status", status=503)
    put(srv, t1)
    request_lines = [line for line in lines if REFRESH in line]
    assert len(request_lines) == 4
    assert lines[0] == "listening on %s" % srv.url
    for line in lines:
        assert not t0.leaks_into(line) and not t1.leaks_into(line)
    assert "tok=%s…(248)" % t0.value[:6] in request_lines[0]
    assert " 201 " in request_lines[0] and "rotated" in request_lines[0]
    assert "recovered(200)" in request_lines[1] and "revoked-child=" in request_lines[1]
    assert " 503 " in request_lines[3] and "fault:status" in request_lines[3]


# ---------------------------------------------------------------- fault injection


def test_fault_status_leaves_the_lineage_alone(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    assert srv.fault("status", status=503, retry_after=5, count=2) == 2
    for _ in range(2):
        resp = put(srv, t0)
        assert resp.status == 503
        assert resp.headers["retry-after"] == "5"
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["status"] == 503
    assert srv.current_sha256() == t0.sha
    assert put(srv, t0).status == 201
    assert [r["fault"] for r in records(srv)] == ["status", "status", None]


def test_faults_are_fifo(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("status", status=500)
    srv.fault("status", status=429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    srv.fault("status", status=423)
    first, second, third = put(srv, t0), put(srv, t0), put(srv, t0)
    assert (first.status, second.status, third.status) == (500, 429, 423)
    assert "retry-after" not in first.headers
    assert second.headers["retry-after"] == "Wed, 21 Oct 2015 07:28:00 GMT"
    assert put(srv, t0).status == 201


def test_fault_arguments_are_checked(srv: RefServer) -> None:
    with pytest.raises(ValueError):
        srv.fault("explode")
    with pytest.raises(ValueError):
        srv.fault("status")  # no status
    with pytest.raises(ValueError):
        srv.fault("garbage", body="poison")
    with pytest.raises(ValueError):
        srv.fault("status", status=503, count=0)
    assert srv.stats()["faults_pending"] == 0


@pytest.mark.parametrize("rst", [False, True])
def test_drop_after_commit_commits_then_drops(srv: RefServer, rst: bool) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("drop_after_commit", rst=rst)
    with pytest.raises((http.client.HTTPException, OSError)):
        put(srv, t0)
    rec = records(srv)[-1]
    assert (rec["outcome"], rec["fault"], rec["status"], rec["answered"]) == (
        "rotated", "drop_after_commit", 201, False)
    assert srv.current_sha256() == rec["issued_sha256"] != t0.sha
    assert state_of(srv, t0) == "grace"
    retry = put(srv, t0)  # what a device does after losing the answer
    assert retry.status == 200
    assert srv.current_sha256() == retry.tok().sha


def _check_garbage(kind: str, body: bytes) -> None:
    if kind == "notjson":
        with pytest.raises(ValueError):
            json.loads(body)
        return
    doc = json.loads(body)
    if kind == "array":
        assert isinstance(doc, list)
        return
    token = doc.get("registrationToken")
    checks = {
        "missing": lambda: "registrationToken" not in doc,
        "nonstring": lambda: token == 123,
        "empty": lambda: token == "",
        "control": lambda: "\x01" in token,
        "huge": lambda: len(body) >= 1 << 20,
        "badtime": lambda: doc["expirationTime"] == "yesterday",
    }
    assert checks[kind]()


@pytest.mark.parametrize("kind", refserver.GARBAGE_KINDS)
def test_garbage_answers_leave_the_lineage_alone(srv: RefServer, kind: str) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("garbage", body=kind)
    resp = put(srv, t0)
    assert resp.status == 201
    _check_garbage(kind, resp.body)
    assert srv.current_sha256() == t0.sha
    assert records(srv)[-1]["issued_sha256"] is None
    assert put(srv, t0).status == 201


def test_garbage_with_another_status(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("garbage", body="missing", status=200)
    resp = put(srv, t0)
    assert resp.status == 200 and resp.json() == {"expirationTime": None}


def test_hang_holds_without_blocking_others(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    other = as_tok(srv.mint())
    srv.fault("hang")
    with raw_socket(srv) as hung:
        hung.sendall(refresh_request(t0))
        wait_for(lambda: any(r["fault"] == "hang" for r in records(srv)))
        assert put(srv, other).status == 201  # served while the first one hangs
        hung.settimeout(0.5)
        with pytest.raises(socket.timeout):
            hung.recv(1)
    assert srv.current_sha256(device=srv.lineage()[0]["device"]) == t0.sha
    # Once the client leaves, the handler ends and the connection is accounted for.
    wait_for(lambda: records(srv)[0]["bytes_in"] == len(refresh_request(t0)))
    assert records(srv)[0]["status"] is None


def test_stop_ends_hanging_and_dripping_handlers_promptly(
    make_server: Callable[..., RefServer]
) -> None:
    srv = make_server()
    t0 = as_tok(srv.mint())
    srv.fault("hang")
    srv.fault("drip", interval=1.0)
    idle = raw_socket(srv)  # a client that connects and says nothing
    hung, dripped = raw_socket(srv), raw_socket(srv)
    try:
        hung.sendall(refresh_request(t0))
        wait_for(lambda: len(records(srv)) == 1)
        dripped.sendall(refresh_request(t0))
        wait_for(lambda: dripped.recv(1) == b"H")  # the drip has started
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 5.0
        dripped.settimeout(TIMEOUT)
        rest, _ = read_to_eof(dripped)
        assert len(rest) < 50  # cut short, not finished
    finally:
        for sock in (idle, hung, dripped):
            sock.close()


def test_drip_sends_one_byte_at_a_time(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    interval = 0.005
    srv.fault("drip", interval=interval)
    started = time.monotonic()
    with raw_socket(srv) as sock:
        sock.sendall(refresh_request(t0))
        raw, reads = read_to_eof(sock)
    elapsed = time.monotonic() - started
    status, headers, body = split_response(raw)
    assert status == 201 and int(headers["content-length"]) == len(body)
    assert elapsed >= (len(raw) - 1) * interval * 0.5
    assert reads >= 10  # many small reads, not one
    assert srv.current_sha256() == sha256_hex(json.loads(body)["registrationToken"])


@pytest.mark.parametrize("short", [False, True])
def test_bad_length(srv: RefServer, short: bool) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("bad_length", short=short)
    with raw_socket(srv) as sock:
        sock.sendall(refresh_request(t0))
        raw, _ = read_to_eof(sock)
    status, headers, body = split_response(raw)
    assert status == 201
    declared = int(headers["content-length"])
    assert (declared < len(body)) if short else (declared > len(body))
    json.loads(body)  # the whole, valid body was sent; only the length lies
    assert srv.current_sha256() == sha256_hex(json.loads(body)["registrationToken"])
    if not short:
        srv.fault("bad_length")
        conn = connection(srv)
        try:
            conn.request("PUT", REFRESH, body=refresh_request(t0).split(b"\r\n\r\n")[1],
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            with pytest.raises(http.client.IncompleteRead):
                resp.read()
        finally:
            conn.close()


def test_chunked(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("chunked", chunk_size=50)
    with raw_socket(srv) as sock:
        sock.sendall(refresh_request(t0))
        raw, _ = read_to_eof(sock)
    status, headers, rest = split_response(raw)
    assert status == 201
    assert headers["transfer-encoding"] == "chunked" and "content-length" not in headers
    body, chunks = b"", 0
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        body, rest, chunks = body + rest[:size], rest[size + 2 :], chunks + 1
    assert chunks >= 3
    assert srv.current_sha256() == sha256_hex(json.loads(body)["registrationToken"])
    srv.fault("chunked")  # and a real HTTP client reassembles it
    t1 = put(srv, Tok(json.loads(body)["registrationToken"], None))
    assert t1.status == 201 and srv.current_sha256() == t1.tok().sha


def test_redirect(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    srv.fault("redirect", status=308, location="http://example.invalid/elsewhere")
    srv.fault("redirect")
    first, second = put(srv, t0), put(srv, t0)
    assert (first.status, first.headers["location"]) == (308, "http://example.invalid/elsewhere")
    assert (second.status, second.headers["location"]) == (307, srv.url + REFRESH)
    assert srv.current_sha256() == t0.sha


# ---------------------------------------------------------------- stats and control API


def test_stats_count_wire_bytes_and_connections(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    sent, received = [], []
    token = t0
    for _ in range(3):
        req = refresh_request(token)
        with raw_socket(srv) as sock:
            sock.sendall(req)
            raw, _ = read_to_eof(sock)
        sent.append(len(req))
        received.append(len(raw))
        token = Tok(json.loads(split_response(raw)[2])["registrationToken"], None)
    stats = srv.stats()
    assert stats["connections"] == 3
    recs = stats["requests"]
    assert [r["bytes_in"] for r in recs] == sent
    assert [r["bytes_out"] for r in recs] == received
    assert len({r["connection_id"] for r in recs}) == 3
    assert recs[0]["token_sha256"] == t0.sha
    assert recs[2]["issued_sha256"] == token.sha
    assert all(r["body_received"] and r["status"] == 201 for r in recs)
    dumped = json.dumps(stats)
    assert not t0.leaks_into(dumped) and not token.leaks_into(dumped)


def test_stats_count_silent_and_early_closing_clients(
    make_server: Callable[..., RefServer]
) -> None:
    srv = make_server(handler_timeout=0.5)
    with raw_socket(srv) as silent:
        silent.settimeout(TIMEOUT)
        assert silent.recv(100) == b""  # the server gives up on a client that says nothing
    socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT).close()
    wait_for(lambda: srv.stats()["connections"] == 2)
    assert srv.stats()["requests"] == []
    assert put(srv, as_tok(srv.mint())).status == 201


@pytest.mark.parametrize(
    "junk",
    [
        b"HELLO\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),  # a TLS hello to http
        b"PUT " + b"/x" * 40000 + b" HTTP/1.1\r\n\r\n",
        b"PUT / HTTP/1.1\r\nX-Long: " + b"a" * 70000 + b"\r\n\r\n",
        b"PUT %s HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort" % REFRESH.encode(),
        b"PUT %s HTTP/1.1\r\nContent-Length: -5\r\n\r\n" % REFRESH.encode(),
        b"PUT %s HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n" % REFRESH.encode(),
        b"PUT %s HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % REFRESH.encode(),
        b"PUT %s HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n"
        % REFRESH.encode() + b"[" * 60000,
    ],
)
def test_hostile_requests_do_not_hurt_the_server(srv: RefServer, junk: bytes) -> None:
    with raw_socket(srv) as sock:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(junk)
            sock.shutdown(socket.SHUT_WR)
            raw, _ = read_to_eof(sock)
            if raw:
                assert 400 <= split_response(raw)[0] < 600
    assert put(srv, as_tok(srv.mint())).status == 201


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False), ("192.168.1.20", False), ("::ffff:10.0.0.5", False),
        ("fe80::1%eth0", False), ("", False), ("localhost", False), ("0.0.0.0", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_control_api_refuses_non_loopback(
    srv: RefServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(refserver, "is_loopback", lambda host: False)
    resp = request(srv, "POST", "/_control/faults", b'{"mode": "hang"}')
    assert resp.status == 403
    assert srv.stats()["faults_pending"] == 0


def test_control_api_over_http(srv: RefServer) -> None:
    t0 = as_tok(control(srv, "POST", "mint", {"lifetime": 100}))
    assert control(srv, "POST", "faults", {"mode": "status", "status": 503, "count": 2}) == {
        "pending": 2}
    assert put(srv, t0).status == 503
    assert control(srv, "GET", "stats")["faults_pending"] == 1
    control(srv, "POST", "reset")
    stats = control(srv, "GET", "stats")
    # Only the connection of this very stats request is left.
    assert (stats["faults_pending"], stats["requests"], stats["connections"]) == (0, [], 1)

    lineage = control(srv, "GET", "lineage")
    assert [row["sha256"] for row in lineage] == [t0.sha]
    device = lineage[0]["device"]
    assert control(srv, "GET", "lineage?device=%s" % device) == lineage
    assert control(srv, "GET", "lineage?device=nobody") == []

    clock = control(srv, "POST", "clock", {"offset": 101})
    assert clock["offset"] == 101
    assert put(srv, t0).status == 410  # expired by the moved clock
    assert srv.lineage()[0]["expired"] is True

    bad = request(srv, "POST", "/_control/faults", b'{"mode": "explode"}')
    assert bad.status == 400 and "explode" in bad.json()["detail"]
    assert request(srv, "GET", "/_control/nothing").status == 404


def test_current_sha256_needs_a_device_when_there_are_several(srv: RefServer) -> None:
    assert srv.current_sha256() is None
    first = as_tok(srv.mint())
    assert srv.current_sha256() == first.sha
    second = as_tok(srv.mint())
    with pytest.raises(ValueError):
        srv.current_sha256()
    device = [r["device"] for r in srv.lineage() if r["sha256"] == second.sha][0]
    assert srv.current_sha256(device) == second.sha


# ---------------------------------------------------------------- TLS


def client_context(ca_der: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca_der.read_bytes())


def test_tls_with_the_local_ca(make_server: Callable[..., RefServer], tmp_path: Path) -> None:
    files = refserver.ensure_tls(tmp_path / "tls", sans=["device-gw.local"])
    assert {p.name for p in (tmp_path / "tls").iterdir()} >= {
        "ca.der", "ca.pem", "ca.key.pem", "server.pem"}
    assert stat.S_IMODE(os.stat(files.server_pem).st_mode) == 0o600
    srv = make_server(tls=(str(files.server_pem), str(files.server_pem)))
    assert srv.url.startswith("https://127.0.0.1:")
    t0 = as_tok(srv.mint())
    req_len = len(refresh_request(t0))
    resp = put(srv, t0, ctx=client_context(files.ca_der))
    assert resp.status == 201
    rec = srv.stats()["requests"][0]
    # Wire bytes: the handshake and TLS records are counted, not just the HTTP text.
    assert rec["bytes_in"] > req_len + 200 and rec["bytes_out"] > len(resp.body) + 400

    # A second start reuses the CA, so devices provisioned with ca.der keep working.
    der, leaf = files.ca_der.read_bytes(), sha256_hex(files.server_pem.read_text())
    again = refserver.ensure_tls(tmp_path / "tls")
    assert again.ca_der.read_bytes() == der
    assert sha256_hex(again.server_pem.read_text()) != leaf  # a fresh server certificate


@pytest.mark.parametrize("case", ["good", "expired", "self_signed", "wrong_host"])
def test_tls_bad_certificates_fail_verification(
    make_server: Callable[..., RefServer], tmp_path: Path, case: str
) -> None:
    hosts = ["wrong.example"] if case == "wrong_host" else ["localhost", "127.0.0.1"]
    ca_der, certfile, keyfile = make_tls_files(
        tmp_path, hosts, expired=case == "expired", self_signed=case == "self_signed")
    srv = make_server(tls=(str(certfile), str(keyfile)))
    t0 = as_tok(srv.mint())
    if case == "good":
        assert put(srv, t0, ctx=client_context(ca_der)).status == 201
        assert srv.stats()["tls_handshake_failures"] == 0
        return
    with pytest.raises(ssl.SSLCertVerificationError):
        put(srv, t0, ctx=client_context(ca_der))
    wait_for(lambda: srv.stats()["tls_handshake_failures"] == 1)
    assert srv.stats()["connections"] == 1
    assert srv.current_sha256() == t0.sha


def test_plain_http_to_a_tls_server_is_a_handshake_failure(
    make_server: Callable[..., RefServer], tmp_path: Path
) -> None:
    _, certfile, keyfile = make_tls_files(tmp_path, ["127.0.0.1"])
    srv = make_server(tls=(str(certfile), str(keyfile)))
    with raw_socket(srv) as sock:
        sock.sendall(refresh_request(as_tok(srv.mint())))
        read_to_eof(sock)
    wait_for(lambda: srv.stats()["tls_handshake_failures"] == 1)
    assert srv.stats()["requests"] == []


# ---------------------------------------------------------------- command line


class Proc:
    """A CLI subprocess whose stdout lines arrive through a queue (reads never block)."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, *args], cwd=cwd, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self) -> str:
        return self.lines.get(timeout=TIMEOUT)

    def finish(self, signum: int) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=TIMEOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def test_cli_serve_and_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite3"
    minted = subprocess.run(
        [sys.executable, SCRIPT, "mint", "--db", str(db), "--lifetime", "300"],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )
    t0 = as_tok(json.loads(minted.stdout))
    assert t0.length == 248 and t0.expiration.endswith("Z")

    proc = Proc("serve", "--db", str(db), "--port-file", "port.txt", "--lifetime", "null",
                cwd=tmp_path)
    try:
        first = proc.line()
        match = re.fullmatch(r"listening on http://127\.0\.0\.1:(\d+)", first)
        assert match, first
        port = int(match.group(1))
        wait_for(lambda: (tmp_path / "port.txt").exists())
        wait_for(lambda: (tmp_path / "port.txt").read_text().strip() == str(port))
        remote = Remote(port)
        resp = put(remote, t0)
        assert resp.status == 201 and resp.tok().expiration is None
        log = proc.line()
        assert "201" in log and "rotated" in log and not t0.leaks_into(log)
        assert proc.finish(signal.SIGTERM) == 0
    finally:
        proc.kill()


def test_cli_serve_tls_and_sigint(tmp_path: Path) -> None:
    proc = Proc("serve", "--tls", "--tls-dir", "tls", "--san", "board-gw.local", "--db",
                ":memory:", cwd=tmp_path)
    try:
        match = re.fullmatch(r"listening on https://127\.0\.0\.1:(\d+)", proc.line())
        assert match
        for name in ("ca.der", "ca.pem", "server.pem"):
            assert (tmp_path / "tls" / name).is_file()
        remote = Remote(int(match.group(1)))
        ctx = client_context(tmp_path / "tls" / "ca.der")
        minted = request(remote, "POST", "/_control/mint", b"{}", ctx=ctx)
        assert minted.status == 200
        assert put(remote, minted.tok(), ctx=ctx).status == 201
        assert proc.finish(signal.SIGINT) == 0
    finally:
        proc.kill()


def test_cli_mint_out_is_private_and_quiet(tmp_path: Path) -> None:
    out = tmp_path / "token.json"
    done = subprocess.run(
        [sys.executable, SCRIPT, "mint", "--db", str(tmp_path / "m.sqlite3"), "--out", str(out)],
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    tok = as_tok(json.loads(out.read_text()))
    assert not tok.leaks_into(done.stdout + done.stderr)
    assert "tok=%s…(248)" % tok.value[:6] in done.stdout
    with RefServer(db=str(tmp_path / "m.sqlite3"), log=None) as srv:
        assert srv.current_sha256() == tok.sha
