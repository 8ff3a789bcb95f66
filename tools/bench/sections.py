"""The report's sections after the summary: the targets the firmware misses with the
figures behind each, and the detail tables (heap, code size, flash wear, traffic, idle).
Measured figures and their definitions only: what they mean and what would fix them is
docs/benchmarks-notes.md, written by hand."""

from __future__ import annotations

import json
import os
from typing import Any

from bringup.unixboard import ROOT

from bench.plan import ARCHS, WHO, BenchPlan
from bench.summary import Row, code_heap, loaded, median, num, table, wear

BEFORE = os.path.join(ROOT, "docs", "benchmarks-before.json")
INLINE = "lfs2-4096-p128"  # tools/powercut/images.py: littlefs2 with progsize=128


def before_section(res: dict[str, Any], rows: list[Row]) -> list[str]:
    """The budget rows beside the figures measured before issue 10 (docs/benchmarks-before.json,
    written once from that run)."""
    if not os.path.exists(BEFORE):
        return []
    with open(BEFORE) as f:
        doc = json.load(f)
    old = doc["rows"]
    x64 = res["code"]["arch"]["x64"]
    added = x64.get("regtoken.selfprov", 0)
    now = "; the figures now include it (%d bytes of .mpy; without it the package is %d bytes)" % (
        added, sum(x64.values()) - added) if added else ""
    return ["## Before and after issue 10", "", doc["what"] + now + ".", ""] + table(
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
    return [
        "- **Minimum heap: %s KiB, target ≤ %s KiB.** The modules main.py loads keep %d "
        "bytes on the heap once imported (largest: %s); imported from a ROMFS image, %d "
        "(main.py included). One rotation then allocates %s bytes (gc off), %d of them in "
        "Wire.request." % (
            num(row.firmware), num(row.target), code_heap(res, "firmware"), top(mods), rom,
            num(median(res["heap"]["firmware"]["cycle"]["alloc"])), parts["request"])]


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
        "- **%s: %s bytes, target ≤ %s.** Largest: %s. With `-O3 -X no-source-lines`: %d; "
        "the same modules merged into one file (same flags): %d. String literals: %d bytes."
        % (row.label, num(row.firmware), num(row.target), top({m: x64[m] for m in names}),
           lean, code["merged"], text)]


def why_flash(res: dict[str, Any], row: Row) -> list[str]:
    size = {d["who"]: d["size"] for d in res["flash"]}
    return [
        "- **%s: %s, target ≤ %s.** A commit writes %d bytes into its slot file (the "
        "baseline: %d into token.json). On the same block device formatted and mounted with "
        "`progsize=128`: %s programs and %s erases per rotation for the firmware, "
        "compactions included."
        % (row.label, num(row.firmware), num(row.target), size["firmware"], size["baseline"],
           num(wear(res, INLINE, "firmware", "programs")),
           num(wear(res, INLINE, "firmware", "erases")))]


def why_other(res: dict[str, Any], row: Row) -> list[str]:
    return ["- **%s: %s, target ≤ %s.**" % (row.label, num(row.firmware), num(row.target))]


WHY = {"heap": why_heap, "mpy_pkg": why_package, "mpy_loaded": why_mpy,
       "lfs_prog": why_flash, "lfs_erase": why_flash}


def targets_section(res: dict[str, Any], rows: list[Row]) -> list[str]:
    missed = [line for r in rows if not r.met for line in WHY.get(r.key, why_other)(res, r)]
    met = [r.label for r in rows if r.target is not None and r.met]
    out = ["## Targets: where the bytes go", ""]
    out += missed or ["Every target is met."]
    if met:
        out += ["- Met: " + "; ".join(met) + "."]
    return out + ["", "What these figures mean and what would bring them under their targets: "
                  "[benchmarks-notes.md](benchmarks-notes.md), written by hand.", ""]


# ---------------------------------------------------------------- the detail tables

FW_PARTS = (("request", "Wire.request: the whole HTTP exchange, streamed"),
            ("classify", "policy.classify: JSON and checks"),
            ("commit", "Store.commit: encode, write, read back"), ("_log", "log lines"))
