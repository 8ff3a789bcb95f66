"""Boards against a live reference server: a board directory for either program, a run
watched until it rotated enough (or ran out of heap, stalled, exited), the minimum heap
bisected, and the traffic of a run as the server counted it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bringup.unixboard import UnixBoard, layout, write_config
from refserver import RefServer

from bench.plan import APP, BASELINE, BOARD_FILES, PROBES, ROTATED, BenchPlan, say

FATAL = ("MemoryError", "memory allocation failed")


@dataclass(frozen=True)
class CertFiles:
    """The files make_tls_files writes: the CA a board trusts, the server's chain and key."""

    ca_der: str
    cert: str
    key: str


def tls_context(tls: CertFiles, handshakes: list[tuple[str, bool]]) -> ssl.SSLContext:
    """A server context that notes each handshake's version and whether it resumed."""

    class Noted(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            handshakes.append((self.version() or "?", self.session_reused))

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls.cert, tls.key)
    ctx.sslobject_class = Noted
    return ctx


@contextlib.contextmanager
def serving(lifetime: float, tls: CertFiles | None = None
            ) -> Iterator[tuple[RefServer, list[tuple[str, bool]]]]:
    handshakes: list[tuple[str, bool]] = []
    ctx = tls_context(tls, handshakes) if tls else None
    srv = RefServer(db=":memory:", lifetime=lifetime, grace=lifetime, log=None, tls=ctx)
    try:
        yield srv.start(), handshakes
    finally:
        srv.close()


def make_board(who: str, board_dir: str, srv: RefServer, tls: CertFiles | None = None,
               **extra: Any) -> str:
    """A board directory: main.py and the regtoken package as .mpy (firmware) or the
    baseline as main.py; config.json for a freshly minted token; the probes."""
    cfg = {"api_url": srv.url, "initial_token": srv.mint()["registrationToken"],
           "timeout_s": 5, "backoff_min_s": 1, **extra}
    if tls:
        cfg["ca_file"] = "ca.der"
    if who != "baseline":  # firmware, app, restart: as .mpy; firmware-py, app-py: as source
        layout(board_dir, cfg, mpy=not who.endswith("-py"))
        if who.startswith("app"):
            shutil.copy(APP, os.path.join(board_dir, "main.py"))
    else:
        os.makedirs(board_dir)
        shutil.copy(BASELINE, os.path.join(board_dir, "main.py"))
        write_config(board_dir, cfg)
    for name in BOARD_FILES:
        shutil.copy(os.path.join(PROBES, name), board_dir)
    if tls:
        shutil.copy(tls.ca_der, os.path.join(board_dir, "ca.der"))
    return board_dir


@dataclass
class Run:
    why: str  # "" when the board completed plan.rotations rotations
    stats: dict[str, Any]
    handshakes: list[tuple[str, bool]]


def run_board(who: str, heap_kib: int, plan: BenchPlan, tls: CertFiles | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, \
            serving(plan.lifetime, tls) as (srv, handshakes):
        board_dir = make_board(who, os.path.join(tmp, "board"), srv, tls)
        if who == "restart":  # a first boot with heap to spare commits a token, then a cut
            first = UnixBoard(board_dir, plan.micropython, heapsize="1M").start()
            try:
                first.wait_for(ROTATED, timeout=plan.probe_timeout)
            finally:
                first.stop(signal.SIGKILL)
        board = UnixBoard(board_dir, plan.micropython, heapsize="%dK" % heap_kib).start()
        try:
            why = watch(board, plan)
        finally:
            board.stop(signal.SIGKILL)
        return Run(why, srv.stats(), list(handshakes))


def verdict(lines: list[str], want: int) -> str | None:
    if any(f in line for line in lines for f in FATAL):
        return "MemoryError"
    if sum(ROTATED in line for line in lines) >= want:
        return ""
    return None


def watch(board: UnixBoard, plan: BenchPlan) -> str:
    """'' once the board rotated plan.rotations times, else why not: a MemoryError (also one
    the firmware survived as a failed attempt), an exit, a stall or the time limit."""
    assert board.proc is not None
    start = last = time.monotonic()
    seen = 0
    while True:
        exited = board.proc.poll() is not None
        if exited:
            board.wait_exit(5)  # drains the last lines
        lines = board.lines()
        found = verdict(lines, plan.rotations)
        if found is not None:
            return found
        now = time.monotonic()
        done = sum(ROTATED in line for line in lines)
        if done > seen:
            seen, last = done, now
        if exited:
            return "exited"
        if now - last > plan.stall:
            return "stalled"
        if now - start > plan.probe_timeout:
            return "timeout"
        time.sleep(0.05)


def min_heap(who: str, plan: BenchPlan, tls: CertFiles | None = None) -> dict[str, Any]:
    """The smallest heap (KiB, plan.heap_step steps) that completes plan.rotations
    rotations, every probe tried, and the run at the first passing upper bound."""
    name = "%s %s" % (who, "https" if tls else "http")
    lo, hi = 0, plan.heap_max  # lo: known to fail (0: assumed)
    ref = run_board(who, hi, plan, tls)
    probes = [(hi, ref.why or "ok")]
    while ref.why:
        if hi >= 1024:
            raise RuntimeError("%s: no run completed even with %d KiB" % (name, hi))
        lo, hi = hi, hi * 2
        ref = run_board(who, hi, plan, tls)
        probes.append((hi, ref.why or "ok"))
    while hi - lo > plan.heap_step:
        mid = lo + max(plan.heap_step, (hi - lo) // 2 // plan.heap_step * plan.heap_step)
        why = run_board(who, mid, plan, tls).why
        probes.append((mid, why or "ok"))
        say("%s heap %d KiB: %s" % (name, mid, why or "ok"))
        lo, hi = (lo, mid) if not why else (mid, hi)
    return {"kib": hi, "probes": sorted(probes), "reference": ref}


def tls_round_trips(handshakes: list[tuple[str, bool]]) -> int:
    """Round trips a handshake adds before the request: TLS 1.3 or a resumed 1.2 one, 1;
    a full TLS 1.2 handshake, 2."""
    if not handshakes:
        return 0
    version, resumed = handshakes[-1]
    return 1 if version == "TLSv1.3" or resumed else 2


def traffic(run: Run) -> dict[str, Any]:
    """Per rotation, at the server: connections, HTTP exchanges, bytes each way (TLS records
    and handshakes included) and round trips (TCP + TLS handshakes + exchanges)."""
    reqs = run.stats["requests"]
    rotations = sum(r["status"] in (200, 201) for r in reqs)
    conns = {r["connection_id"]: r for r in reqs}.values()  # bytes are per connection
    n = run.stats["connections"]
    tls = tls_round_trips(run.handshakes)
    return {
        "rotations": rotations,
        "connections": n / rotations,
        "exchanges": len(reqs) / rotations,
        "sent": sum(c["bytes_in"] for c in conns) / rotations,
        "received": sum(c["bytes_out"] for c in conns) / rotations,
        "tls": sorted({v for v, _ in run.handshakes}),
        "tls_round_trips": tls,
        "round_trips": (n * (1 + tls) + len(reqs)) / rotations,
    }
