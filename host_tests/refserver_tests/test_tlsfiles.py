"""TLS material and serving https: the local CA reused across restarts, byte counts with
TLS, and the broken certificates a device must refuse."""

from __future__ import annotations

import os
import ssl
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import refserver
from refserver import RefServer, make_tls_files, sha256_hex

from refserver_tests.client import (
    as_tok,
    client_context,
    put,
    raw_socket,
    read_to_eof,
    refresh_request,
    wait_for,
)


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
    # Bytes at the socket: the handshake and TLS records are counted, not just the HTTP text.
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
