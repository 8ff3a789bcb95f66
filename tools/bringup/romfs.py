#!/usr/bin/env python3
"""The regtoken package as a ROMFS image, and its deploy onto a board's ROMFS partition.

    python -m bringup.romfs --board esp32 [--out build/romfs/regtoken-esp32.romfs]
    python -m bringup.romfs --board esp32 --port /dev/ttyUSB0 --deploy

The image holds regtoken/*.mpy, compiled for the board as `make deploy` compiles them, and
is built by `mpremote romfs build`. A board that has a ROMFS partition mounts it at /rom at
boot, with /rom on sys.path, and runs the bytecode in place from flash: the code costs
almost no heap (`make bench` measures it). Only custom firmware builds have one: the stock
MicroPython images for ESP32 and rp2 do not, and `mpremote romfs deploy` then stops with
"ROMFS is not enabled on this device".

--deploy writes the image with `mpremote romfs deploy`. Then reset the board, and keep no
regtoken/ folder on its filesystem (`make deploy` puts one there): sys.path searches the
filesystem before /rom, so that copy would be the one imported. main.py and config.json
stay on the filesystem.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bringup.boardctl import RemoteBoard, RemoteError, mpremote
from bringup.boards import ROOT, BoardError, load
from bringup.deploy import build as compile_firmware

PACKAGE = "regtoken"


def image(package_dir: Path, out: Path) -> int:
    """out: a ROMFS image holding package_dir as /regtoken (mpremote romfs build, files as
    they are: compile first). Returns its size in bytes."""
    with tempfile.TemporaryDirectory(prefix=".romfs-") as tmp:
        shutil.copytree(package_dir, Path(tmp) / PACKAGE)
        out.parent.mkdir(parents=True, exist_ok=True)
        p = subprocess.run([mpremote(), "romfs", "--no-mpy", "-o", str(out), "build", tmp],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise BoardError("mpremote romfs build failed:\n%s" % (p.stdout + p.stderr).strip())
    return out.stat().st_size


def build(board_name: str, out: Path | None = None) -> Path:
    """The package compiled for the board, as a ROMFS image -> its path."""
    board = load(board_name)
    out = out or ROOT / "build" / "romfs" / ("%s-%s.romfs" % (PACKAGE, board.name))
    with tempfile.TemporaryDirectory(prefix=".romfs-") as tmp:
        compile_firmware(board, Path(tmp), lib_only=True)
        size = image(Path(tmp) / PACKAGE, out)
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print("romfs: %s (%d bytes): %s/*.mpy for %s" % (shown, size, PACKAGE, board.name))
    return out


def deploy(remote: RemoteBoard, img: Path) -> None:
    print(remote.run("romfs", "deploy", str(img)).strip())
    listing = remote.run("fs", "ls", ":")
    if any(line.split()[-1:] == [PACKAGE + "/"] for line in listing.splitlines()):
        print("warning: the board's filesystem holds %s/, which shadows the ROMFS copy: "
              "remove it (mpremote connect %s fs rm -r :%s)" % (PACKAGE, remote.port, PACKAGE))
    print("romfs: deployed; reset the board (RST, or `mpremote connect %s reset`) to mount it "
          "at /rom" % remote.port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="unix")
    ap.add_argument("--port", default="", help="serial port or pty (default: the board's)")
    ap.add_argument("--out", type=Path, default=None, help="the image file")
    ap.add_argument("--deploy", action="store_true", help="write it to the board's ROMFS")
    args = ap.parse_args(argv)
    try:
        img = build(args.board, args.out)
        if args.deploy:
            deploy(RemoteBoard.open(load(args.board), args.port), img)
    except (BoardError, RemoteError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
