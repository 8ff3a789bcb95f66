"""The board targets against a virtual board: the MicroPython unix port behind a pty
(tools/bringup/virtual_board.py on tools/bringup/ptybridge.py), driven by the real mpremote through
`make`, exactly as a serial board would be. The last test runs the deployed .mpy firmware
against the reference server and checks that it rotates its token."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bringup import boards
from bringup.boardctl import RemoteBoard
from bringup.virtual_board import VirtualBoard

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "AbCdEf" + "x" * 242
MODULES = sorted(p.name for p in (ROOT / "firmware" / "regtoken").glob("*.py"))
EDGES = len(list((ROOT / "firmware" / "board").glob("*.py")))  # main.py's board/ modules


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, text=True,
                       capture_output=True, timeout=300, env={**os.environ, **(env or {})},
                       stdin=subprocess.DEVNULL)
    print(p.stdout, p.stderr)  # shown when a test fails
    return p


@pytest.fixture
def vboard(tmp_path: Path, micropython: str) -> Iterator[VirtualBoard]:
    with VirtualBoard(tmp_path / "fs", tmp_path / "tty", micropython) as board:
        yield board
    assert not board.alive()


def on(board: VirtualBoard, *args: str) -> list[str]:
    return ["BOARD=unix", "PORT=%s" % board.tty, *args]


def token_file(tmp_path: Path, token: str = TOKEN, exp: str | None = None) -> Path:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"registrationToken": token, "expirationTime": exp}))
    return path


def remote(board: VirtualBoard) -> RemoteBoard:
    return RemoteBoard.open(boards.load("unix"), str(board.tty))


def board_exec(board: VirtualBoard, code: str) -> str:
    """Run code on the virtual board with the firmware deployed there (mpremote exec)."""
    return remote(board).run("exec", code)


def held_token_sha256(board: VirtualBoard) -> str:
    """sha256 of the token in the board's store, computed on the board."""
    out = board_exec(board, "import hashlib, binascii\n"
                            "from regtoken.store import Store\n"
                            "r = Store().load()\n"
                            "print('held', r and binascii.hexlify(hashlib.sha256("
                            "r.token.encode()).digest()).decode())")
    return out.split("held ", 1)[1].split()[0]


# ---------------------------------------------------------------- deploy, board-info


def test_deploy_copies_only_changes_and_drops_stale_twins(vboard: VirtualBoard) -> None:
    p = make("deploy", *on(vboard))
    assert p.returncode == 0
    fs = vboard.root
    for name in MODULES:
        assert "copy      regtoken/%s.mpy" % name[:-3] in p.stdout
        assert (fs / "regtoken" / (name[:-3] + ".mpy")).is_file()
    assert (fs / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()

    (fs / "regtoken" / "store.py").write_text("raise ImportError('stale source')\n")
    (fs / "regtoken" / "edges.mpy").write_bytes(b"damaged")
    p = make("deploy", *on(vboard))
    assert p.returncode == 0
    assert "copy      regtoken/edges.mpy" in p.stdout
    assert "remove    regtoken/store.py" in p.stdout
    # main.py + all but edges.mpy + board/
    assert "unchanged %d file(s)" % (len(MODULES) + EDGES) in p.stdout
    assert not (fs / "regtoken" / "store.py").exists()

    p = make("deploy", *on(vboard))
    assert "copy" not in p.stdout
    assert "unchanged %d file(s)" % (len(MODULES) + EDGES + 1) in p.stdout


def test_board_info(vboard: VirtualBoard) -> None:
    assert make("deploy", *on(vboard)).returncode == 0
    p = make("board-info", *on(vboard))
    assert p.returncode == 0
    assert "MicroPython" in p.stdout and "platform    %s" % sys.platform in p.stdout
    assert "regtoken/   %d files" % len(MODULES) in p.stdout
    assert "token       none" in p.stdout


def test_deployed_mpy_imports_on_the_board(vboard: VirtualBoard) -> None:
    assert make("deploy", *on(vboard)).returncode == 0
    out = board_exec(vboard, "import regtoken, regtoken.wire; print(regtoken.__file__)")
    assert "regtoken/__init__.mpy" in out


def test_deploy_lib_only_keeps_the_users_main(vboard: VirtualBoard) -> None:
    own = "import regtoken\nprint('my app uses', regtoken.__name__)\n"
    (vboard.root / "main.py").write_text(own)
    p = make("deploy", *on(vboard, "LIB_ONLY=1"))
    assert p.returncode == 0 and "copy      main.py" not in p.stdout
    assert "up to date (%d files)" % len(MODULES) in p.stdout
    assert (vboard.root / "main.py").read_text() == own
    assert not (vboard.root / "board").exists()  # main.py's own edges stay behind too
    out = board_exec(vboard, "exec(open('main.py').read())")
    assert "my app uses regtoken" in out


def test_mip_installs_from_the_local_package_json(vboard: VirtualBoard) -> None:
    remote(vboard).run("mip", "install", "--target", "lib", str(ROOT / "package.json"))
    for name in MODULES:
        got = (vboard.root / "lib" / "regtoken" / name).read_bytes()
        assert got == (ROOT / "firmware" / "regtoken" / name).read_bytes()


# ---------------------------------------------------------------- provision, erase-token


def test_provision_checks_values_before_touching_the_board(vboard: VirtualBoard,
                                                            tmp_path: Path) -> None:
    p = make("provision", *on(vboard, "TOKEN_FILE=%s" % token_file(tmp_path)),
             env={"API_URL": "ftp://example.com"})
    assert p.returncode != 0 and "api_url: 'ftp://example.com' is not" in p.stderr
    assert not (vboard.root / "config.json").exists()


def test_provision_then_refuse_then_force_then_erase(vboard: VirtualBoard,
                                                     tmp_path: Path) -> None:
    assert make("deploy", *on(vboard)).returncode == 0
    ca = tmp_path / "ca.der"
    ca.write_bytes(b"\x30\x82\x01\x0a" + bytes(266))
    env = {"API_URL": "https://127.0.0.1:8443", "CA_FILE": str(ca), "BACKOFF_MIN_S": "2"}
    tf = token_file(tmp_path, exp="2030-01-01T00:00:00Z")
    p = make("provision", *on(vboard, "TOKEN_FILE=%s" % tf), env=env)
    assert p.returncode == 0
    assert TOKEN[:10] not in p.stdout + p.stderr
    cfg = json.loads((vboard.root / "config.json").read_text())
    assert cfg == {"api_url": "https://127.0.0.1:8443", "initial_token": TOKEN,
                   "initial_expiration": "2030-01-01T00:00:00Z", "ca_file": "ca.der",
                   "tls_verify": True, "backoff_min_s": 2}
    assert (vboard.root / "ca.der").read_bytes() == ca.read_bytes()

    # the device has run: its store holds a token, which a new provisioning must not bury
    board_exec(vboard, "from regtoken.store import Record, Store\n"
                       "Store().commit(Record('Rotated' + 'y' * 200, 1900000000))")
    p = make("provision", *on(vboard, "TOKEN_FILE=%s" % tf), env=env)
    assert p.returncode != 0 and "already holds a valid token; FORCE=1" in p.stderr
    assert make("provision", *on(vboard, "TOKEN_FILE=%s" % tf, "FORCE=1"), env=env).returncode == 0
    info = make("board-info", *on(vboard)).stdout
    assert "token       Rotate...(207 chars) gen 1" in info and "Rotatedy" not in info

    p = make("erase-token", *on(vboard))  # no terminal to type "yes" on
    assert p.returncode != 0 and "not confirmed" in p.stdout
    assert held_token_sha256(vboard) != "None"
    (vboard.root / "token.a.bad").write_bytes(b"junk")
    p = make("erase-token", *on(vboard, "CONFIRM=yes"))
    assert p.returncode == 0 and "token.a.bad" in p.stdout
    assert not list(vboard.root.glob("token.*"))
    assert held_token_sha256(vboard) == "None"
    assert (vboard.root / "config.json").exists()


def test_provision_refuses_a_dead_store_only_when_it_cannot_check(vboard: VirtualBoard,
                                                                   tmp_path: Path) -> None:
    # token files but no regtoken on the board: it cannot tell, so it asks for FORCE
    (vboard.root / "token.a").write_bytes(b"RT1 whatever\n")
    env = {"API_URL": "http://127.0.0.1:8080"}
    p = make("provision", *on(vboard, "TOKEN_FILE=%s" % token_file(tmp_path)), env=env)
    assert p.returncode != 0 and "no regtoken package to check them" in p.stderr


# ---------------------------------------------------------------- logs


def test_logs_follows_a_board_running_main(tmp_path: Path, micropython: str) -> None:
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "main.py").write_text("import time\nn = 0\nwhile True:\n"
                                "    n += 1\n    print('event', n)\n    time.sleep(0.2)\n")
    with VirtualBoard(fs, tmp_path / "tty", micropython, run_main=True) as board:
        seen = attach_logs(board)
    assert b"event" in seen


