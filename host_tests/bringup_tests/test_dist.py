"""`make dist`: the static mip index in micropython-lib's layout (tools/bringup/dist.py). Tier 1
checks the layout against mip's rules; tier 2 serves build/mip on 127.0.0.1, lets the unix
port's own mip install the package from it into a board's lib/, and runs firmware/main.py on
what mip installed until it has rotated its token against the reference server."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bringup import boards, deploy, dist
from bringup.boardctl import RemoteBoard
from bringup.virtual_board import VirtualBoard
from conftest import probe
from rig import LiveRig, sha

ROOT = Path(__file__).resolve().parents[2]
INDEX = ROOT / "build" / "mip"
PKG = ROOT / "firmware" / "regtoken"
MODULES = sorted(p.name for p in PKG.glob("*.py"))


@pytest.fixture(scope="module")
def index() -> Path:
    p = subprocess.run(["make", "--no-print-directory", "dist"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dist: regtoken 0.1.0, %d files" % len(MODULES) in p.stdout
    return INDEX


def load(path: Path) -> Any:
    return json.loads(path.read_text())


# ---------------------------------------------------------------- layout


def test_layout_is_micropython_libs(index: Path) -> None:
    version = load(ROOT / "package.json")["version"]
    for dist_name, suffix in (("6", ".mpy"), ("py", ".py")):
        latest = load(index / "package" / dist_name / "regtoken" / "latest.json")
        assert latest == load(index / "package" / dist_name / "regtoken" / (version + ".json"))
        assert latest["v"] == 1 and latest["version"] == version
        paths = [p for p, _ in latest["hashes"]]
        assert paths == ["regtoken/%s%s" % (m[:-3], suffix) for m in MODULES]
        for _, h in latest["hashes"]:
            data = (index / "file" / h[:2] / h).read_bytes()
            assert len(h) == 8 and hashlib.sha256(data).hexdigest()[:8] == h  # mip's check
            assert data[:2] == b"M\x06" if suffix == ".mpy" else data[:2] != b"M\x06"
    entry = load(index / "index.json")["packages"][0]
    assert (entry["name"], entry["version"], entry["versions"]) == (
        "regtoken", version, {"6": [version], "py": [version]})


def test_files_are_the_firmwares_own(index: Path, tmp_path: Path) -> None:
    src = load(index / "package" / "py" / "regtoken" / "latest.json")["hashes"]
    for path, h in src:
        assert (index / "file" / h[:2] / h).read_bytes() == (ROOT / "firmware" / path).read_bytes()
    # the .mpy are what `make deploy` compiles (no native code: the same for every -march)
    built = deploy.build(boards.load("esp32"), tmp_path / "esp32")
    for path, h in load(index / "package" / "6" / "regtoken" / "latest.json")["hashes"]:
        assert hashlib.sha256((index / "file" / h[:2] / h).read_bytes()).hexdigest() == built[path]


def test_mpy_version_is_what_mpy_cross_emits() -> None:
    assert dist.mpy_version() == "6"  # MicroPython 1.23 and later ask for package/6/


# ---------------------------------------------------------------- mip on the unix port


class Served:
    """http.server on 127.0.0.1 (ephemeral port) serving a folder, in a thread."""

    def __init__(self, folder: Path) -> None:
        self.paths: list[str] = []
        paths = self.paths

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, directory=str(folder), **kw)

            def log_message(self, fmt: str, *args: Any) -> None:
                paths.append(self.path)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(30)


@pytest.fixture
def served(index: Path) -> Iterator[Served]:
    s = Served(index)
    yield s
    s.close()


def mip_install(micropython: str, board: Path, url: str, dist_name: str) -> str:
    shutil.copy(probe("mip_install"), board)
    p = subprocess.run([micropython, "mip_install.py", url, dist_name], cwd=board,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                       env={**os.environ, "MICROPYPATH": lib_path(board)})
    assert p.returncode == 0, p.stdout + p.stderr
    (board / "mip_install.py").unlink()
    return p.stdout


def lib_path(board: Path) -> str:
    # a board's sys.path: frozen modules, then /lib (where mip installs)
    return ".frozen:%s" % (board / "lib")


def test_mip_installs_the_source_distribution(micropython: str, served: Served,
                                              tmp_path: Path) -> None:
    out = mip_install(micropython, tmp_path, served.url, "py")
    assert "IMPORTED %s/lib/regtoken/__init__.py" % tmp_path in out
    for name in MODULES:
        assert (tmp_path / "lib" / "regtoken" / name).read_bytes() == (PKG / name).read_bytes()
    assert "/package/py/regtoken/latest.json" in served.paths


def test_mip_installs_mpy_and_the_firmware_rotates_on_it(micropython: str, served: Served,
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    rig = LiveRig(tmp_path, micropython, lifetime=4.0, grace=30.0)
    try:
        board = Path(rig.dir)
        shutil.rmtree(board / "regtoken")  # the board holds main.py and config.json only
        out = mip_install(micropython, board, served.url, "mpy")
        assert "IMPORTED %s/lib/regtoken/__init__.mpy" % board in out
        assert sorted(p.name for p in (board / "lib" / "regtoken").iterdir()) == [
            m[:-3] + ".mpy" for m in MODULES]
        assert served.paths[0] == "/package/6/regtoken/latest.json"
        assert len([p for p in served.paths if p.startswith("/file/")]) == len(MODULES)

        # a second install finds every file in place, by hash, and fetches none
        del served.paths[:]
        assert "Exists:" in mip_install(micropython, board, served.url, "mpy")
        assert served.paths == ["/package/6/regtoken/latest.json"]

        monkeypatch.setenv("MICROPYPATH", lib_path(board))  # main.py imports from lib/
        b = rig.boot()
        b.wait_for("rotated (201)", n=2, timeout=180)
        b.stop()
        rotations = [r for r in rig.refreshes() if r["status"] == 201]
        assert rotations[0]["token_sha256"] == sha(rig.minted["registrationToken"])
        assert [r["token_sha256"] for r in rotations[1:]] == [
            r["issued_sha256"] for r in rotations[:-1]]
        assert rig.stored_sha() == rig.srv.current_sha256()
        assert not (board / "regtoken").exists()
        rig.assert_no_leak()
    finally:
        rig.close()


def test_mpremote_mip_installs_from_the_index_onto_a_board(micropython: str, served: Served,
                                                           tmp_path: Path) -> None:
    """The same index through mpremote, which fetches on the host and copies to the board."""
    with VirtualBoard(tmp_path / "fs", tmp_path / "tty", micropython) as vb:
        remote = RemoteBoard.open(boards.load("unix"), str(vb.tty))
        remote.run("mip", "install", "--index", served.url, "--target", "lib", "regtoken")
        out = remote.run("exec", "import sys; sys.path.append('lib'); import regtoken; "
                                 "print('IMPORTED', regtoken.__file__)")
    assert "IMPORTED lib/regtoken/__init__.mpy" in out
    assert sorted(p.name for p in (tmp_path / "fs" / "lib" / "regtoken").iterdir()) == [
        m[:-3] + ".mpy" for m in MODULES]
    assert "/package/6/regtoken/latest.json" in served.paths
