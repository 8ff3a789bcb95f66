# Tier 2: regtoken.wire on the real interpreter (probes/wire_stream.py) against a real
# server on loopback that
# answers exactly as scripted: CDN-sized headers, a header flood, a keep-alive server that
# never closes, chunked, an IPv6 literal URL; and a DNS failure that names the host. The
# urequests transport (regtoken.ureq) too: the headers it keeps, the host it names.
from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any

import pytest
from conftest import probe

TOKEN = b'{"registrationToken": "abc", "expirationTime": null}'
def cdn(total: int) -> bytes:
    out = b""
    while len(out) < total:
        out += b"Set-Cookie: s=" + b"x" * 1200 + b"\r\nContent-Security-Policy: " + \
            b"y" * 2000 + b"\r\n"
    return out


ANSWERS = {
    "/cdn": b"HTTP/1.1 201 Created\r\n" + cdn(7 * 1024) + b"Content-Length: %d\r\n\r\n"
            % len(TOKEN) + TOKEN,
    "/flood": b"HTTP/1.1 201 Created\r\n" + cdn(64 * 1024) + b"\r\n" + TOKEN,
    "/keepalive": b"HTTP/1.1 201 Created\r\nConnection: keep-alive\r\nContent-Length: %d\r\n"
                  b"\r\n" % len(TOKEN) + TOKEN,
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(TOKEN)
                + TOKEN + b"\r\n0\r\n\r\n",
    # no HTTP at all: a token object where the status line should be
    "/garbage": TOKEN + b"\r\n\r\n",
    # a redirect to itself (the port filled in by Server.one)
    "/loop": b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://127.0.0.1:%d/loop\r\n"
             b"Content-Length: 0\r\n\r\n",
    # the length, then junk, and the connection held: read up to the length
    "/trailing": b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(TOKEN) + TOKEN
                 + b"GARBAGE",
    "/twolen": b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\nContent-Length: 3\r\n\r\n"
               % len(TOKEN) + TOKEN,
    "/obstext": b"HTTP/1.1 403 Forbidden\r\nX-Name: Ren\xe9e\r\nRetry-After: 5\r\n"
                b"Content-Length: 0\r\n\r\n",
    # no body, whatever the headers say, and the connection held
    "/nocontent": b"HTTP/1.1 204 No Content\r\nRetry-After: 600\r\n\r\n",
    # closed after the answer
    "/cutshort": b"HTTP/1.1 201 Created\r\nContent-Length: 300\r\n\r\n" + TOKEN,
    "/dated": b"HTTP/1.1 201 Created\r\nServer: x\r\nDate: Fri, 15 Jan 2027 08:00:00 GMT\r\n"
              b"Retry-After: 30\r\nContent-Length: %d\r\n\r\n" % len(TOKEN) + TOKEN,
}