BASE_PARTS = (("put_token", "put_token: HTTP and JSON"), ("put", "↳ of it requests.put"),
              ("json", "↳ of it Response.json"),
              ("save_token", "save_token: json.dump over token.json"), ("log", "log line"))


def parts_rows(who: str, parts: dict[str, int], labels: tuple[tuple[str, str], ...]
               ) -> list[list[Any]]:
    """probes/heap.py measures every edge it names (or fails): each one is here."""
    top = sum(parts[k] for k, label in labels if not label.startswith("↳"))
    rows = [[who, label, parts[k]] for k, label in labels]
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


def import_rows(res: dict[str, Any], who: str) -> list[list[Any]]:
    fair, x64 = res["fair"][who], res["code"]["arch"]["x64"]
    rows = [[who, m, fair[m], x64.get(m, "")] for m in sorted(fair, key=lambda m: -fair[m])]
    gone = res["released"][who]
    rows += [[who, "%s (while loaded; let go after boot)" % m, "(%d)" % gone[m], x64.get(m, "")]
             for m in sorted(gone)]
    return rows + [[who, "qstr pool tables, and names the let-go modules interned (shared)",
                    code_heap(res, who) - sum(fair.values()), ""],
                   [who, "**total**", code_heap(res, who), ""]]


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
            "beforehand). The total is measured whole by probes/kept.py, a program as small as "
            "main.py (a probe with many names of its own would make the shared name pool "
            "double inside the measurement): the heap still live after main.py's imports "
            "and one boot (`main.boot()`), the Refresher dropped. "
            "Modules needed only at boot (the config validator, the boot sequence) are "
            "imported, run and let go: their bytecode leaves the heap, the names they "
            "interned stay.", ""]
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
               INLINE: "littlefs2, 4 KiB blocks, progsize=128"}


def flash_section(res: dict[str, Any], plan: BenchPlan) -> list[str]:
    rows = [[FLASH_NAMES[d["kind"]], d["who"], d["size"],
             num(sum(d["programs"]) / len(d["programs"])), max(d["programs"]),
             num(sum(d["erases"]) / len(d["erases"])), max(d["erases"])] for d in res["flash"]]
    return ["## Flash wear", "", "%d rotations after 2 warm-up commits on a freshly formatted "
            "image (tools/powercut/), littlefs compactions included. FAT writes whole "
            "sectors and never asks for an erase; on NOR flash the layer below it (ESP32's "
            "wear levelling) erases." % plan.flash_rotations, ""] + table(
        ["filesystem", "program", "bytes written", "programs / rotation", "max",
         "erases / rotation", "max"], rows)


def traffic_section(res: dict[str, Any]) -> list[str]:
    rows = [[w, t, ", ".join(n["tls"]) or "—", num(n["connections"]), num(n["exchanges"]),
             num(n["sent"]), num(n["received"]), n["tls_round_trips"], num(n["round_trips"])]
            for w in WHO for t in ("http", "https") for n in [res["traffic"][w, t]]]
    return ["## Traffic", "", "At the reference server, per rotation: bytes counted at its "
            "socket (TLS records and handshakes included). Round trips: one per TCP connect, "
            "one or two per TLS handshake (two for a full TLS 1.2 one, as negotiated here), one "
            "per request/response exchange.", ""] + table(
        ["program", "transport", "TLS", "connections", "exchanges", "bytes sent",
         "bytes received", "TLS handshake round trips", "round trips"], rows)


SLEEP_NAMES = {"unix": "unix port: time.sleep", "light": "board, sleep=light (lightsleep)",
               "deep": "board, sleep=deep (each wake is a reboot)"}


def idle_section(res: dict[str, Any], plan: BenchPlan) -> list[str]:
    rows = [[w, SLEEP_NAMES[m], i["intervals"], "%.1f" % i["hours"], i["wakes"], i["idle_wakes"]]
            for (w, m), i in res["idle"].items()]
    return ["## Idle", "", "The real loops (firmware/main.py's, the baseline's) on a virtual "
            "clock, tokens living %d s, the server's clock moved along: wakes counted between "
            "two refreshes." % plan.idle_lifetime, ""] + table(
        ["program", "sleep", "intervals seen", "mean interval (h)", "wakes per interval (max)",
         "idle wake-ups (max)"], rows)
