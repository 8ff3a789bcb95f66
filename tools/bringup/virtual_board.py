#!/usr/bin/env python3
"""A virtual board: the MicroPython unix port behind a pty (tools/bringup/ptybridge.py).

Its current directory is the board's filesystem root, so mpremote deploys into it as onto
a real board. mpremote must always use `resume` (board.json "resume": true): a soft reset
ends the unix port.

    python -m bringup.virtual_board [--dir build/vboard] [--main] [--heap 192K]

Foreground; prints the pty path, which is also linked at <dir>/tty (the unix board's
default PORT), with the filesystem in <dir>/fs; Ctrl-C or SIGTERM stops it.
--main runs main.py as a board does at boot (`micropython -i main.py`: Ctrl-C from
mpremote drops into the REPL, as on a board). Without a reader attached its output fills
the pty buffer and then blocks, so watch it with `make logs`.

From Python (the tests): `with VirtualBoard(root, tty) as vb: ... vb.tty ...`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from bringup.ptybridge import BridgedBoard, PtyBridge
from bringup.unixboard import find_micropython

READY_TIMEOUT_S = 60.0  # the unix port starts in well under a second; CI machines are slow


class VirtualBoardError(Exception):
    pass


class VirtualBoard(BridgedBoard):
    error = VirtualBoardError
    name = "the unix port"

    def __init__(self, root: str | os.PathLike[str], tty: str | os.PathLike[str],
                 micropython: str | None = None, run_main: bool = False,
                 heap: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.tty = Path(tty).absolute()
        self.micropython = micropython or find_micropython()
        self.run_main = run_main
        self.heap = heap

    def command(self) -> list[str]:
        if not self.micropython:
            raise VirtualBoardError("micropython not found: set MICROPYTHON or make setup")
        exe = [self.micropython] + (["-X", "heapsize=" + self.heap] if self.heap else [])
        return exe + (["-i", "main.py"] if self.run_main else [])

    def _bridge(self) -> PtyBridge:
        self.root.mkdir(parents=True, exist_ok=True)
        return PtyBridge(self.command(), link=self.tty, cwd=self.root)

    def _ready(self) -> None:
        # main.py's own output is no prompt: a board running it is up once it started
        if not self.run_main:
            self.poke_until(lambda seen: b">>> " in seen, READY_TIMEOUT_S, "gave no prompt")

    def __enter__(self) -> VirtualBoard:
        self.start()
        return self


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", default="build/vboard", help="holds tty and fs/ (default %(default)s)")
    ap.add_argument("--main", action="store_true", help="run main.py, as a board does at boot")
    ap.add_argument("--heap", default=None, help="MicroPython heap size, e.g. 192K (a board's)")
    args = ap.parse_args(argv)
    base = Path(args.dir)
    board = VirtualBoard(base / "fs", base / "tty", run_main=args.main, heap=args.heap)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        board.start()
        print("virtual board: pty %s (-> %s), filesystem %s" % (
            board.tty, os.path.realpath(board.tty), board.root), flush=True)
        print("use: make deploy BOARD=unix PORT=%s   (Ctrl-C stops the board)" % board.tty,
              flush=True)
        board.wait()
        print("virtual board: the unix port exited (a soft reset ends it)")
        return 1
    except KeyboardInterrupt:
        return 0
    except VirtualBoardError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    finally:
        board.stop()


if __name__ == "__main__":
    sys.exit(main())
