#!/usr/bin/env python3
"""A virtual board: the MicroPython unix port behind a pty made by socat.

Its current directory is the board's filesystem root, so mpremote deploys into it as onto
a real board. mpremote must always use `resume` (board.json "resume": true): a soft reset
ends the unix port.

    python tools/virtual_board.py [--dir build/vboard] [--main] [--heap 192K]

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
import re
import select
import shutil
import signal
import subprocess
import sys
import termios
import time
import tty as ttymod
from pathlib import Path

from unixboard import find_micropython

READY_TIMEOUT_S = 60.0  # the unix port starts in well under a second; CI machines are slow
# socat splits its address on these; a path containing one would be cut apart
SOCAT_SPECIAL = re.compile(r"[\s,:!'\"\\]")


class VirtualBoardError(Exception):
    pass


class VirtualBoard:
    def __init__(self, root: str | os.PathLike[str], tty: str | os.PathLike[str],
                 micropython: str | None = None, run_main: bool = False,
                 heap: str | None = None) -> None:
        self.root = Path(root).absolute()
        self.tty = Path(tty).absolute()  # socat runs in root: a relative link would land there
        self.micropython = micropython or find_micropython()
        self.run_main = run_main
        self.heap = heap
        self.proc: subprocess.Popen[bytes] | None = None
        self.child: int | None = None  # the micropython process socat started

    def command(self) -> list[str]:
        socat = shutil.which("socat")
        if not socat:
            raise VirtualBoardError("socat not found: apt-get install socat")
        if not self.micropython:
            raise VirtualBoardError("micropython not found: set MICROPYTHON or make setup")
        exe = [self.micropython] + (["-X", "heapsize=" + self.heap] if self.heap else [])
        exe += ["-i", "main.py"] if self.run_main else []
        for part in exe + [str(self.tty)]:
            if SOCAT_SPECIAL.search(part):
                raise VirtualBoardError("path %r has a character socat cannot take" % part)
        # Our side: rawer (no echo, no line editing): mpremote sees bytes as a UART gives them.
        # The board side keeps ISIG, so the Ctrl-C that mpremote sends interrupts a running
        # main.py, and drops echo and \n -> \r\n mapping, which the REPL does itself.
        return [socat, "PTY,link=%s,rawer" % self.tty,
                "EXEC:%s,pty,setsid,ctty,echo=0,onlcr=0" % " ".join(exe)]

    def start(self) -> VirtualBoard:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tty.parent.mkdir(parents=True, exist_ok=True)
        if self.tty.is_symlink() or self.tty.exists():
            self.tty.unlink()  # a leftover link from a board that was killed
        self.proc = subprocess.Popen(self.command(), cwd=self.root, stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (self.tty.exists() and self._find_child()):
            self._check_alive()
            if time.monotonic() > deadline:
                raise VirtualBoardError("socat made no pty at %s in %ds" % (self.tty,
                                                                            READY_TIMEOUT_S))
            time.sleep(0.05)
        if not self.run_main:
            self._wait_prompt(deadline)

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
        assert self.proc is not None
        if self.proc.poll() is not None:
            err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
            raise VirtualBoardError("socat exited (%s): %s" % (self.proc.returncode, err.strip()))

    def _find_child(self) -> int | None:
        if self.child is None and self.proc is not None:
            self.child = _child_of(self.proc.pid)
        return self.child

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Stop socat and the unix port; safe to call twice."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()  # closes the pty master: the child gets SIGHUP
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            if self.proc.stderr:
                self.proc.stderr.close()
        if self.child is not None:
            _reap(self.child)
            self.child = None
        if self.tty.is_symlink():
            self.tty.unlink()

    def __enter__(self) -> VirtualBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _child_of(ppid: int) -> int | None:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        if int(fields[1]) == ppid:
            return int(stat.parent.name)
    return None


def _reap(pid: int) -> None:
    """SIGHUP normally ends it with the pty; make sure, without waiting long."""
    deadline = time.monotonic() + 10
    sig = signal.SIGTERM
    while Path("/proc/%d" % pid).exists():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            sig = signal.SIGKILL
        time.sleep(0.05)


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
        assert board.proc is not None
        board.proc.wait()
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
