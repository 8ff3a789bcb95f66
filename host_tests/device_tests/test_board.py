"""firmware/board/ (main.py's board edges: wifi, led, sleep) and the board path of
regtoken.edges.Clock on CPython, with fakes of network, machine, ntptime and neopixel in
sys.modules (host_tests/fakes/board.py): no board, and nothing really sleeps."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import time
from typing import Any

import pytest
from conftest import probe
from fakes.board import DeepSleep, FakeBoard

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BOARD = os.path.join(ROOT, "firmware", "board")
WIFI = {"ssid": "lab", "password": "correct horse"}


def load(name: str, board: FakeBoard | None = None) -> Any:
    """A fresh copy of firmware/board/<name>.py, so no state leaks between tests."""
    path = os.path.join(BOARD, name + ".py")
    spec = importlib.util.spec_from_file_location("board_" + name, path)
    assert spec is not None and spec.loader is not None
    mod: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if board is not None and hasattr(mod, "time"):
        mod.time = board.clock
    return mod


@pytest.fixture
def board(monkeypatch: pytest.MonkeyPatch) -> FakeBoard:
    b = FakeBoard()
    b.install(monkeypatch)
    return b


class Edges:
    """The three board modules, loaded against one fake board: device.connect(...) etc."""

    def __init__(self, board: FakeBoard) -> None:
        self.wifi, self.led, self.sleep_mod = (load(n, board) for n in ("wifi", "led", "sleep"))
        self.connect, self.sync_clock = self.wifi.connect, self.wifi.sync_clock
        self.Led, self.PATTERNS = self.led.Led, self.led.PATTERNS
        self.sleep, self.rtc_load, self.rtc_save = (
            self.sleep_mod.sleep, self.sleep_mod.rtc_load, self.sleep_mod.rtc_save)


@pytest.fixture
def device(board: FakeBoard) -> Any:
    return Edges(board)


class Log(list):  # type: ignore[type-arg]
    def __call__(self, msg: str) -> None:
        self.append(msg)


# ---------------------------------------------------------------- Wi-Fi


def test_connect_succeeds_once_the_link_is_up(device: Any, board: FakeBoard) -> None:
    log = Log()
    assert device.connect(WIFI, log, timeout_s=5) is True
    assert ("connect", "lab", "correct horse") in board.calls
    assert 500 <= board.clock.ms < 1000  # returned as soon as the link came up
    assert "connected to lab as 192.0.2.10" in log[-1]


def test_connect_times_out_after_every_try(device: Any, board: FakeBoard) -> None:
    board.working_connect = None  # the access point never answers
    log = Log()
    assert device.connect(WIFI, log, timeout_s=2, tries=3) is False
    assert board.connects == 3
    assert board.clock.ms == 3 * 2000  # each try waits its full timeout, no longer
    assert sum("no link after 2s" in line for line in log) == 3


def test_connect_retries_until_a_try_works(device: Any, board: FakeBoard) -> None:
    board.working_connect = 2
    log = Log()
    assert device.connect(WIFI, log, timeout_s=2, tries=3) is True
    assert board.connects == 2
    # a fresh try starts from a clean state: disconnect() before each connect()
    kinds = [c[0] for c in board.calls if c[0] in ("connect", "disconnect")]
    assert kinds == ["disconnect", "connect", "disconnect", "connect"]


def test_connect_error_counts_as_a_failed_try(device: Any, board: FakeBoard) -> None:
    board.connect_errors, board.working_connect = 1, 2
    log = Log()
    assert device.connect(WIFI, log, timeout_s=2, tries=2) is True
    assert "connect 1/2 failed: Wifi Internal Error" in log[0]


def test_connect_when_disconnect_complains(device: Any, board: FakeBoard) -> None:
    board.disconnect_raises = True
    assert device.connect(WIFI, Log(), timeout_s=2) is True
    assert board.connects == 1


def test_connect_is_cheap_when_up_and_reconnects_after_a_drop(
    device: Any, board: FakeBoard
) -> None:
    assert device.connect(WIFI, Log()) is True
    before = len(board.calls)
    assert device.connect(WIFI, Log()) is True
    assert len(board.calls) == before  # link up: no radio call at all
    board.drop_link()
    board.working_connect = board.connects + 1
    assert device.connect(WIFI, Log()) is True
    assert board.connects == 2


def test_connect_without_wifi_config(device: Any, board: FakeBoard) -> None:
    log = Log()
    assert device.connect(None, log) is False
    assert log == ["wifi: not configured"]
    assert board.connects == 0


# ---------------------------------------------------------------- NTP


def test_ntp_failure_returns_false_after_bounded_tries(device: Any, board: FakeBoard) -> None:
    board.ntp_failures = 99
    log = Log()
    assert device.sync_clock(log, tries=2, timeout_s=3) is False
    assert board.ntp_timeout_seen == [3, 3]  # ntptime.timeout bounded every try
    assert len(log) == 2 and "ntp: try 2/2 failed" in log[1]


def test_ntp_retry_then_success(device: Any, board: FakeBoard) -> None:
    board.ntp_failures = 1
    log = Log()
    assert device.sync_clock(log) is True
    assert log[-1] == "ntp: clock set"


# ---------------------------------------------------------------- LED


def one_second(board: FakeBoard, pin: Any) -> list[int]:
    """The pin levels over one blink period, starting at the state change."""
    first = board.pins[pin].history[-1]
    board.timers[-1].fire(9)
    return [first] + board.pins[pin].history[-9:]


@pytest.mark.parametrize("state", ["connecting", "healthy", "backoff", "forbidden"])
def test_led_blinks_each_state_pattern(device: Any, board: FakeBoard, state: str) -> None:
    led = device.Led({"pin": 2, "active_high": True, "timer": 0})
    led.show(state)
    bits = device.PATTERNS[state][0]
    timer = board.timers[-1]
    assert (timer.id, timer.period, timer.running) == (0, 100, True)
    assert one_second(board, 2) == [bits >> (9 - i) & 1 for i in range(10)]


def test_led_patterns_differ_between_states(device: Any) -> None:
    bits = [device.PATTERNS[s][0] for s in device.PATTERNS]
    assert len(set(bits)) == len(bits)


def test_led_provision_is_steady_without_a_timer(device: Any, board: FakeBoard) -> None:
    led = device.Led({"pin": "LED"})
    led.show("connecting")
    led.show("provision")
    assert not board.timers[-1].running  # the blink timer was stopped
    assert board.pins["LED"].history[-1] == 1
    assert len(board.timers) == 1


def test_led_active_low_inverts(device: Any, board: FakeBoard) -> None:
    led = device.Led({"pin": 5, "active_high": False})
    assert board.pins[5].history == [1]  # dark at start
    led.show("provision")
    assert board.pins[5].history[-1] == 0


def test_led_same_state_keeps_the_phase(device: Any, board: FakeBoard) -> None:
    led = device.Led({"pin": 2})
    led.show("healthy")
    led.show("healthy")
    assert len(board.timers) == 1 and board.timers[0].running


def test_led_rgb_shows_the_state_colour(device: Any, board: FakeBoard) -> None:
    led = device.Led({"pin": 8, "rgb": True, "timer": 0})
    led.show("provision")
    assert board.pixels[0].written[-1] == device.PATTERNS["provision"][1]
    led.show("backoff")
    board.timers[-1].fire(5)
    assert board.pixels[0].written[-1] == (0, 0, 0)  # the dark half of the slow blink


def test_led_off_stops_the_timer(device: Any, board: FakeBoard) -> None:
    led = device.Led({"pin": 2})
    led.show("connecting")
    led.off()
    assert not board.timers[-1].running and board.pins[2].history[-1] == 0


def test_led_unknown_state_is_an_error(device: Any) -> None:
    with pytest.raises(ValueError, match="unknown state 'sleepy'"):
        device.Led(None).show("sleepy")


# ---------------------------------------------------------------- sleep and RTC memory


def test_rtc_memory_round_trip(device: Any, board: FakeBoard) -> None:
    assert device.rtc_load() is None  # empty after a cold boot
    device.rtc_save(b"\x01state")
    assert device.rtc_load() == b"\x01state"


# ---------------------------------------------------------------- the real unix port


def test_led_without_a_spec_is_a_no_op(device: Any, board: FakeBoard) -> None:
    device.Led(None).show("connecting")
    assert board.pins == {} and board.timers == []


# ---------------------------------------------------------------- sleep and RTC memory


def test_each_sleep_mode_uses_its_own_call(device: Any, board: FakeBoard) -> None:
    device.sleep(90, "light")
    assert board.calls == [("lightsleep", 90000)]
    board.calls.clear()
    device.sleep(90, "none")  # "none" means none: time.sleep_ms, never machine.lightsleep
    assert board.calls == [] and board.clock.ms == 90000 * 2
    with pytest.raises(DeepSleep):
        device.sleep(120, "deep")
    assert board.calls == [("deepsleep", 120000)]
    board.calls.clear()
    device.sleep(0, "deep")  # nothing to wait for: no deep sleep of "forever"
    assert board.calls == []


def test_long_sleep_is_cut_into_days(device: Any, board: FakeBoard) -> None:
    # 3 days of milliseconds would overflow a 32-bit machine int on an ESP32
    device.sleep(3 * 86400 + 0.5, "light")
    assert board.calls == [("lightsleep", 86400000)] * 3 + [("lightsleep", 500)]
    with pytest.raises(DeepSleep):
        device.sleep(30 * 86400, "deep")
    assert board.calls[-1] == ("deepsleep", 86400000)


def test_long_sleep_is_cut_into_naps_on_rp2(device: Any, board: FakeBoard) -> None:
    device.sleep_mod.MAX_MS = 3600000  # rp2: its sleep timer holds 32-bit microseconds
    device.sleep(3 * 3600 + 1, "light")
    assert [c[1] for c in board.calls] == [3600000, 3600000, 3600000, 1000]
    board.calls.clear()
    device.sleep_mod.DEEP = False  # rp2: its deepsleep is a lightsleep and then a reset
    device.sleep(2 * 3600 + 1, "deep")  # that would lose the wait and the RTC's time
    assert board.calls == [("lightsleep", 3600000)] * 2 + [("lightsleep", 1000)]


def test_rtc_memory_absent_on_rp2(monkeypatch: pytest.MonkeyPatch) -> None:
    rp2 = FakeBoard(rtc_memory=False)
    rp2.install(monkeypatch)
    dev = Edges(rp2)
    dev.rtc_save(b"x")  # a no-op, no error
    assert dev.rtc_load() is None


# ---------------------------------------------------------------- the clock floor


def test_clock_floor_sets_the_boards_rtc_forward_never_back(board: FakeBoard,
                                                          tmp_path: Any) -> None:
    """A cold board without NTP: the RTC is moved to the last commit's time, so that a
    TLS handshake (mbedTLS reads the port's clock) can check the server's certificate."""
    from fakes.net import FakeHTTP
    from regtoken import Clock, Refresher, validate
    from regtoken.policy import EPOCH
    from regtoken.store import Record, Store

    last = int(time.time()) + 30 * 86400  # a commit "in the future" of this host's clock
    store = Store(str(tmp_path))
    store.commit(Record("A" * 248, last + 86400, last + 3600, "-", at=last))
    cfg = validate({"api_url": "http://device-api.test", "store_dir": str(tmp_path)})
    clock = Clock(trusted=False)
    lines = Log()
    Refresher(cfg, transport=FakeHTTP(), clock=clock, log=lines)
    t = time.gmtime(last - EPOCH)
    assert board.rtc_datetime == (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
    assert not clock.trusted and clock.now() >= last  # a floor, not the truth
    assert any("moved forward to %04d-%02d-%02dT" % t[:3] in x for x in lines)
    # never backward: a clock already past the floor is left alone
    from fakes.clock import VirtualClock

    ahead = VirtualClock(t=last + 1000, trusted=False)
    Refresher(cfg, transport=FakeHTTP(), clock=ahead, log=lines)
    assert ahead.t == last + 1000
    # and a trusted clock (NTP worked) is never touched
    board.calls.clear()
    Refresher(cfg, transport=FakeHTTP(), clock=Clock(trusted=True), log=lines)
    assert not [c for c in board.calls if c[0] == "rtc"]


def test_clock_floor_without_any_commit_is_the_release_date(board: FakeBoard,
                                                            tmp_path: Any) -> None:
    from fakes.clock import VirtualClock
    from fakes.net import FakeHTTP
    from regtoken import Refresher, validate
    from regtoken.boot import RELEASED

    clock = VirtualClock(t=946684800, trusted=False)  # an ESP32 RTC after a cold boot
    cfg = validate({"api_url": "http://device-api.test", "store_dir": str(tmp_path)})
    Refresher(cfg, transport=FakeHTTP(), clock=clock, log=Log())
    assert clock.t == RELEASED and not clock.trusted


# ---------------------------------------------------------------- the real unix port


def test_main_on_the_unix_port_imports_no_board_edge(micropython: str, tmp_path: Any) -> None:
    """On the unix port main.py's boot loads regtoken's core and nothing of firmware/board/
    (nor network, machine, ntptime) (probes/main_boot_on_unix.py)."""
    (tmp_path / "config.json").write_text(json.dumps({"api_url": "http://127.0.0.1:9"}))
    p = subprocess.run([micropython, probe("main_boot_on_unix")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    loaded = [ln for ln in p.stdout.splitlines() if ln.startswith("LOADED")]
    assert loaded, p.stdout + p.stderr
    mods = loaded[0].split()[1:]
    assert not [m for m in mods if m.startswith("board") or m in ("network", "ntptime")], mods
    assert "regtoken.config" not in mods and "regtoken.pem" not in mods, mods


def test_main_on_the_unix_port_boots_again_when_the_refresher_cannot_be_built(
        micropython: str, tmp_path: Any) -> None:
    """No heap for the refresher yet (its import or its boot raising MemoryError): main.py
    logs one line and boots again after a growing wait, as it does on a board;
    no traceback and exit (probes/main_boot_retry.py)."""
    (tmp_path / "config.json").write_text(json.dumps({"api_url": "http://127.0.0.1:9"}))
    p = subprocess.run([micropython, probe("main_boot_retry")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    lines = p.stdout.splitlines()
    assert p.returncode == 0 and lines[-1] == "BOOTED", p.stdout + p.stderr
    assert [ln for ln in lines if ln.startswith("SLEPT")] == ["SLEPT 1", "SLEPT 4"], lines
    booting = [ln for ln in lines if "boot: MemoryError" in ln]
    assert len(booting) == 2 and "again in 1 s" in booting[0] and "again in 4 s" in booting[1]
