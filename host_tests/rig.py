# Shared by the tier-2 tests that run firmware/main.py on the real MicroPython unix port
# against the reference server over loopback: a LiveRig is one server, one board directory and
# any number of boots of that board, with every line both of them print kept for a leak scan.
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from bringup.unixboard import UnixBoard, layout
from refserver import RefServer
from regtoken.store import SLOTS, decode

PATH = "/devices/registration-tokens/refresh"


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _store_paths(board_dir: str) -> list[str]:
    """Paths (relative to the board) of every store file: the slots, whatever the layout
    (token.a or token.a/record), and any damaged slot set aside."""
    out = []
    for root, _dirs, files in os.walk(board_dir):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), board_dir)
            if rel.startswith("token."):
                out.append(rel)
    return sorted(out)


def stored_tokens(board_dir: str) -> list[str]:
    """Every token in the board's store files, damaged slots included (to scan for leaks)."""
    out = []
    for rel in _store_paths(board_dir):
        with open(os.path.join(board_dir, rel), "rb") as f:
            line = f.read().split(b"\n", 1)[0].decode(errors="replace").strip()
        if line.count(" ") >= 6:  # RT1 crc gen exp due seed [at why] token: the last field
            out.append(line.rsplit(" ", 1)[1])
    return out


def stored_record(board_dir: str) -> Any:
    """The record the board would load (newest valid slot), or None. Read-only: unlike
    Store.load() it never logs, so it is safe while the device runs."""
    best = None
    for name in SLOTS:
        try:
            with open(os.path.join(board_dir, name), "rb") as f:
                rec = decode(f.read())
        except OSError:
            continue
        if rec is not None and (best is None or rec.gen > best.gen):
            best = rec
    return best


def stored_sha(board_dir: str) -> str | None:
    rec = stored_record(board_dir)
    return sha(rec.token) if rec else None


def store_files(board_dir: str) -> dict[str, str]:
    """sha256 of every store file, by path: equal dicts mean an untouched store. Digests, not
    bytes, so that a failing comparison cannot print a token."""
    out = {}
    for rel in _store_paths(board_dir):
        with open(os.path.join(board_dir, rel), "rb") as f:
            out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def wait_until(cond: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0fs waiting for %s" % (timeout, what))
        time.sleep(0.05)


def leaks(text: str, secrets: list[str], window: int = 12) -> int:
    """How many secrets have some `window`-character piece in `text`. Logs may show the
    first 6 characters of a token, never more; the count is returned, never the token."""
    found = 0
    for s in secrets:
        pieces = {s[i:i + window] for i in range(0, max(len(s) - window, 0) + 1, 4)}
        pieces.add(s[-window:])
        if any(p in text for p in pieces if len(p) == window):
            found += 1
    return found


class LiveRig:
    """A reference server and a board directory laid out from firmware/.

    lifetime, grace: the server's token lifetime. skew: seconds the server's clock runs
    behind the host's, its Date header staying on the host's (a proxy's Date), which shortens
    the lifetime the device sees (exp is server time; a Date on the server's clock would
    move it back onto the device's) while the server keeps the token valid for `lifetime`:
    a quick refresh schedule that leaves time for faults. tls: (certfile, keyfile) serves
    https; the device then connects to `host` ("localhost" by default, the name the test
    certificates carry) and gets `ca` (a file on the host) copied into the board directory
    as its ca_file. server: more RefServer arguments (device_token, op_lifetime). **cfg:
    config.json keys.
    """

    def __init__(self, tmp_path: Any, micropython: str, lifetime: float | None = 60.0,
                 grace: float = 30.0, initial_exp: bool = False, *, name: str = "",
                 tls: tuple[Any, Any] | None = None, ca: Any = None, host: str | None = None,
                 skew: float = 0.0, server: dict[str, Any] | None = None, **cfg: Any) -> None:
        base = os.path.join(str(tmp_path), name) if name else str(tmp_path)
        os.makedirs(base, exist_ok=True)
        self.db = os.path.join(base, "server.sqlite3")
        self.server_lines: list[str] = []
        self.srv = RefServer(db=self.db, lifetime=lifetime, grace=grace, tls=tls,
                             log=self.server_lines.append, **(server or {})).start()
        if skew:
            self.srv.set_clock_offset(-skew)
            self.srv.date_from_host = True
        self.minted = self.srv.mint()
        self.dir = os.path.join(base, "board")
        scheme = "https" if tls else "http"
        self.url = "%s://%s:%d" % (scheme, host or ("localhost" if tls else "127.0.0.1"),
                                   self.srv.port)
        config: dict[str, Any] = {"api_url": self.url,
                                  "initial_token": self.minted["registrationToken"],
                                  "backoff_min_s": 1, "backoff_max_s": 4, "timeout_s": 5}
        if initial_exp:
            config["initial_expiration"] = self.minted["expirationTime"]
        os.makedirs(self.dir, exist_ok=True)
        if ca is not None:
            shutil.copy(str(ca), os.path.join(self.dir, os.path.basename(str(ca))))
            config["ca_file"] = os.path.basename(str(ca))
        config.update(cfg)
        self.config = config
        layout(self.dir, config)
        self.micropython = micropython
        self.boards: list[UnixBoard] = []
        self.stamped: list[tuple[float, str]] = []  # (time.monotonic(), line), every boot
        self._lock = threading.Lock()

    def _stamp(self, line: str) -> None:
        with self._lock:
            self.stamped.append((time.monotonic(), line))

    def boot(self) -> UnixBoard:
        b = UnixBoard(self.dir, self.micropython, echo=self._stamp).start()
        self.boards.append(b)
        return b

    def requests(self) -> list[dict[str, Any]]:
        """The server's records of refresh-endpoint requests, in arrival order."""
        return [r for r in self.srv.stats(settle=0.5)["requests"] if r.get("path") == PATH]

    def calls(self, path: str) -> list[dict[str, Any]]:
        """The server's records of requests to `path`, in arrival order."""
        return [r for r in self.srv.stats(settle=0.5)["requests"] if r.get("path") == path]

    def refreshes(self) -> list[dict[str, Any]]:
        return [r for r in self.srv.stats()["requests"] if r.get("token_sha256")]

    def stored_sha(self) -> str | None:
        return stored_sha(self.dir)

    def close(self) -> None:
        for b in self.boards:
            b.stop(signal.SIGKILL)
        self.srv.stop()

    def secrets(self) -> list[str]:
        """Every token this rig ever saw: all the server issued, and all the store holds."""
        con = sqlite3.connect("file:%s?mode=ro" % self.db, uri=True)
        try:
            issued = [row[0] for row in con.execute("SELECT token FROM tokens")]
        finally:
            con.close()
        return [self.minted["registrationToken"]] + issued + stored_tokens(self.dir)

    def output(self) -> str:
        lines = [line for b in self.boards for line in b.lines()]
        return "\n".join(lines + list(self.server_lines))

    def assert_no_leak(self) -> None:
        n = leaks(self.output(), self.secrets())
        assert n == 0, "%d token(s) leaked into the device or server log" % n
