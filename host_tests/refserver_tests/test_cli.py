"""The command line (`python -m refserver`): serve until SIGTERM/SIGINT, with TLS, mint."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import subprocess
import threading
from pathlib import Path

from refserver import RefServer

from refserver_tests.client import (
    TIMEOUT,
    ServerAt,
    as_tok,
    cli,
    cli_env,
    client_context,
    put,
    request,
    wait_for,
)


class Proc:
    """A CLI subprocess whose stdout lines arrive through a queue (reads never block)."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            cli(*args), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
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
        cli("mint", "--db", str(db), "--lifetime", "300"), env=cli_env(),
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
        remote = ServerAt(port)
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
        remote = ServerAt(int(match.group(1)))
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
        cli("mint", "--db", str(tmp_path / "m.sqlite3"), "--out", str(out)), env=cli_env(),
        capture_output=True, text=True, timeout=TIMEOUT, check=True,
    )
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    tok = as_tok(json.loads(out.read_text()))
    assert not tok.leaks_into(done.stdout + done.stderr)
    assert "tok=%s…(248)" % tok.value[:6] in done.stdout
    with RefServer(db=str(tmp_path / "m.sqlite3"), log=None) as srv:
        assert srv.current_sha256() == tok.sha
