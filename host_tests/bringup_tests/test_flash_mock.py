"""`make flash` for real, against esp32-mock-bootloader: a mock of the ESP32 ROM loader that
speaks its SLIP protocol on a pty, with 4 MiB of flash in memory. The whole esptool path
runs as on a board (sync, chip detection, the flasher stub, erase-flash, write-flash at the
board's offset, deflated as a real image is, the MD5 verify, the reset), then esptool reads
the flash back. One test per board folder flashed with esptool whose chip the mock knows.
(esptool's --no-stub mode, which the Makefile never uses, fails at the mock's verify.)"""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bringup import boards

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
MOCK = str(BIN / "esp32-mock-bootloader")
IMAGE_SIZE = 1536 * 1024  # a MicroPython ESP32 image is 1.5-1.7 MB
OLD = 0x300000  # where the "previous firmware" leaves bytes that erase-flash must clear
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
# The mock "reboots" (starts a fresh ROM session, stub not loaded) 3 s after the end of a
# flash write, whatever else is going on: an esptool run still connected at that instant
# would lose its stub mid-command. So after each write we leave it twice that, idle, to
# reboot before the next esptool run connects; no other wait in here depends on time.
REBOOT_S = 6.0
# pyserial sets a rate above 230400 on macOS through an IOKit call (IOSSIOSPEED) that only
# real serial drivers answer, not a pty: there the write runs at the fastest standard rate.
BAUD = ["BAUD=230400"] if sys.platform == "darwin" else []  # else board.json's 460800


def mock_chips() -> dict[str, dict[str, object]]:
    """The chips the installed mock supports, from its own CLI: {name: profile}."""
    out = subprocess.run([MOCK, "chips", "--json"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return dict(json.loads(out))


CHIPS = mock_chips()
ESP_BOARDS = [n for n in boards.known() if boards.load(n).chip in CHIPS]


class Mock:
    """`esp32-mock-bootloader run --pty --chip CHIP`: one process, its pty, its log."""

    def __init__(self, chip: str, log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:  # a file, not a pipe: the mock never blocks on it
            # --timeout: a mock that outlives a crashed test ends by itself
            self.proc = subprocess.Popen([MOCK, "run", "--pty", "--chip", chip, "--timeout",
                                          "900"], stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
        self.pty = self._endpoint()

    def _endpoint(self) -> str:
        """The mock prints its pty's path as its first line."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"\n" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("the mock gave no pty: %r" % self.log.read_bytes())
            time.sleep(0.1)
        path = self.log.read_bytes().split(b"\n", 1)[0].decode().strip()
        assert os.path.exists(path), path
        return path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def mock(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Mock]:
    m = Mock(request.param, tmp_path / "mock.log")
    try:
        yield m
    finally:
        m.stop()
    assert m.proc.returncode is not None


def esptool(chip: str, port: str, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(BIN / "esptool"), "--chip", chip, "--port", port, *args],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    return p


def read_flash(chip: str, port: str, offset: int, size: int, out: Path) -> bytes:
    esptool(chip, port, "read-flash", "0x%x" % offset, str(size), str(out))
    return out.read_bytes()


def firmware_image(board: boards.Board, path: Path) -> bytes:
    """A MicroPython-sized image: an ESP image header for the board's chip (flash.py checks
    it), then random bytes, so that any byte written at a wrong place shows, every other
    KiB of them zeroed, so that it deflates about as well as a real image does."""
    data = bytearray(random.Random(board.name).randbytes(IMAGE_SIZE))
    for at in range(1024, IMAGE_SIZE, 2048):
        data[at:at + 1024] = bytes(1024)
    data[0], data[1] = 0xE9, 3  # magic, segment count
    struct.pack_into("<H", data, 12, board.chip_id or 0)
    path.write_bytes(data)
    return bytes(data)


def test_every_esptool_board_is_covered_and_its_chip_id_agrees() -> None:
    esp = [n for n in boards.known() if boards.load(n).chip is not None]
    assert {"esp32", "esp32s3", "esp32c3"} <= set(ESP_BOARDS) == set(esp)
    for name in ESP_BOARDS:
        b = boards.load(name)
        assert CHIPS[b.chip]["image_chip_id"] == b.chip_id, name  # type: ignore[index]


@pytest.mark.parametrize("mock,name", [(boards.load(n).chip, n) for n in ESP_BOARDS],
                         ids=ESP_BOARDS, indirect=["mock"])
def test_make_flash_writes_the_image_byte_identical(mock: Mock, name: str,
                                                    tmp_path: Path) -> None:
    board = boards.load(name)
    chip, offset = board.chip, board.flash_offset
    assert chip is not None and offset is not None and board.firmware is not None
    image = firmware_image(board, tmp_path / board.firmware)
    old = random.Random(0).randbytes(64 * 1024)
    (tmp_path / "old.bin").write_bytes(old)
    esptool(chip, mock.pty, "write-flash", "0x%x" % OLD, str(tmp_path / "old.bin"))
    time.sleep(REBOOT_S)
    assert read_flash(chip, mock.pty, OLD, len(old), tmp_path / "before.bin") == old

    p = subprocess.run(["make", "--no-print-directory", "flash", "BOARD=" + name,
                        "PORT=" + mock.pty, "FIRMWARE=%s" % (tmp_path / board.firmware), *BAUD],
                       cwd=ROOT, capture_output=True, text=True, timeout=600,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    (tmp_path / "make-flash.log").write_text(out)
    assert p.returncode == 0, "".join(out.splitlines(True)[-40:])
    assert "erase-flash" in out and "write-flash 0x%x" % offset in out
    assert "compressed) at 0x%08x" % offset in out  # the deflate path, as for a real image
    assert "Hash of data verified" in out  # esptool's own MD5 check against the flash
    assert "flash: done" in out
    time.sleep(REBOOT_S)

    assert read_flash(chip, mock.pty, offset, IMAGE_SIZE, tmp_path / "back.bin") == image
    # erase-flash ran: the old bytes are gone, and nothing was written before the offset
    assert read_flash(chip, mock.pty, OLD, len(old), tmp_path / "after.bin") == b"\xff" * len(old)
    if offset:
        assert read_flash(chip, mock.pty, 0, offset, tmp_path / "head.bin") == b"\xff" * offset
