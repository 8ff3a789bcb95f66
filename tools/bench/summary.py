"""The summary: one Row per measure (firmware, baseline, target), and the table helpers
every section of the report uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.plan import KIB, BenchPlan


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


def code_heap(res: dict[str, Any], who: str) -> int:
    """Heap the code keeps after import and boot, measured in a run with no import hook:
    everything still live once the program's own objects are dropped."""
    return int(res["kept"][who])


def summary_rows(res: dict[str, Any], plan: BenchPlan) -> list[Row]:
    mins, heap, code, net = res["min_heap"], res["heap"], res["code"], res["traffic"]
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
                mins["app-py", "http"]["kib"], None, 64),
            Row("heap_restart", "Minimum heap, a restart on a stored token, .mpy (KiB)",
                mins["restart", "http"]["kib"], None)]
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
