"""What the server answers and how it reads a request: media types, malformed bodies (400),
methods and paths, Date/Content-Length/Connection on every answer, redacted log lines,
hostile requests."""

from __future__ import annotations

import contextlib
import datetime
import socket
import time
from collections.abc import Callable

import pytest
from refserver import RefServer

from refserver_tests.client import (
    REFRESH,
    as_tok,
    put,
    raw_socket,
    read_to_eof,
    request,
    split_response,
)


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
