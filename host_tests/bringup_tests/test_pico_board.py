"""The emulated Raspberry Pi Pico as a board (boards/pico-emu, tools/bringup/rp2emu.py): the
bring-up targets through `make`, driven by the real mpremote, with a real soft reset before
every mpremote call; then the firmware rotating its token on the board, its HTTP relayed
over the console to the reference server (host_tests/pico/relay_device.py).

One emulator for the module (its flash kept in a temporary file): the firmware is deployed
once, as a person brings a board up once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bringup import boards
from bringup import rp2relay as relay
from bringup.boardctl import RemoteBoard, RemoteError
from bringup.deploy import build, remote_hashes
from bringup.rp2emu import Rp2Emu
from pico import stage
from refserver import RefServer, sha256_hex
from regtoken.policy import RELEASED
from regtoken.store import Files, Record, Store

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "PiCoEm" + "x" * 242
MODULES = sorted(p.name for p in (ROOT / "firmware" / "regtoken").glob("*.py"))
EDGES = sorted(p.name for p in (ROOT / "firmware" / "board").glob("*.py"))  # main.py's board/
HERE = Path(__file__).resolve().parents[1] / "pico"
RELAY = ROOT / "tools" / "bringup" / "onboard" / "relay_transport.py"
LIFETIME = 8.0  # board seconds (the server's clock is the board's): ~25 s of wall time


@dataclass
class Pico:
    emu: Rp2Emu
    remote: RemoteBoard
    first_deploy: str  # what the first `make deploy` printed

    def on(self, *args: str) -> list[str]:
        return ["BOARD=pico-emu", "PORT=%s" % self.emu.tty, *args]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, text=True,
                       capture_output=True, timeout=600, env={**os.environ, **(env or {})},
                       stdin=subprocess.DEVNULL)
    print(p.stdout, p.stderr)  # shown when a test fails
    return p


@pytest.fixture(scope="module")
def pico(rp2_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pico]:
    tmp = tmp_path_factory.mktemp("pico-board")
    with Rp2Emu(tmp / "tty", fs=tmp / "fs.img", image=rp2_image) as emu:
        remote = RemoteBoard(boards.load("pico-emu"), str(emu.tty))
        # boot.py counts the board's resets: every mpremote call must soft-reset it
        remote.run("fs", "cp", str(HERE / "boot_counter.py"), ":boot.py")
        p = make("deploy", "BOARD=pico-emu", "PORT=%s" % emu.tty)
        assert p.returncode == 0
        yield Pico(emu, remote, p.stdout)
    assert not emu.alive()


def resets(pico: Pico) -> int:
    return int(pico.remote.run("fs", "cat", ":resets").strip().splitlines()[-1])


def put_config(pico: Pico, tmp_path: Path, cfg: dict[str, object]) -> None:
    """config.json onto the board, as provisioning writes it (its token stays off every
    command line)."""
    local = tmp_path / "config.json"
    local.write_text(json.dumps(cfg))
    pico.remote.run("fs", "cp", str(local), ":config.json")


def token_file(tmp_path: Path, token: str = TOKEN, exp: str | None = None) -> Path:
    path = tmp_path / "token.json"
    path.write_text(json.dumps({"registrationToken": token, "expirationTime": exp}))
    return path


# ---------------------------------------------------------------- bring-up


def test_deploy_copies_armv6m_mpy_then_skips_unchanged_files(pico: Pico, tmp_path: Path) -> None:
    for name in MODULES:
        assert "copy      regtoken/%s.mpy" % name[:-3] in pico.first_deploy
    for name in EDGES:
        assert "copy      board/%s.mpy" % name[:-3] in pico.first_deploy
    before = resets(pico)
    p = make("deploy", *pico.on())
    assert p.returncode == 0
    assert "copy" not in p.stdout
    assert "unchanged %d file(s)" % (len(MODULES) + len(EDGES) + 1) in p.stdout
    assert resets(pico) > before + 1  # the deploy's mpremote call soft-reset the board

    # what is on the board's flash is the armv6m build, byte for byte
    built = build(boards.load("pico-emu"), tmp_path / "build")
    got = remote_hashes(pico.remote, ["main.py"], ["regtoken", "board"])
    assert {p: d for p, d in got.items() if not p.endswith("/")} == built
    assert sorted(p for p in got if p.startswith("regtoken/") and p.endswith(".mpy")) == \
        ["regtoken/%s.mpy" % n[:-3] for n in MODULES]


def test_provision_refuses_a_valid_token_then_force_then_erase(pico: Pico,
                                                               tmp_path: Path) -> None:
    ca = tmp_path / "ca.der"
    ca.write_bytes(b"\x30\x82\x01\x0a" + bytes(266))
    env = {"API_URL": "https://127.0.0.1:8443", "CA_FILE": str(ca), "BACKOFF_MIN_S": "2"}
    tf = token_file(tmp_path, exp="2030-01-01T00:00:00Z")
    p = make("provision", *pico.on("TOKEN_FILE=%s" % tf), env=env)
    assert p.returncode == 0 and TOKEN[:10] not in p.stdout + p.stderr

    # the device has run: its store holds a token (written by the firmware's own store
    # code on the host, copied to the board's littlefs), which provisioning must not bury
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    Store(Files(str(store_dir))).commit(Record("Rotated" + "y" * 200, 1900000000, 1899990000))
    pico.remote.run("fs", "cp", "-r", str(store_dir / "token.a"), str(store_dir / "token.b"), ":")
    p = make("provision", *pico.on("TOKEN_FILE=%s" % tf), env=env)
    assert p.returncode != 0 and "already holds a valid token; FORCE=1" in p.stderr
    before = resets(pico)
    assert make("provision", *pico.on("TOKEN_FILE=%s" % tf, "FORCE=1"), env=env).returncode == 0
    info = make("board-info", *pico.on())
    assert info.returncode == 0
    assert resets(pico) >= before + 3  # provision (check, copy, read back) and board-info
    assert "platform    rp2 Raspberry Pi Pico with RP2040" in info.stdout
    assert "regtoken/   %d files" % len(MODULES) in info.stdout
    assert "token       Rotate...(207 chars) gen 1" in info.stdout
    assert "Rotatedy" not in info.stdout

    p = make("erase-token", *pico.on())  # no terminal to type "yes" on
    assert p.returncode != 0 and "not confirmed" in p.stdout
    p = make("erase-token", *pico.on("CONFIRM=yes"))
    assert p.returncode == 0 and "token.a/record" in p.stdout
    assert "token       none" in make("board-info", *pico.on()).stdout

    # the board's files afterwards: config and CA as provisioned, no store, the firmware
    pico.remote.run("fs", "cp", ":config.json", str(tmp_path / "got.json"))
    assert json.loads((tmp_path / "got.json").read_text()) == {
        "api_url": "https://127.0.0.1:8443", "initial_token": TOKEN,
        "initial_expiration": "2030-01-01T00:00:00Z", "ca_file": "ca.der", "tls_verify": True,
        "backoff_min_s": 2}
    listing = pico.remote.run("fs", "ls", ":")
    for name in ("boot.py", "main.py", "config.json", "ca.der", "regtoken/", "board/"):
        assert name in listing
    assert "token." not in listing
    got = remote_hashes(pico.remote, ["ca.der"])
    assert got["ca.der"] == hashlib.sha256(ca.read_bytes()).hexdigest()


# ---------------------------------------------------------------- rotations, relayed


def test_relayed_rotations_restart_and_410(pico: Pico, tmp_path: Path) -> None:
    progs = stage.programs(tmp_path / "progs", RELAY,
                           HERE / "relay_device.py")
    pico.remote.run("fs", "cp", *map(str, progs), ":")
    clock = relay.BoardClock()
    with RefServer(db=":memory:", lifetime=LIFETIME, grace=60, clock=clock, log=None) as srv:
        minted = srv.mint(lifetime=None)  # expiration unknown: the first boot rotates at once
        put_config(pico, tmp_path, {"api_url": srv.url, "timeout_s": 60, "backoff_min_s": 1,
                                    "backoff_max_s": 5,
                                    "initial_token": minted["registrationToken"]})

        def device(rotations: int) -> relay.Run:
            code = relay.call("relay_device", "main", rotations=rotations)
            run = relay.run(str(pico.emu.tty), code, clock, timeout=600)
            assert not run.error, run.error + "\n".join(run.log[-20:])
            assert run.done, "\n".join(run.log[-20:])
            return run

        first = device(3)  # first boot: import, rotate at once, then two on schedule
        assert first.done["counts"]["rotations"] == 3 and first.done["state"] == "healthy"
        assert any("clock: set from the server's Date header" in x for x in first.log)
        restarted = device(1)  # a soft reset: the stored token, at once (clock untrusted)
        assert restarted.done["counts"]["rotations"] == 1
        srv.advance(LIFETIME * 100)  # the board was away: its token expired on the server
        gone = device(1)
        assert gone.done["state"] == "provision"
        stats = srv.stats()

    log = "\n".join(first.log + restarted.log + gone.log)
    print(log)  # shown when the test fails
    assert minted["registrationToken"][:10] not in log
    answers = [r for r in stats["requests"] if r["status"] in (201, 410)]
    assert [r["status"] for r in answers] == [201, 201, 201, 201, 410]
    presented = [r["token_sha256"] for r in answers]
    issued = [r["issued_sha256"] for r in answers[:4]]
    # each refresh presented the token the one before issued, across the soft reset too,
    # starting with the provisioned one; the 410 was for the last token committed
    assert presented[0] == sha256_hex(minted["registrationToken"])
    assert presented[1:] == issued
    info = make("board-info", *pico.on()).stdout
    assert "never (410: provision again)" in info


# ---------------------------------------------------------------- the clock floor


def test_clock_floor_moves_the_rtc_forward_never_back(pico: Pico, tmp_path: Path) -> None:
    """The rp2 RTC starts at 2021-01-01 at every hard reset. A boot with an untrusted clock
    moves it forward to the newest time the device knows to have passed: the last commit
    in the store, else the firmware's release date; never backward."""
    progs = stage.programs(tmp_path / "progs", RELAY,
                           HERE / "clock_floor.py")
    pico.remote.run("fs", "cp", *map(str, progs), ":")
    put_config(pico, tmp_path, {"api_url": "http://127.0.0.1:9", "initial_token": TOKEN})
    rtc_2021 = 1609459200  # 2021-01-01T00:00:00Z, in the rp2 port's 1970-based seconds
    committed = RELEASED + 40 * 86400  # a commit 40 days after the release
    later = RELEASED + 400 * 86400

    def boot(preset: int | None = None) -> dict[str, int]:
        out = pico.remote.run("exec", relay.call("clock_floor", "main", preset=preset))
        line = [x for x in out.splitlines() if x.startswith(relay.DONE.decode())][-1]
        return json.loads(line[len(relay.DONE):])

    def hard_reset() -> None:
        pico.remote.run("reset")  # machine.reset(): the emulator restarts, flash kept
        for _ in range(30):  # until the rebooted board's USB console takes commands
            time.sleep(1)
            try:
                pico.remote.run("fs", "ls", ":")
                return
            except RemoteError:
                pass
        raise AssertionError("the Pico did not come back after machine.reset()")

    # a store whose last commit was at `committed` (the firmware's own store code)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    Store(Files(str(store_dir))).commit(Record("Stored" + "z" * 200, committed + 86400,
                                               committed + 3600, at=committed))
    pico.remote.run("fs", "cp", "-r", str(store_dir / "token.a"), str(store_dir / "token.b"), ":")
    hard_reset()
    got = boot()
    assert rtc_2021 <= got["before"] < rtc_2021 + 3600  # the port's RTC after a reset
    assert committed <= got["after"] < committed + 600  # forward to the last commit

    # an RTC already ahead of everything the device knows is left alone
    got = boot(preset=later)
    assert later <= got["after"] < later + 600

    # no store: the initial token is imported, and the floor is the release date
    assert make("erase-token", *pico.on("CONFIRM=yes")).returncode == 0
    hard_reset()
    got = boot()
    assert got["before"] < RELEASED <= got["after"] < RELEASED + 600
