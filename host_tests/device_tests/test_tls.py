# Tier 2, TLS: firmware/main.py on the real MicroPython unix port against the reference
# server over https on loopback. A server the device cannot verify never sees the token, a
# redirect never receives it, and the one way to skip verification is written out and loud.
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from bringup.unixboard import write_config
from conftest import probe
from refserver import RefServer, make_tls_files
from rig import PATH, LiveRig, sha, store_files, wait_until

HOSTS = ["localhost", "127.0.0.1"]


def _same_ca(src: Any, dst: Any) -> None:
    """Start dst with src's CA, so make_tls_files(dst, ...) issues from the CA a device trusts."""
    os.makedirs(dst, exist_ok=True)
    for name in ("ca.pem", "ca.key.pem"):
        shutil.copy(os.path.join(src, name), os.path.join(dst, name))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: Any) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    out: dict[str, Any] = {}
    good_ca, cert, key = make_tls_files(root / "good", HOSTS)
    out["good"] = (cert, key)
    out["ca_der"] = good_ca
    other_ca, cert, key = make_tls_files(root / "other", HOSTS)  # a CA the device does not know
    out["wrong_ca"] = (cert, key)
    _same_ca(root / "good", root / "wronghost")
    _, cert, key = make_tls_files(root / "wronghost", ["example.com"])
    out["wrong_host"] = (cert, key)
    _same_ca(root / "good", root / "expired")
    _, cert, key = make_tls_files(root / "expired", HOSTS, expired=True)
    out["expired"] = (cert, key)
    _, cert, key = make_tls_files(root / "selfsigned", HOSTS, self_signed=True)
    out["self_signed"] = (cert, key)
    good_pem = (root / "good" / "ca.pem").read_bytes()
    other_pem = (root / "other" / "ca.pem").read_bytes()
    bundles = {"bundle.pem": other_pem + good_pem,  # the right CA second
               "bundle-first.pem": good_pem + other_pem,
               "bundle-crlf.pem": (other_pem + good_pem).replace(b"\n", b"\r\n"),
               "other.pem": other_pem,
               # DER one after another, the right CA second, and the newline an editor adds
               "bundle.der": Path(other_ca).read_bytes() + Path(good_ca).read_bytes() + b"\n"}
    for name, data in bundles.items():
        (root / name).write_bytes(data)
        out[name] = root / name
    out["other_der"] = other_ca
    return out


@pytest.fixture
def rigs(tmp_path: Any, micropython: str) -> Any:
    made: list[LiveRig] = []

    def make(**kw: Any) -> LiveRig:
        made.append(LiveRig(tmp_path, micropython, name="rig%d" % len(made), **kw))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _retry_in(line: str) -> int:
    m = re.search(r"retry in (\d+)s", line)
    assert m, "no backoff in: " + line
    return int(m.group(1))


@pytest.mark.parametrize("ca", ["ca_der", "bundle.pem", "bundle.der"])
def test_right_ca_rotates(rigs: Any, pki: dict[str, Any], ca: str) -> None:
    rig = rigs(tls=pki["good"], ca=pki[ca])
    b = rig.boot()
    b.wait_for("rotated (201)")
    st = rig.srv.stats()
    assert st["tls_handshake_failures"] == 0
    [req] = rig.requests()
    assert req["status"] == 201 and req["body_received"]
    minted = sha(rig.minted["registrationToken"])  # never a token inside an assert
    assert req["token_sha256"] == minted
    assert rig.stored_sha() == rig.srv.current_sha256() == req["issued_sha256"]
    assert b.count("WARNING") == 0
    assert b.stop() == 0
    rig.assert_no_leak()


# what mbedTLS says for each failure: proof that the intended check fired
BAD_SERVERS = {
    "wrong_ca": "trusted CA",
    "wrong_host": "CN",
    "expired": "expired",
    "self_signed": "trusted CA",
}


