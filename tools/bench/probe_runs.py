"""The MicroPython probes (probes/*.py) run on the real interpreter: each prints RESULT
lines of JSON, and a probe that exits non-zero or prints none fails the whole bench."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bringup.romfs import image as romfs_image
from bringup.unixboard import ROOT

from bench.boardruns import make_board, serving
from bench.plan import PROBES, ROTATED, BenchPlan


def results(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[7:]) for line in lines if line.startswith("RESULT ")]


def run_probe(plan: BenchPlan, cwd: str, args: list[str], timeout: float = 120) -> list[str]:
    p = subprocess.run([plan.micropython, *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout)
    if p.returncode != 0 or not results(p.stdout.splitlines()):
        raise RuntimeError("probe %s failed (%d):\n%s%s" % (
            " ".join(args), p.returncode, p.stdout[-1500:], p.stderr[-1500:]))
    return p.stdout.splitlines()


def board_probe(plan: BenchPlan, who: str, args: list[str], lifetime: float,
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


def heap(plan: BenchPlan, who: str) -> dict[str, Any]:
    found = results(board_probe(plan, who, ["heap.py", who, str(plan.cycles)], 3600))
    out = {doc["what"]: doc for doc in found}
    want = plan.cycles + 3  # 2 warm-up, the measured ones, 1 itemised
    if out["cycle"]["rotations"] != want:
        raise RuntimeError("%s heap probe: %d rotations, not %d" % (
            who, out["cycle"]["rotations"], want))
    return out


def code_kept(plan: BenchPlan, who: str) -> int:
    """The heap the code keeps after main.py's imports and one boot, measured by the tiny
    probes/kept.py: as a board running main.py has it."""
    lines = board_probe(plan, who, ["kept.py", who], 3600)
    return int(results(lines)[0]["kept"])


def import_costs(plan: BenchPlan, who: str, *options: str) -> dict[str, int]:
    """Heap each module keeps once imported (probes/heap.py's options); the modules
    imported at boot and let go under the key "released", as {module: bytes}."""
    lines = board_probe(plan, who, ["heap.py", who, "0", *options], 3600)
    doc = results(lines)[0]
    return {**doc["modules"], "released": doc["released"]}


def idle(plan: BenchPlan, who: str, mode: str) -> dict[str, Any]:
    horizon = str(2.2 * plan.idle_lifetime)
    board = {} if mode == "unix" else {"sleep": mode, "wifi": {"ssid": "bench", "password": ""}}
    lines = board_probe(plan, who, ["idle.py", who, mode, horizon], plan.idle_lifetime,
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


def flash(plan: BenchPlan) -> list[dict[str, Any]]:
    lines = run_probe(plan, ROOT, [os.path.relpath(os.path.join(PROBES, "flash.py"), ROOT),
                                   str(plan.flash_rotations)])
    return results(lines)
