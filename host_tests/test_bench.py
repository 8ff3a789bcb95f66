# Smoke test of `make bench` (tools/bench.py) in its tiny configuration, writing into a temp
# dir instead of docs/: it runs on the real interpreter and produces the summary table with
# every expected row and the chart. The figures themselves are not asserted on.
import os
import subprocess
import sys

import rp2emu
from conftest import ROOT

ROWS = (
    "Minimum heap, 2 rotations over http (KiB)",
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


def test_bench_quick_writes_the_tables_and_the_chart(micropython, tmp_path):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench.py"), "--quick",
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "MICROPYTHON": micropython})
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    text = (tmp_path / "benchmarks.md").read_text()
    assert "| measure | firmware | baseline | ratio |" in text
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    missing = [label for label in ROWS if not any(r.startswith("| " + label) for r in rows)]
    assert not missing, text
    for section in ("## Heap", "## Code size", "## Flash wear", "## Wire", "## Idle"):
        assert section in text
    assert (tmp_path / "benchmarks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the 32-bit figures, from the emulated Pico where it can run (in CI it must)
    assert "## 32-bit: the emulated Raspberry Pi Pico" in text
    if rp2emu.find_image() or os.environ.get("CI") == "true":
        for label in ("Heap the code keeps after import from .mpy, the",
                      "Heap allocated by one rotation outside the transport",
                      "Minimum free heap at which 2 rotations still succeed"):
            assert any(r.startswith("| " + label) for r in rows), text
