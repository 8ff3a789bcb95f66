"""A pty for a program that is not a serial board, so mpremote can talk to it as to one.

    with PtyBridge(["micropython"], link="build/vboard/tty", cwd="build/vboard/fs") as b:
        ... mpremote connect build/vboard/tty resume exec "print(1)" ...

The client side is a pty whose slave is linked at `link` and set raw (no echo, no line
editing), as a USB CDC or UART gives bytes. Two threads copy bytes between its master and
the child, one each way, so a client that stops reading only stalls the child's output, as
on a board. The child gets, by `child_tty`:

- True: a second pty as its controlling terminal (stdin, stdout, stderr). The MicroPython
  unix port needs one for its REPL; the terminal keeps ISIG, so the Ctrl-C that mpremote
  sends interrupts a running main.py, and drops echo and the \\n -> \\r\\n mapping, which the
  REPL does itself.
- False: plain pipes on stdin/stdout, for a program that is a serial console itself (the
  rp2040js emulator runner: its stdin/stdout are the board's USB CDC).

Only Python's standard library (os.openpty): no socat, nothing to install.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import subprocess
import termios
import threading
import time
import tty
from collections.abc import Callable, Sequence
from pathlib import Path

CHUNK = 4096


class PtyBridgeError(Exception):
    pass


def _raw(fd: int) -> None:
    tty.setraw(fd, termios.TCSANOW)


def _console(fd: int) -> None:
    """A board's console line discipline: ISIG on, no echo, no output mapping."""
    attrs = termios.tcgetattr(fd)
    attrs[0] &= ~(termios.ICRNL | termios.IXON)  # iflag: bytes pass as they are
    attrs[1] &= ~termios.OPOST  # oflag: no \n -> \r\n
    attrs[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN)  # lflag: keep ISIG
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _become_ctty() -> None:
    # runs in the child after its stdin is the pty slave: new session, pty as its terminal
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class PtyBridge:
    def __init__(self, argv: Sequence[str], link: str | os.PathLike[str],
                 cwd: str | os.PathLike[str] | None = None, child_tty: bool = True,
                 env: dict[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.link = Path(link).absolute()
        self.cwd = cwd
        self.child_tty = child_tty
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self._fds: list[int] = []
        self._threads: list[threading.Thread] = []
        self._stopping = False

    @property
    def path(self) -> str:
        """The client's pty device (what `link` points at)."""
        return os.path.realpath(self.link)

    def start(self) -> PtyBridge:
        client_master, client_slave = os.openpty()
        # we keep the client slave open: a client that closes and reopens it (each mpremote
        # call) must not make the master read EIO in between
        self._fds += [client_master, client_slave]
        _raw(client_slave)
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if self.link.is_symlink() or self.link.exists():
            self.link.unlink()  # a leftover from a bridge that was killed
        os.symlink(os.ttyname(client_slave), self.link)
        try:
            if self.child_tty:
                child_master, child_slave = os.openpty()
                self._fds.append(child_master)
                _console(child_slave)
                try:
                    self.proc = subprocess.Popen(
                        self.argv, cwd=self.cwd, env=self.env, stdin=child_slave,
                        stdout=child_slave, stderr=child_slave, preexec_fn=_become_ctty,
                        close_fds=True)
                finally:
                    os.close(child_slave)  # the child holds it; its exit then ends our reads
                to_child, from_child = child_master, child_master
            else:
                self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             close_fds=True)
                assert self.proc.stdin and self.proc.stdout
                to_child, from_child = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        except OSError as e:
            self.stop()
            raise PtyBridgeError("cannot start %s: %s" % (self.argv[0], e)) from e
        self._pump(client_master, to_child)
        self._pump(from_child, client_master)
        return self

    def _pump(self, src: int, dst: int) -> None:
        def run() -> None:
            while not self._stopping:
                try:
                    # a short select: stop() must not wait on a read that never returns
                    if not select.select([src], [], [], 0.2)[0]:
                        continue
                    data = os.read(src, CHUNK)
                except OSError as e:
                    if e.errno in (errno.EIO, errno.EBADF, errno.EINVAL):
                        return  # the child's terminal closed: it exited
                    raise
                if not data:
                    return
                try:
                    while data:
                        data = data[os.write(dst, data):]
                except OSError:
                    return  # the other side is gone

        t = threading.Thread(target=run, daemon=True, name="ptybridge")
        t.start()
        self._threads.append(t)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """End the child and the bridge; safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                if self.child_tty:  # the whole session: its own children must not outlive it
                    os.killpg(proc.pid, signal.SIGTERM)
                else:
                    proc.terminate()
            except ProcessLookupError:
                pass
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for t in self._threads:
            t.join(5)  # each notices _stopping within its 0.2 s select
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        if proc is not None:
            for f in (proc.stdin, proc.stdout):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        if self.link.is_symlink():
            self.link.unlink()

    def __enter__(self) -> PtyBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BridgedBoard:
    """A board that is a program behind a PtyBridge (the unix port, the rp2 emulator):
    start it, wait until its console answers, stop it. A subclass gives `tty`, its
    `command()`, how to `_bridge()` it, `_ready()` (what "up" means), its error class
    and its name in messages."""

    error: type[Exception] = PtyBridgeError
    name = "the board"
    tty: Path
    bridge: PtyBridge | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def _bridge(self) -> PtyBridge:
        raise NotImplementedError

    def _ready(self) -> None:
        pass

    def start(self) -> BridgedBoard:
        self.bridge = self._bridge()
        try:
            self.bridge.start()
            self._ready()
        except PtyBridgeError as e:
            self.stop()
            raise self.error(str(e)) from e
        except BaseException:
            self.stop()
            raise
        return self

    def poke_until(self, done: Callable[[bytes], bool], timeout: float, silent: str) -> None:
        """Press return on the console until done(what it said): the first mpremote call
        must find a live board. `silent` ends the error when it never does."""
        deadline = time.monotonic() + timeout
        fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd, termios.TCSANOW)
            seen = b""
            while not done(seen):
                if not self.alive():
                    proc = self.bridge.proc if self.bridge else None
                    raise self.error("%s exited (%s)" % (self.name, proc and proc.returncode))
                if time.monotonic() > deadline:
                    raise self.error("%s at %s %s in %ds: %r" % (
                        self.name, self.tty, silent, timeout, seen[-200:]))
                os.write(fd, b"\r")
                if select.select([fd], [], [], 0.5)[0]:
                    seen += os.read(fd, 4096)
        finally:
            os.close(fd)

    def alive(self) -> bool:
        return self.bridge is not None and self.bridge.alive()

    def wait(self) -> int:
        assert self.bridge is not None
        return self.bridge.wait()

    def stop(self) -> None:
        """Stop the program and the bridge; safe to call twice."""
        if self.bridge is not None:
            self.bridge.stop()

    def __enter__(self) -> BridgedBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
