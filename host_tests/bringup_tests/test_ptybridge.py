"""tools/bringup/ptybridge.py: a pty that a client opens like a serial port, relayed to a child."""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from pathlib import Path

from bringup.ptybridge import PtyBridge

TIMEOUT = 30.0

# The child echoes each line upper-cased and says how each Ctrl-C reached it.
ECHO = ("import signal, sys\n"
        "signal.signal(signal.SIGINT, lambda *_: (sys.stdout.write('SIGINT\\n'),"
        " sys.stdout.flush()))\n"
        "for line in iter(sys.stdin.readline, ''):\n"
        "    sys.stdout.write(line.upper()); sys.stdout.flush()\n")


def read_until(fd: int, want: bytes) -> bytes:
    seen = b""
    deadline = time.monotonic() + TIMEOUT
    while want not in seen:
        assert time.monotonic() < deadline, "no %r in %r" % (want, seen)
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 4096)
    return seen


def client(link: Path) -> int:
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd, termios.TCSANOW)
    return fd


def test_pipes_relay_both_ways_and_survive_a_client_reopening(tmp_path: Path) -> None:
    link = tmp_path / "tty"
    with PtyBridge([sys.executable, "-u", "-c", ECHO], link=link, child_tty=False) as b:
        assert link.is_symlink() and b.path.startswith("/dev/")
        for word in (b"first", b"second"):  # each its own open/close, like mpremote calls
            fd = client(link)
            try:
                os.write(fd, word + b"\n")
                assert word.upper() in read_until(fd, word.upper())
            finally:
                os.close(fd)
    assert not link.exists() and not b.alive()


def test_a_child_tty_is_a_console_whose_ctrl_c_interrupts_it(tmp_path: Path) -> None:
    link = tmp_path / "tty"
    with PtyBridge([sys.executable, "-u", "-c", ECHO], link=link) as b:
        fd = client(link)
        try:
            os.write(fd, b"hello\n")
            seen = read_until(fd, b"HELLO")
            assert b"hello" not in seen  # no echo: the board side echoes for itself
            assert b"HELLO\r\n" not in seen  # and no \n -> \r\n mapping
            os.write(fd, b"\x03")
            read_until(fd, b"SIGINT")  # ISIG kept: mpremote's Ctrl-C reaches main.py
        finally:
            os.close(fd)
        assert b.alive()
    assert not b.alive() and not link.exists()