class Server:
    """Reads a request head, sends the scripted answer for its path, and keeps the
    connection open (as a keep-alive server does) until the client closes it."""

    def __init__(self, family: int = socket.AF_INET, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.done = False
        self.heads: list[bytes] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(20)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(4096)
                    if not more:
                        return
                    data += more
                head, _, got = data.partition(b"\r\n\r\n")
                n = [int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                     if ln.lower().startswith(b"content-length:")]
                while n and len(got) < n[0]:  # the body too: closed unread, it is a reset
                    more = conn.recv(4096)
                    if not more:
                        return
                    got += more
                self.heads.append(data)
                path = data.split(b" ")[1].decode()
                answer = ANSWERS.get(path, b"HTTP/1.1 404 Not Found\r\n\r\n")
                conn.sendall(answer % self.port if path == "/loop" else answer)
                if path not in ("/dated", "/cutshort"):
                    conn.recv(1)  # until the client closes (or the timeout)
            except OSError:
                pass

    def close(self) -> None:
        self.done = True
        self.sock.close()


def run(micropython: str, tmp_path: Any, urls: list[str]) -> tuple[list[str], list[int]]:
    p = subprocess.run([micropython, probe("wire_stream"), *urls], capture_output=True,
                       text=True, timeout=120)
    cases = [ln.split(" ", 3)[1:] for ln in p.stdout.splitlines() if ln.startswith("CASE")]
    n = len(urls) - (urls[:1] == ["--ureq"])
    assert p.returncode == 0 and len(cases) == n, p.stdout + p.stderr
    # every exchange closed what it opened, whatever the answer was
    assert len({c[1] for c in cases}) == 1, p.stdout
    return [c[2] for c in cases], [int(c[0]) for c in cases]


def test_streaming_answers_on_the_real_interpreter(micropython: str, tmp_path: Any) -> None:
    srv = Server()
    try:
        base = "http://127.0.0.1:%d" % srv.port
        out, ms = run(micropython, tmp_path, [base + p for p in ANSWERS])
    finally:
        srv.close()
    got = dict(zip(ANSWERS, out))
    assert got["/cdn"] == "OK 201 content-length %d" % len(TOKEN), got
    assert got["/flood"].startswith("ERR OSError") and "headers too long" in got["/flood"]
    assert got["/keepalive"] == "OK 201 content-length %d" % len(TOKEN), got
    assert ms[2] < 3000, "the keep-alive answer waited for the deadline: %d ms" % ms[2]
    assert got["/chunked"] == "OK 200 transfer-encoding %d" % len(TOKEN), got
    assert got["/dated"] == "OK 201 content-length,date,retry-after %d" % len(TOKEN), got
    assert got["/garbage"].startswith("ERR OSError bad answer"), got


def test_ipv6_literal_url_and_a_dns_failure(micropython: str, tmp_path: Any) -> None:
    try:
        srv = Server(socket.AF_INET6, "::1")
    except OSError as e:
        pytest.skip("no IPv6 loopback here: %s" % e)
    try:
        out, _ = run(micropython, tmp_path, ["http://[::1]:%d/cdn" % srv.port,
                                             "http://no-such-host.invalid/x"])
    finally:
        srv.close()
    assert out[0] == "OK 201 content-length %d" % len(TOKEN), out
    assert b"\r\nHost: [::1]:%d\r\n" % srv.port in srv.heads[0]  # brackets kept
    assert out[1].startswith("ERR OSError") and "no-such-host.invalid" in out[1], out


def test_urequests_keeps_the_headers_used_and_names_the_host(micropython: str,
                                                              tmp_path: Any) -> None:
    srv = Server()
    try:
        out, _ = run(micropython, tmp_path, ["--ureq", "http://127.0.0.1:%d/dated" % srv.port,
                                             "http://no-such-host.invalid/x"])
    finally:
        srv.close()
    assert out[0] == "OK 201 content-length,date,retry-after %d" % len(TOKEN), out
    assert out[1].startswith("ERR OSError") and "no-such-host.invalid" in out[1], out


def test_urequests_closes_its_socket_whatever_it_cannot_read(micropython: str,
                                                           tmp_path: Any) -> None:
    # requests closes its socket only on an OSError: a chunked answer (its ValueError) or a
    # status line that is no HTTP left one descriptor and ~137 bytes per attempt for good;
    # and its exception's text, which quotes what it read, went into the log whole
    srv = Server()
    try:
        base = "http://127.0.0.1:%d" % srv.port
        out, _ = run(micropython, tmp_path, ["--ureq"] + [base + p for p in (
            "/dated", "/chunked", "/garbage", "/loop", "/chunked", "/garbage", "/dated")]
            + ["app:%s/dated" % base] * 2)  # and the application's own requests, unchanged
    finally:
        srv.close()
    assert out[0] == out[-3] == "OK 201 content-length,date,retry-after %d" % len(TOKEN), out
    assert out[-2:] == ["OK 201  0"] * 2, out
    for o in out[1:-3]:
        assert o.startswith("ERR OSError 127.0.0.1:") and len(o) < 120, out
    assert TOKEN.decode() not in " ".join(out), out  # cut at 48 characters
    assert "redirect not followed" in out[3], out  # the token went once, not ~165 times
    assert len([h for h in srv.heads if h.startswith(b"PUT /loop ")]) == 1, srv.heads


def test_urequests_reads_up_to_the_length_and_bounds_the_headers(micropython: str,
                                                                 tmp_path: Any) -> None:
    # requests reads to EOF: a keep-alive server's held connection took the whole timeout
    # (every attempt failed), junk after the body spoiled it, two lengths passed, a short
    # body was garbage, not cut short; any number of header lines was read, and a byte
    # past ASCII in any header failed the whole answer
    srv = Server()
    try:
        base = "http://127.0.0.1:%d" % srv.port
        out, ms = run(micropython, tmp_path, ["--ureq"] + [base + p for p in (
            "/keepalive", "/trailing", "/twolen", "/cutshort", "/flood", "/obstext",
            "/nocontent")])
    finally:
        srv.close()
    assert out[:2] == ["OK 201 content-length %d" % len(TOKEN)] * 2, out
    assert max(ms[:2]) < 3000, ms  # not the 4 s timeout
    assert out[2].startswith("ERR OSError") and "content-length" in out[2], out
    assert out[3].startswith("ERR OSError") and "truncated" in out[3], out
    assert out[4].startswith("ERR OSError") and "headers too long" in out[4], out
    assert out[5] == "OK 403 content-length,retry-after 0", out
    assert out[6] == "OK 204 retry-after 0" and ms[6] < 3000, (out, ms)  # not the timeout
