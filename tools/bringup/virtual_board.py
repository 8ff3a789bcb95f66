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
import select
import signal
import sys
import termios
import time
import tty as ttymod
from pathlib import Path

from bringup.ptybridge import PtyBridge, PtyBridgeError
from bringup.unixboard import find_micropython

READY_TIMEOUT_S = 60.0  # the unix port starts in well under a second; CI machines are slow


class VirtualBoardError(Exception):
    pass


class VirtualBoard:
    def __init__(self, root: str | os.PathLike[str], tty: str | os.PathLike[str],
                 micropython: str | None = None, run_main: bool = False,
                 heap: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.tty = Path(tty).absolute()
        self.micropython = micropython or find_micropython()
        self.run_main = run_main
        self.heap = heap
        self.bridge: PtyBridge | None = None

    def command(self) -> list[str]:
        if not self.micropython:
            raise VirtualBoardError("micropython not found: set MICROPYTHON or make setup")
        exe = [self.micropython] + (["-X", "heapsize=" + self.heap] if self.heap else [])
        return exe + (["-i", "main.py"] if self.run_main else [])

    def start(self) -> VirtualBoard:
        self.root.mkdir(parents=True, exist_ok=True)
        self.bridge = PtyBridge(self.command(), link=self.tty, cwd=self.root)
        try:
            self.bridge.start()
            if not self.run_main:
                self._wait_prompt(time.monotonic() + READY_TIMEOUT_S)
        except PtyBridgeError as e:
            self.stop()
            raise VirtualBoardError(str(e)) from e
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_prompt(self, deadline: float) -> None:
        """Wait until the REPL answers, so the first mpremote call finds a live board."""
        fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            ttymod.setraw(fd, termios.TCSANOW)
            seen = b""
            while b">>> " not in seen:
                self._check_alive()
                if time.monotonic() > deadline:
                    raise VirtualBoardError("the unix port at %s gave no prompt in %ds: %r"
                                            % (self.tty, READY_TIMEOUT_S, seen[-200:]))
                os.write(fd, b"\r")
                if select.select([fd], [], [], 0.5)[0]:
                    seen += os.read(fd, 4096)
        finally:
            os.close(fd)

    def _check_alive(self) -> None:
        if not self.alive():
            code = self.bridge.proc.returncode if self.bridge and self.bridge.proc else None
            raise VirtualBoardError("the unix port exited (%s)" % code)

    def alive(self) -> bool:
        return self.bridge is not None and self.bridge.alive()

    def wait(self) -> int:
        assert self.bridge is not None
        return self.bridge.wait()

    def stop(self) -> None:
        """Stop the unix port and the bridge; safe to call twice."""
        if self.bridge is not None:
            self.bridge.stop()

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
