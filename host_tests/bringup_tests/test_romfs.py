"""`make romfs`: the package as a ROMFS image (tools/bringup/romfs.py, mpremote romfs build). The
unix port mounts the image at /rom as a board with a ROMFS partition does, imports every module
from it and rotates a token against the reference server. Its deploy needs a ROMFS partition:
the virtual board, like the stock ESP32 and rp2 images, has none, and `make romfs-deploy` says
so and changes nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from bringup.unixboard import source_name
from bringup.virtual_board import VirtualBoard
from conftest import probe
from mpremote.romfs import VfsRomWriter
from rig import LiveRig, sha

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.name[:-3] for p in (ROOT / "firmware" / "regtoken").glob("*.py"))


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def image() -> Path:
    p = make("romfs", "BOARD=unix")
    assert p.returncode == 0, p.stdout + p.stderr
    path = ROOT / "build" / "romfs" / "regtoken-unix.romfs"
    assert "romfs: build/romfs/regtoken-unix.romfs (%d bytes)" % path.stat().st_size in p.stdout
    return path


def test_image_is_romfs_and_holds_the_compiled_package(image: Path) -> None:
    data = image.read_bytes()
    assert data.startswith(VfsRomWriter.ROMFS_HEADER)
    for name in MODULES:
        assert name.encode() + b".mpy" in data
        # each .mpy names its module, a name the board interns anyway, not a source path
        assert source_name("regtoken/%s.py" % name).encode() in data
        assert b"regtoken/%s.py" % name.encode() not in data


def test_the_unix_port_mounts_it_imports_from_rom_and_rotates(image: Path, micropython: str,
                                                              tmp_path: Path) -> None:
    rig = LiveRig(tmp_path, micropython)
    try:
        board = Path(rig.dir)
        shutil.rmtree(board / "regtoken")  # only the image holds the package
        shutil.copy(image, board / "regtoken.romfs")
        shutil.copy(probe("romfs_boot"), board)
        p = subprocess.run([micropython, "romfs_boot.py", "regtoken.romfs",
                            str(ROOT / "tools" / "bench" / "probes")], cwd=board,
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
        loaded = dict(line.split()[1:] for line in p.stdout.splitlines()
                      if line.startswith("MODULE "))
        assert loaded["regtoken"] == "/rom/regtoken/__init__.mpy"
        assert all(path.startswith("/rom/regtoken/") for path in loaded.values())
        assert "ROTATIONS 1 STATE healthy" in p.stdout
        rotation = [r for r in rig.refreshes() if r["status"] == 201][0]
        assert rotation["token_sha256"] == sha(rig.minted["registrationToken"])
        assert rig.stored_sha() == rig.srv.current_sha256()
        assert rig.minted["registrationToken"][6:20] not in p.stdout
    finally:
        rig.close()


def test_romfs_deploy_needs_a_romfs_partition(micropython: str, tmp_path: Path) -> None:
    with VirtualBoard(tmp_path / "fs", tmp_path / "tty", micropython) as vb:
        p = make("romfs-deploy", "BOARD=unix", "PORT=%s" % vb.tty)
        assert p.returncode != 0
        assert "ROMFS is not enabled on this device" in p.stderr
        assert not list((tmp_path / "fs").iterdir())
        assert vb.alive()  # mpremote resumed the board, and left it running