@pytest.mark.parametrize("bad", list(BAD_SERVERS))
def test_unverifiable_server_never_sees_the_token(rigs: Any, pki: dict[str, Any],
                                                  bad: str) -> None:
    rig = rigs(tls=pki[bad], ca=pki["ca_der"])
    b = rig.boot()
    fails = b.wait_for("TLS:", n=2, timeout=60)  # the first attempt, and the retry after it
    for line in fails:
        assert "transport: OSError" in line and BAD_SERVERS[bad] in line, line
    assert 1 <= _retry_in(fails[0]) <= 4
    assert b.count("refresh: presenting") >= 2
    assert b.count("committed") == 0
    # the handshake failed at the server too (its log can trail the device's), and no
    # request, let alone a body, ever arrived
    wait_until(lambda: rig.srv.stats()["tls_handshake_failures"] >= 2, 30, "2 failed handshakes")
    st = rig.srv.stats()
    assert st["requests"] == [], st["requests"]
    assert not any(r["body_received"] for r in st["requests"])
    minted = sha(rig.minted["registrationToken"])
    assert rig.stored_sha() == minted
    assert [r["sha256"] for r in rig.srv.lineage()] == [minted]  # never rotated
    assert b.stop() == 0
    assert rig.stored_sha() == minted
    rig.assert_no_leak()


def test_tls_verify_false_only_when_written_and_warned_at_every_boot(
        rigs: Any, pki: dict[str, Any]) -> None:
    # a self-signed server: only the explicit opt-out gets through to it
    rig = rigs(tls=pki["self_signed"], tls_verify=False)
    assert "ca_file" not in rig.config
    b = rig.boot()
    b.wait_for("rotated (201)")
    assert b.count("WARNING: tls_verify is false") == 1
    assert b.stop() == 0
    b = rig.boot()
    b.wait_for("state: healthy")
    assert b.count("WARNING: tls_verify is false") == 1  # again, on the second boot
    assert b.stop() == 0
    assert rig.stored_sha() == rig.srv.current_sha256()
    before = store_files(rig.dir)
    # without the opt-out, an https api_url needs a ca_file: the device stops at once
    for extra in ({}, {"tls_verify": True}, {"tls_verify": "false"}):
        cfg = {k: v for k, v in rig.config.items() if k != "tls_verify"}
        cfg.update(extra)
        write_config(rig.dir, cfg)
        b = rig.boot()
        assert b.wait_exit() == 2
        key = "tls_verify" if extra.get("tls_verify") == "false" else "ca_file"
        assert any("stopped:" in ln and key in ln for ln in b.lines()), b.lines()
        assert b.count("refresh:") == 0
    assert store_files(rig.dir) == before
    assert len(rig.requests()) == 1
    rig.assert_no_leak()


