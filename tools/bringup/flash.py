#!/usr/bin/env python3
"""Write MicroPython onto a board.

    python -m bringup.flash --board esp32 --port /dev/ttyUSB0 --firmware ESP32_GENERIC-v1.29.0.bin
    python -m bringup.flash --board esp32 --firmware F.bin --dry-run
    python -m bringup.flash --board rp2-pico-w --firmware RPI_PICO_W-v1.29.0.uf2 [--mount DIR]

ESP32 family: `esptool erase-flash`, then `esptool write-flash <offset> <file>` at the
board's offset. --dry-run prints those exact commands and runs them through esptool's own
command-line parser in this process, with the one function that would open the serial
port replaced: chip names, offsets, option spellings and the file are checked by esptool
itself, and no port is touched.

Pico W: no esptool. The .uf2 is copied onto the RPI-RP2 drive the board shows in BOOTSEL
mode (--mount), or the steps are printed.

Both refuse a missing file, an unknown board, and an image built for another chip
(ESP image header chip id / UF2 family id).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from bringup.boards import BIN, Board, BoardError, load

ESP_MAGIC = 0xE9
UF2_MAGIC = (0x0A324655, 0x9E5D5157)
UF2_FAMILY_FLAG = 0x2000


class FlashError(Exception):
    pass


class _Parsed(Exception):
    """Raised in place of connecting: esptool accepted the command line."""

    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__("parsed")
        self.obj = obj


def esptool() -> str:
    found = BIN / "esptool"
    return str(found) if found.exists() else (shutil.which("esptool") or "esptool")


def esptool_commands(board: Board, port: str, firmware: Path, baud: int | None = None
                     ) -> list[list[str]]:
    """The two commands, as MicroPython's download page gives them (v5 spellings); baud:
    the write's, board.json's unless given."""
    if board.chip is None or board.flash_offset is None:
        raise FlashError("board %s is not flashed with esptool" % board.name)
    base = [esptool(), "--chip", board.chip] + (["--port", port] if port else [])
    return [base + ["erase-flash"],
            base + ["--baud", str(baud or board.baud), "write-flash", "0x%x" % board.flash_offset,
                    str(firmware)]]


def check_with_esptool(cmd: list[str]) -> dict[str, Any]:
    """Parse `cmd` with esptool's click CLI without touching hardware -> esptool's parsed
    global options. FlashError carries esptool's own message when it refuses."""
    import esptool as et

    real = et.prepare_esp_object

    def parsed(ctx: Any) -> None:
        raise _Parsed(dict(ctx.obj))

    out, err = io.StringIO(), io.StringIO()
    et.prepare_esp_object = parsed  # what every hardware command calls first
    prog, sys.argv[0] = sys.argv[0], "esptool"  # click names the program after argv[0]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            et.main(cmd[1:])
    except _Parsed as p:
        return p.obj
    except SystemExit:
        raise FlashError("esptool rejects `%s`: %s" % (shlex.join(cmd), _one_line(err.getvalue()))
                         ) from None
    finally:
        et.prepare_esp_object = real
        sys.argv[0] = prog
    raise FlashError("esptool ran `%s` without reaching the port step" % shlex.join(cmd))


def _one_line(text: str) -> str:
    # esptool's errors come in a box drawn by rich-click, wrapped at 80 columns
    text = re.sub(r"[\u2500-\u257f]", " ", text)
    return " ".join(text.split("Error", 1)[-1].split())


