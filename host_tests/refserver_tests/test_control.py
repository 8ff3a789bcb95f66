"""Stats (byte counts at the socket, connections) and the loopback-only control API."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
import refserver
import refserver.handler
from refserver import RefServer, is_loopback

from refserver_tests.client import (
    TIMEOUT,
    Tok,
    as_tok,
    control,
    put,
    raw_socket,
    read_to_eof,
    refresh_request,
    request,
    split_response,
    wait_for,
)


def test_stats_count_socket_bytes_and_connections(srv: RefServer) -> None:
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
    monkeypatch.setattr(refserver.handler, "is_loopback", lambda host: False)
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
