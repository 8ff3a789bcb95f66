#!/usr/bin/env python3
"""Talk to a board through mpremote: repl, logs, board-info, erase-token. The RemoteBoard class
here is what deploy.py and provision.py use too.

    python -m bringup.boardctl --board esp32 --port /dev/ttyUSB0 board-info
    python -m bringup.boardctl --board unix logs [--capture build/unix/log.txt]
    python -m bringup.boardctl --board esp32 --port /dev/ttyUSB0 erase-token [--yes]

The programs sent to the board are real files in tools/bringup/onboard/; each prints one line
`@@regtoken@@<json>`. Nothing on the board is changed except by erase-token (and by
deploy/provision). Tokens are never shown in full: at most their first 6 characters and
their length.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bringup.boards import BIN, ROOT, Board, BoardError, load

MARK = "@@regtoken@@"
TIMEOUT_S = 300  # one mpremote call; a full deploy over a slow UART fits well inside

ONBOARD = Path(__file__).resolve().parent / "onboard"  # the programs sent to a board


def program(name: str, **args: Any) -> str:
    """The source of tools/bringup/onboard/<name>.py, ready for `mpremote exec`. args reach it as
    one line before its first, ARGS_JSON = <a string literal: the args as JSON, repr'd>,
    which it decodes into ARGS: a value is only ever data, never code."""
    code = (ONBOARD / (name + ".py")).read_text()
    return ("ARGS_JSON = %r\n" % json.dumps(args) + code) if args else code


class RemoteError(Exception):
    """mpremote failed or the board answered something unexpected."""


@dataclass
class RemoteBoard:
    """One board on one port, driven by the real mpremote CLI."""

    board: Board
    port: str

    @classmethod
    def open(cls, board: Board, port: str | None) -> RemoteBoard:
        return cls(board, resolve_port(board, port))

    def argv(self, *cmd: str) -> list[str]:
        # `resume`: no soft reset first. Needed on the unix port, where a soft reset ends
        # the process; board.json says which boards need it.
        pre = ["resume"] if self.board.resume else []
        return [mpremote(), "connect", self.port, *pre, *cmd]

    def run(self, *cmd: str) -> str:
        """Run mpremote, return its stdout; RemoteError (with its output) on failure."""
        argv = self.argv(*cmd)
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RemoteError("mpremote on %s did not finish in %ds" % (self.port, TIMEOUT_S)) \
                from None
        if p.returncode != 0:
            tail = (p.stdout + p.stderr).strip().splitlines()[-6:]
            raise RemoteError("mpremote on %s failed (exit %d):\n  %s"
                              % (self.port, p.returncode, "\n  ".join(tail)))
        return p.stdout

    def query(self, name: str, **args: Any) -> Any:
        """Run tools/bringup/onboard/<name>.py on the board with these args (see program()); return
        the JSON it printed after MARK."""
        out = self.run("exec", program(name, **args))
        for line in out.splitlines():
            if line.startswith(MARK):
                return json.loads(line[len(MARK):])
        raise RemoteError("no answer from the board on %s; it printed:\n%s" % (self.port, out))

    def restart_hint(self) -> str:
        """mpremote left the board at its REPL: main.py runs again only after a reset."""
        if self.board.resume:
            return ""
        return " (the board runs it after a reset: press RST, or `%s connect %s reset`)" % (
            "mpremote", self.port)

    def attach(self, *cmd: str) -> int:
        """Hand the terminal to mpremote (repl, logs)."""
        return subprocess.call(self.argv(*cmd))


def mpremote() -> str:
    found = BIN / "mpremote"
    return str(found) if found.exists() else (shutil.which("mpremote") or "mpremote")


def resolve_port(board: Board, port: str | None) -> str:
    """PORT as given; else the board's default (the virtual board's pty); else mpremote's
    auto-detection of the first USB serial board."""
    if not port and board.default_port:
        path = ROOT / board.default_port
        if not path.exists():
            start = "emu-board" if board.port == "rp2" else "virtual-board"  # pico-emu, unix
            raise BoardError("no PORT given and no virtual board at %s: start one with "
                             "`make %s` or pass PORT=<pty>" % (board.default_port, start))
        return str(path)
    if not port:
        return "auto"
    if port.startswith("/") and not os.path.exists(port):
        raise BoardError("PORT %s does not exist (is the board plugged in / running?)" % port)
    return port


def secret(value: str | None) -> str:
    """How a secret may be shown: its first 6 characters and its length."""
    return "<none>" if not value else "%s...(%d chars)" % (value[:6], len(value))


# ---------------------------------------------------------------- commands


def board_info(remote: RemoteBoard) -> dict[str, Any]:
    info = remote.query("survey")
    print("port        %s (board %s)" % (remote.port, remote.board.name))
    print("micropython %s" % info["version"])
    print("platform    %s %s" % (info["platform"], info.get("machine", "")))
    if "fs" in info:
        total, free = info["fs"]
        print("flash       %d KiB free of %d KiB" % (free // 1024, total // 1024))
    print("heap free   %d bytes" % info["mem_free"])
    root = info["root"] or {}
    print("files       %s" % _sizes(root, ("main.py", "main.mpy", "config.json")))
    print("regtoken/   %s" % ("(not deployed)" if info["regtoken"] is None
                             else "%d files" % len(info["regtoken"])))
    slots = {n: s for n, s in (info["store"] or {}).items() if n.startswith("token.")}
    print("store       %s%s" % ("dir %r: " % info["store_dir"] if info["store_dir"] else "",
                                _sizes(slots, ()) or "no slot files"))
    tok = info.get("token")
    if tok:
        print("token       %s...(%d chars) gen %s, expires %s, next refresh %s"
              % (tok["head"], tok["len"], tok["gen"], _when(tok["exp"]), _when(tok["due"])))
    elif "token_error" in info:
        print("token       unknown (%s)" % info["token_error"])
    else:
        print("token       none")
    return info


def _when(t: Any) -> str:
    # store values: Unix seconds, "-" never, "?" unknown, 0 none, -1 refused (410), -2 a
    # provisioning operation waiting for approval (the "token" is its id)
    names = {"-": "never", "?": "unknown", 0: "none", -1: "never (410: provision again)",
             -2: "none yet: a provisioning operation waits for approval"}
    if t in names:
        return names[t]
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _sizes(files: dict[str, int], wanted: tuple[str, ...]) -> str:
    names = [n for n in sorted(files) if not wanted or n in wanted]
    return ", ".join("%s/" % n if files[n] < 0 else "%s (%d B)" % (n, files[n]) for n in names)


def erase_token(remote: RemoteBoard, yes: bool) -> int:
    files = remote.query("survey")["token_files"]
    if not files:
        print("erase-token: no token files on the board")
        return 0
    print("erase-token: will remove %s from %s" % (", ".join(files), remote.port))
    if not yes:
        try:
            answer = input("type yes to erase this board's token: ")
        except EOFError:
            answer = ""
        if answer.strip() != "yes":
            print("erase-token: not confirmed, nothing removed (CONFIRM=yes skips the question)")
            return 1
    remote.query("remove", paths=files)
    print("erase-token: removed. config.json is unchanged: its initial_token (if any) is "
          "imported again at the next boot, so provision a fresh token.")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default=os.environ.get("BOARD", "unix"))
    ap.add_argument("--port", default="", help="serial port or pty (default: the board's)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("repl", help="interactive REPL (Ctrl-] leaves)")
    logs = sub.add_parser("logs", help="watch the device's output (Ctrl-] leaves)")
    logs.add_argument("--capture", default="", help="also append the output to this file")
    sub.add_parser("board-info", help="port, version, free flash, regtoken files")
    erase = sub.add_parser("erase-token", help="remove the token store (token.a, token.b, *.bad)")
    erase.add_argument("--yes", action="store_true", help="do not ask (CONFIRM=yes)")
    args = ap.parse_args(argv)
    try:
        remote = RemoteBoard.open(load(args.board), args.port)
        if args.cmd == "repl":
            return remote.attach("repl")
        if args.cmd == "logs":
            print("logs: %s (Ctrl-] leaves)" % remote.port, flush=True)
            capture = ["--capture", args.capture] if args.capture else []
            return remote.attach("repl", *capture)
        if args.cmd == "board-info":
            board_info(remote)
            return 0
        return erase_token(remote, args.yes)
    except (BoardError, RemoteError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