def test_a_ca_file_without_a_usable_certificate_stops_the_device(
        rigs: Any, pki: dict[str, Any], tmp_path: Any) -> None:
    # mbedTLS refuses the file's contents: a config error naming the key (exit 2), not a
    # traceback, and the store is left as it was
    import base64

    pem = b"-----BEGIN CERTIFICATE-----\nAAAAjunk\n-----END CERTIFICATE-----\n"
    with open(pki["ca_der"], "rb") as f:  # the right CA as PEM, its base64 cut short
        cut = base64.b64encode(f.read())[:-41]
    cut = b"-----BEGIN CERTIFICATE-----\n" + cut + b"\n-----END CERTIFICATE-----\n"
    huge = pem * (16385 // len(pem) + 1)  # past the 16 KB a ca_file may hold
    for name, data, said in (("junk.der", b"0\x82\x01\x00" + b"junk" * 64, "certificate"),
                             ("junk.pem", pem, "certificate"),
                             ("cut.pem", cut, "broken base64"),
                             ("huge.pem", huge, "at most 16 KB")):
        (tmp_path / name).write_bytes(data)
        rig = rigs(tls=pki["good"], ca=tmp_path / name)
        before = store_files(rig.dir)
        b = rig.boot()
        assert b.wait_exit() == 2, b.lines()
        assert any("stopped:" in ln and "'ca_file'" in ln and said in ln
                   for ln in b.lines()), b.lines()
        assert b.count("refresh:") == 0 and b.count("Traceback") == 0
        assert store_files(rig.dir) == before and rig.requests() == []


def test_redirect_never_receives_the_token(rigs: Any, pki: dict[str, Any],
                                           tmp_path: Any) -> None:
    elsewhere = RefServer(db=str(tmp_path / "elsewhere.sqlite3"), log=None).start()
    try:
        rig = rigs(tls=pki["good"], ca=pki["ca_der"])
        for status in (307, 308):
            rig.srv.fault("redirect", status=status, location=elsewhere.url + PATH)
        b = rig.boot()
        b.wait_for("rotated (201)", timeout=60)
        fails = [ln for ln in b.lines() if "retry in" in ln]
        assert len(fails) == 2
        assert "HTTP 307" in fails[0] and "HTTP 308" in fails[1], fails
        reqs = rig.requests()
        assert [r["status"] for r in reqs] == [307, 308, 201]
        assert len({r["token_sha256"] for r in reqs}) == 1  # the same token, to the same host
        st = elsewhere.stats()
        assert st["connections"] == 0 and st["requests"] == []
        assert rig.stored_sha() == rig.srv.current_sha256()
        assert b.stop() == 0
        rig.assert_no_leak()
    finally:
        elsewhere.stop()


# The transport alone on the real interpreter (probes/wire_tls.py).
def test_transport_ca_files_and_a_stalled_handshake(micropython: str, pki: dict[str, Any],
                                                    tmp_path: Any) -> None:
    srv = RefServer(db=":memory:", tls=pki["good"], log=None).start()
    stall, closed = socket.socket(), socket.socket()
    try:
        stall.bind(("127.0.0.1", 0))
        stall.listen(4)  # the kernel completes the TCP handshake; nobody ever answers
        url = "https://localhost:%d" % srv.port
        stalled = "https://localhost:%d" % stall.getsockname()[1]
        closed.bind(("127.0.0.1", 0))  # bound, never listening: the connection is refused
        refused = "https://localhost:%d" % closed.getsockname()[1]
        runs = [("der", url, 5, pki["ca_der"]), ("right-second", url, 5, pki["bundle.pem"]),
                ("right-first", url, 5, pki["bundle-first.pem"]),
                ("crlf", url, 5, pki["bundle-crlf.pem"]),
                ("wrong-pem", url, 5, pki["other.pem"]), ("wrong-der", url, 5, pki["other_der"])]
        # each failure twice more: a failed handshake let go of its plain socket unclosed,
        # one descriptor per attempt until none was left (then OSError 24 for ever)
        runs += [("%s-%d" % (what, i), u, 5, ca) for i in (2, 3) for what, u, ca in (
            ("wrong-der", url, pki["other_der"]), ("refused", refused, pki["ca_der"]))]
        runs += [("stall", stalled, 2, pki["ca_der"])]
        p = subprocess.run([micropython, probe("wire_tls"), PATH]
                           + ["%s|%s|%d|%s" % r for r in runs],
                           capture_output=True, text=True, timeout=120)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        cases = {w[1]: (int(w[2]), int(w[3]), " ".join(w[5:]), int(w[4]))
                 for w in (ln.split() for ln in p.stdout.splitlines()) if w[:1] == ["CASE"]}
        assert set(cases) == {r[0] for r in runs}, out
        for label, certs in (("der", 1), ("right-second", 2), ("right-first", 2), ("crlf", 2)):
            # 410 is the server's verdict on the made-up token: the exchange went through
            assert cases[label][0] == certs and cases[label][2] == "OK 410", out
        for label in ("wrong-pem", "wrong-der", "wrong-der-2", "wrong-der-3"):
            assert cases[label][2].startswith("ERR OSError") and "TLS:" in cases[label][2], out
        for label in ("refused-2", "refused-3"):
            assert "ECONNREFUSED" in cases[label][2], out
        # every exchange closed what it opened, failed or not
        assert len({c[3] for c in cases.values()}) == 1, out
        # the deadline cut the stalled handshake: not sooner, and not much later
        n, ms, what, _ = cases["stall"]
        assert what.startswith("ERR OSError") and "timed out" in what, out
        assert 2000 <= ms < 2000 + 8000, out
        st = srv.stats()
        assert [r["status"] for r in st["requests"]] == [410] * 4
        wait_until(lambda: srv.stats()["tls_handshake_failures"] >= 2, 30, "2 failed handshakes")
    finally:
        stall.close()
        closed.close()
        srv.stop()