def check_image(board: Board, firmware: Path) -> list[str]:
    """Refuse another chip's image; return warnings (e.g. an unexpected file name)."""
    if not firmware.is_file():
        raise FlashError("firmware file %s does not exist (download %s from "
                         "micropython.org/download)" % (firmware, board.firmware or "it"))
    head = firmware.read_bytes()[:512]
    if board.chip is not None:
        if len(head) < 16 or head[0] != ESP_MAGIC:
            raise FlashError("%s is not an ESP firmware image (no 0xE9 header)" % firmware)
        chip_id = struct.unpack_from("<H", head, 12)[0]
        if board.chip_id is not None and chip_id != board.chip_id:
            raise FlashError("%s is built for another chip (image chip id %d, board %s needs %d)"
                             % (firmware, chip_id, board.name, board.chip_id))
    elif board.uf2_family is not None:
        if len(head) < 32 or struct.unpack_from("<II", head) != UF2_MAGIC:
            raise FlashError("%s is not a UF2 file" % firmware)
        flags, family = struct.unpack_from("<I", head, 8)[0], struct.unpack_from("<I", head, 28)[0]
        if flags & UF2_FAMILY_FLAG and family != board.uf2_family:
            raise FlashError("%s is for UF2 family 0x%08x, board %s needs 0x%08x"
                             % (firmware, family, board.name, board.uf2_family))
    warnings = []
    variant = (board.firmware or "").split("-v")[0]
    if variant and not firmware.name.startswith(variant + "-"):
        warnings.append("warning: %s does not look like %s (expected %s)"
                        % (firmware.name, variant, board.firmware))
    return warnings


def flash_esp(board: Board, port: str, firmware: Path, dry_run: bool,
              baud: int | None = None) -> None:
    cmds = esptool_commands(board, port, firmware, baud)
    for cmd in cmds:
        print(shlex.join(cmd))
    for cmd in cmds:
        obj = check_with_esptool(cmd)
        want = (baud or board.baud) if "--baud" in cmd else obj.get("baud")
        if (obj.get("chip"), obj.get("port") or "", obj.get("baud")) != (board.chip, port, want):
            raise FlashError("esptool parsed `%s` as chip %s, port %s, baud %s"
                             % (shlex.join(cmd), obj.get("chip"), obj.get("port"), obj.get("baud")))
    print("esptool accepts both commands (parsed by esptool itself; no port opened)")
    if dry_run:
        return
    if not port:
        raise FlashError("PORT is required to flash (esptool would erase the first ESP it finds)")
    for cmd in cmds:
        print("$ " + shlex.join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise FlashError("esptool failed: %s" % shlex.join(cmd))
    print("flash: done. Next: make deploy BOARD=%s PORT=%s" % (board.name, port))


def flash_uf2(board: Board, firmware: Path, mount: str, dry_run: bool) -> None:
    if not mount:
        print("flash %s (no esptool for this board):\n"
              "  1. unplug the board, hold BOOTSEL, plug it in, release BOOTSEL\n"
              "  2. a drive named RPI-RP2 appears; copy the firmware onto it:\n"
              "       cp %s /media/$USER/RPI-RP2/\n"
              "     or: make flash BOARD=%s FIRMWARE=%s MOUNT=/media/$USER/RPI-RP2\n"
              "  3. the board reboots into MicroPython (serial port /dev/ttyACM0)"
              % (board.name, shlex.quote(str(firmware)), board.name, firmware))
        return
    drive = Path(mount)
    if not (drive / "INFO_UF2.TXT").is_file():
        raise FlashError("%s is not a board in BOOTSEL mode (no INFO_UF2.TXT there)" % drive)
    print("cp %s %s/" % (shlex.quote(str(firmware)), shlex.quote(str(drive))))
    if not dry_run:
        shutil.copyfile(firmware, drive / firmware.name)
        print("flash: copied; the board reboots into MicroPython")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--board", default="esp32")
    ap.add_argument("--port", default="")
    ap.add_argument("--firmware", default="", help="MicroPython .bin (ESP32) or .uf2 (Pico W)")
    ap.add_argument("--mount", default="", help="the RPI-RP2 drive of a Pico in BOOTSEL mode")
    ap.add_argument("--dry-run", action="store_true", help="print and check; touch nothing")
    ap.add_argument("--baud", type=int, default=None, help="write speed (default: board.json's)")
    args = ap.parse_args(argv)
    try:
        board = load(args.board)
        if board.chip is None and board.uf2_family is None:
            raise FlashError("board %s has nothing to flash (it runs the unix port from .venv)"
                             % board.name)
        if not args.firmware:
            raise FlashError("FIRMWARE=<file> is required, e.g. FIRMWARE=%s" % board.firmware)
        firmware = Path(args.firmware)
        for warning in check_image(board, firmware):
            print(warning)
        if board.chip is not None:
            flash_esp(board, args.port, firmware, args.dry_run, args.baud)
        else:
            flash_uf2(board, firmware, args.mount, args.dry_run)
    except (BoardError, FlashError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
