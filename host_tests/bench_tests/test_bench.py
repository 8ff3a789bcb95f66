# Smoke test of `make bench` (tools/bench/) in its tiny configuration, writing into a temp
# dir instead of docs/: it runs on the real interpreter and produces the summary table with
# every expected row and the chart. The figures themselves are not asserted on; that every
# path the report names exists is, and that a probe whose target is gone fails loudly.
import json
import os
import re
import shutil
import subprocess
import sys

from bringup import rp2emu
from conftest import ROOT

PROBES = os.path.join(ROOT, "tools", "bench", "probes")
ROWS = (
    "Minimum heap, 2 rotations over http (KiB)",
    "Minimum heap, a restart on a stored token",
    "Heap allocated by one rotation",
    "Heap a rotation leaves allocated",
    "Heap the code keeps after import",
    ".mpy bytes, whole regtoken package",
    ".mpy bytes of the modules main.py loads",
    "Flash programs per rotation, littlefs2 4 KiB blocks",
    "Flash erases per rotation, littlefs2 4 KiB blocks",
    "Flash sector writes per rotation, FAT",
    "TCP connections per rotation",
    "Bytes sent + received per rotation, http",
    "Round trips per rotation, http",
    "Bytes sent + received per rotation, https",
    "Idle wake-ups between two refreshes",
)
# a path in the tree: a top-level folder, then anything up to a space, backtick or bracket
PATH = re.compile(r"\b((?:tools|firmware|host_tests|examples|docs|boards)/[\w./-]*)")


def test_bench_quick_writes_the_tables_and_the_chart(micropython, tmp_path):
    p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MICROPYTHON": micropython,
                            "PYTHONPATH": os.path.join(ROOT, "tools")})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| measure | firmware | baseline | ratio |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    missing = [label for label in ROWS if not any(r.startswith("| " + label) for r in rows)]
    assert not missing, text
    for section in ("## Heap", "## Code size", "## Flash wear", "## Traffic", "## Idle"):
        assert section in text
    named = {m.rstrip(".") for m in PATH.findall(text)}
    assert "tools/bench/probes/heap.py" in named
    gone = [path for path in sorted(named) if not os.path.exists(os.path.join(ROOT, path))]
    assert not gone, "the report names paths that do not exist: %s" % gone
    assert os.path.exists(os.path.join(ROOT, "docs", "benchmarks-notes.md"))
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the 32-bit figures, from the emulated Pico where it can run (in CI it must)
    assert "## 32-bit: the emulated Raspberry Pi Pico" in text
    if rp2emu.find_image() or os.environ.get("CI") == "true":
        for label in ("Heap the code keeps after import from .mpy, the",
                      "Heap allocated by one rotation outside the transport",
                      "Minimum free heap at which 2 rotations still succeed"):
            assert any(r.startswith("| " + label) for r in rows), text


def test_heap_probe_fails_loudly_when_an_edge_it_measures_is_gone(micropython, tmp_path):
    # the baseline as it would be after a rename: the probe must not measure the rest and
    # leave the renamed function out of the report
    with open(os.path.join(PROBES, "naive_baseline.py")) as f:
        src = f.read()
    assert "def save_token(" in src
    (tmp_path / "naive_baseline.py").write_text(src.replace("save_token", "store_token"))
    shutil.copy(os.path.join(PROBES, "heap.py"), tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(
        {"api_url": "http://127.0.0.1:9", "initial_token": "not-used-before-the-check"}))
    p = subprocess.run([micropython, "heap.py", "baseline", "1"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert "naive_baseline.save_token" in p.stdout + p.stderr
    assert "RESULT" not in p.stdout


def test_the_hand_written_notes_name_only_paths_that_exist():
    with open(os.path.join(ROOT, "docs", "benchmarks-notes.md")) as f:
        named = {m.rstrip(".") for m in PATH.findall(f.read())}
    assert "firmware/board/sleep.py" in named
    gone = [path for path in sorted(named) if not os.path.exists(os.path.join(ROOT, path))]
    assert not gone, "benchmarks-notes.md names paths that do not exist: %s" % gone