def attach_logs(board: VirtualBoard, timeout: float = 120.0) -> bytes:
    """`make logs` on a terminal of its own (mpremote's repl wants one), until main.py's
    lines show up; then Ctrl-] leaves, as a person would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["make", "--no-print-directory", "logs", *on(board)], cwd=ROOT,
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while seen.count(b"event") < 3 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    seen += os.read(master, 4096)
                except OSError:  # the terminal closed: make ended
                    break
        os.write(master, b"\x1d")
        assert proc.wait(60) == 0, seen.decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        os.close(master)
    return seen


# ---------------------------------------------------------------- the firmware, live


def test_deployed_firmware_rotates_its_token(vboard: VirtualBoard, tmp_path: Path,
                                             micropython: str) -> None:
    from bringup.unixboard import UnixBoard
    from refserver import RefServer, make_tls_files, sha256_hex

    ca_der, cert, key = make_tls_files(tmp_path / "tls", ["127.0.0.1"])
    with RefServer(db=":memory:", lifetime=12, grace=120, tls=(cert, key), log=None) as srv:
        minted = srv.mint()
        tf = tmp_path / "token.json"
        tf.write_text(json.dumps(minted))
        assert make("deploy", *on(vboard)).returncode == 0
        env = {"API_URL": srv.url, "CA_FILE": str(ca_der), "TIMEOUT_S": "20",
               "BACKOFF_MIN_S": "1", "BACKOFF_MAX_S": "5"}
        assert make("provision", *on(vboard, "TOKEN_FILE=%s" % tf), env=env).returncode == 0

        # the firmware runs in the board's directory, as a board runs main.py at boot
        device = UnixBoard(str(vboard.root), micropython).start()
        try:
            device.wait_for("rotated (201)", n=2, timeout=180)
        finally:
            device.stop()
        log = "\n".join(device.lines())
        stats = srv.stats()
        current = srv.current_sha256()

    assert minted["registrationToken"][:10] not in log  # never a whole token in the log
    rotations = [r for r in stats["requests"] if r["status"] == 201]
    assert len(rotations) >= 2
    # each refresh presented the token the one before issued: the device always used its
    # current token, starting with the provisioned one
    presented = [r["token_sha256"] for r in rotations]
    issued = [r["issued_sha256"] for r in rotations]
    assert presented[0] == sha256_hex(minted["registrationToken"])
    assert presented[1:] == issued[:-1]
    assert held_token_sha256(vboard) == current
