"""Every injectable fault: what it sends, and that only the transport faults touch the
lineage."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable

import pytest
import refserver
from refserver import RefServer, sha256_hex

from refserver_tests.client import (
    REFRESH,
    TIMEOUT,
    Tok,
    as_tok,
    connection,
    put,
    raw_socket,
    read_to_eof,
    records,
    refresh_request,
    split_response,
    state_of,
    wait_for,
)


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
