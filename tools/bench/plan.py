"""What a bench run measures and how hard it tries (BenchPlan), and the paths and names
every part of the run shares."""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, replace

from bringup.unixboard import ROOT

PACKAGE = os.path.dirname(os.path.abspath(__file__))
PROBES = os.path.join(PACKAGE, "probes")  # the MicroPython side: probes and the baseline
BASELINE = os.path.join(PROBES, "naive_baseline.py")
APP = os.path.join(ROOT, "examples", "sensor_app.py")
# Copied into every board directory beside main.py.
BOARD_FILES = ("naive_baseline.py", "heap.py", "idle.py", "kept.py")
WHO = ("firmware", "baseline")
# Heap variants bisected beside the two programs: the package as source (a plain copy or a
# mip install), examples/sensor_app.py (asyncio, the refresher as a task) both ways, and a
# restart: the firmware as .mpy booting on a token its first boot committed (a power cycle
# of a provisioned device: the store's record is read at boot, at the heap's peak).
VARIANTS = ("firmware-py", "app", "app-py", "restart")
ROTATED = "rotated ("  # both programs log one such line per rotation
ARCHS = ("xtensawin", "armv6m", "x64")
KIB = 1024


@dataclass(frozen=True)
class BenchPlan:
    micropython: str
    lifetime: float = 4.0  # s: tokens of the heap and traffic runs
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


def quick(plan: BenchPlan) -> BenchPlan:
    """The tiny configuration (BENCH_ARGS=--quick; the smoke test): same tables, coarse."""
    return replace(plan, lifetime=3.0, rotations=2, heap_step=16, tls_heap=False, cycles=2,
                   flash_rotations=10)


def say(msg: str) -> None:
    print("bench: " + msg, file=sys.stderr, flush=True)


def tool(name: str) -> str:
    """A tool from the venv this interpreter runs in, else from PATH."""
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name) or name
