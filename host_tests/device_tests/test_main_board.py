# firmware/main.py's board path under CPython, with the fake network/machine/ntptime of
# host_tests/fakes/board.py: what a deep-sleeping board does at each boot.
import importlib.util
import json
import os
import time
from typing import Any

import pytest
from conftest import ROOT
from fakes.board import DeepSleep, FakeBoard
from regtoken import refresher
from regtoken.store import Files, Record, Store

WIFI = {"ssid": "lab", "password": "pw"}


def load_main() -> Any:
    spec = importlib.util.spec_from_file_location("main_under_test",
                                                  os.path.join(ROOT, "firmware", "main.py"))
    assert spec is not None and spec.loader is not None
    mod: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.BOARD = True  # CPython says "linux" too: take the board path
    return mod


@pytest.fixture
def board(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> FakeBoard:
    b = FakeBoard()
    b.install(monkeypatch)
    import sys

    for name in ("board", "board.led", "board.loop", "board.sleep", "board.wifi"):  # fresh
        monkeypatch.delitem(sys.modules, name, raising=False)
    from board import wifi

    monkeypatch.setattr(wifi, "time", b.clock)
    monkeypatch.setattr(refresher, "_random", lambda: 0.5)  # jitter and boot delay: fixed
    monkeypatch.chdir(tmp_path)
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9", "wifi": WIFI, "sleep": "deep"}, f)
    return b


def store_token(due: int) -> None:
    now = int(time.time())
    Store(Files("")).commit(Record("A" * 248, now + 86400, due, "-"))


def boot(board: FakeBoard) -> int:
    """One boot of main.py until it goes to deep sleep; the sleep it asked for, in ms."""
    board.calls.clear()
    with pytest.raises(DeepSleep) as slept:
        load_main().main()
    return int(slept.value.args[0])


def radio(board: FakeBoard) -> list[Any]:
    return [c for c in board.calls if c[0] in ("connect", "settime")]


def test_power_on_joins_wifi_sets_the_clock_then_sleeps_until_due(board: FakeBoard) -> None:
    store_token(due=int(time.time()) + 3600)
    ms = boot(board)
    assert radio(board), "a cold boot joins Wi-Fi and asks NTP"
    assert 3590_000 <= ms <= 3600_000
    assert board.rtc_memory and board.rtc_memory.startswith(b"Thealthy ")  # T: NTP set it


def test_timer_wake_with_nothing_due_sleeps_again_without_the_radio(board: FakeBoard) -> None:
    store_token(due=int(time.time()) + 7200)
    boot(board)
    board.reset_cause = 4  # DEEPSLEEP_RESET: the timer woke it
    ms = boot(board)
    assert radio(board) == []
    assert 7180_000 <= ms <= 7200_000


def test_timer_wake_keeps_the_boot_delay_instead_of_drawing_another(board: FakeBoard) -> None:
    store_token(due=int(time.time()) - 60)  # off through its refresh point
    first = boot(board)
    saved = board.rtc_memory
    assert first > 0, "an overdue boot waits a random delay"
    board.reset_cause = 4
    second = boot(board)
    assert radio(board) == [] and board.rtc_memory == saved
    assert second <= first  # the same wake-up time, not a fresh random delay


class Slept(BaseException):  # not an Exception: main.py would take it for a failed boot
    pass


def test_sleep_none_never_calls_lightsleep(board: FakeBoard, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9", "wifi": WIFI, "sleep": "none"}, f)
    store_token(due=int(time.time()) + 3600)
    from board import sleep

    asked = []

    def sleep_ms(ms: int) -> None:
        asked.append(ms)
        raise Slept()

    monkeypatch.setattr(sleep, "time", type("T", (), {"sleep_ms": staticmethod(sleep_ms)}))
    with pytest.raises(Slept):
        load_main().main()
    assert not [c for c in board.calls if c[0] in ("lightsleep", "deepsleep")], board.calls
    assert 3590_000 <= asked[0] <= 3600_000
    assert board.rtc_memory == b""  # nothing kept for a deep-sleep wake that never comes



def test_a_fault_out_of_a_boot_is_one_line_and_a_boot_again(board: FakeBoard, capsys: Any,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    # an ESP32 radio whose active(True) raises, three boots running: each is one line and
    # a boot again, after waits that grow; the fourth joins, and sleeps until the refresh
    store_token(due=int(time.time()) + 3600)
    board.active_errors = 3
    waited: list[float] = []
    monkeypatch.setattr(time, "sleep", waited.append)  # main.py's wait before a boot again
    ms = boot(board)
    assert waited == [1, 4, 16] and 3590_000 <= ms <= 3600_000
    said = [ln for ln in capsys.readouterr().out.splitlines() if "again in" in ln]
    assert said == ["[regtoken] boot: OSError Wifi Internal Error; again in %d s" % w
                    for w in (1, 4, 16)]
    assert board.rtc_memory and board.rtc_memory.startswith(b"Thealthy ")


def test_a_config_error_on_a_board_still_stops_it(board: FakeBoard, capsys: Any) -> None:
    with open("config.json", "w") as f:
        json.dump({"api_url": "https://127.0.0.1:9", "wifi": WIFI, "ca_file": "none.der"}, f)
    assert load_main().main() == 2  # boot.py's ConfigError (no such ca_file), not a retry
    out = capsys.readouterr().out
    assert "stopped:" in out and "'ca_file'" in out and "again in" not in out, out


def test_a_config_error_leaves_a_board_at_the_repl_not_in_a_reset_loop(
        board: FakeBoard, capsys: Any) -> None:
    # a SystemExit out of a board's main.py soft-resets it, and main.py runs again: a bad
    # config.json would print its line for ever and keep mpremote from the raw REPL that
    # `make provision FORCE=1` needs. On a board main.py ends; the unix port exits 2
    import runpy
    import sys

    path = os.path.join(ROOT, "firmware", "main.py")
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9"}, f)  # no wifi: required on a board
    with pytest.MonkeyPatch.context() as m:
        m.setattr(sys, "platform", "rp2")  # main.py's BOARD: the board path, as on a Pico
        runpy.run_path(path, run_name="__main__")  # ends: no SystemExit
    out = capsys.readouterr().out
    assert out.count("stopped:") == 1 and "'wifi'" in out, out
    with open("config.json", "w") as f:  # the unix port: the same file, its exit status
        json.dump({"api_url": "http://127.0.0.1:9", "timeout_s": "x"}, f)
    with pytest.raises(SystemExit) as e:
        runpy.run_path(path, run_name="__main__")
    assert e.value.code == 2


def clocks(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every regtoken.Clock board/loop.py makes, to read its trust afterwards."""
    import regtoken

    made: list[Any] = []

    class Spy(regtoken.Clock):
        def __init__(self, trusted: bool = True) -> None:
            super().__init__(trusted)
            made.append(self)

    monkeypatch.setattr(regtoken, "Clock", Spy)
    return made


def test_a_timer_wake_trusts_the_clock_only_as_far_as_before_the_sleep(
        board: FakeBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    # any deep-sleep wake counted the RTC as trusted: one NTP never set (firewalled) stayed
    # at the clock floor for good, days behind, the server's Date no longer taken
    store_token(due=int(time.time()) + 7200)
    board.ntp_failures = 10**6  # no NTP, ever
    made = clocks(monkeypatch)
    boot(board)
    assert not made[-1].trusted and board.rtc_memory and board.rtc_memory[:1] == b"-"
    board.reset_cause = 4  # the timer woke it
    boot(board)
    assert radio(board) == [] and not made[-1].trusted  # the next Date may still set it
    board.ntp_failures = 0
    store_token(due=int(time.time()) + 7200)
    board.reset_cause = 1
    boot(board)  # a cold boot with NTP: trusted, and so after the next wake
    board.reset_cause = 4
    boot(board)
    assert made[-1].trusted


def test_ntp_that_works_after_the_boot_makes_the_clock_trusted(
        board: FakeBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    # sync_clock()'s answer was thrown away after the boot: a clock NTP set later stayed
    # untrusted, and a day's token was rotated every few minutes ("ntp: clock set" each time)
    store_token(due=int(time.time()) + 7200)
    board.ntp_failures = 2  # both of the boot's tries; the next works
    made = clocks(monkeypatch)
    boot(board)  # untrusted: refreshes at once, NTP asked first
    assert ("settime",) in board.calls and made[-1].trusted
    assert board.rtc_memory and board.rtc_memory[:1] == b"T"


def test_the_led_is_dark_while_the_board_sleeps(board: FakeBoard) -> None:
    # every pattern starts lit and the loop never turned it off: an RGB LED latched its
    # colour through deep sleep, a GPIO one kept its level with its blink timer stopped
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9", "wifi": WIFI, "sleep": "deep",
                   "led": {"pin": 2}}, f)
    store_token(due=int(time.time()) + 3600)
    boot(board)
    assert board.pins[2].history[-1] == 0 and not [t for t in board.timers if t.running]


def test_a_fault_long_after_a_good_boot_waits_from_1_s_again(
        board: FakeBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    # main.py's wait before a boot again grew for good: after a few radio faults over
    # months, every later one waited 256 s where a restart waits 1
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9", "wifi": WIFI, "sleep": "light"}, f)
    store_token(due=int(time.time()) + 3600)
    t0 = time.time()
    monkeypatch.setattr(time, "time", lambda: t0 + board.clock.ms / 1000)  # sleeps move it
    waited: list[float] = []
    monkeypatch.setattr(time, "sleep", waited.append)
    board.active_errors = 3  # three boots fail at once
    from board import wifi

    connect = wifi.connect
    failed: list[int] = []

    def flaky(w: Any, log: Any) -> bool:
        if board.clock.ms >= 3_000_000:  # the refresh an hour on: the radio fails
            if failed:
                raise Slept()  # the boot after it: enough
            failed.append(1)
            raise OSError("Wifi Internal Error")
        return connect(w, log)

    monkeypatch.setattr(wifi, "connect", flaky)
    with pytest.raises(Slept):
        load_main().main()
    assert waited == [1, 4, 16, 1], waited


def test_an_ntp_step_while_a_refresh_is_due_keeps_it_due(board: FakeBoard,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a clock set from a server's wrong Date (hours ahead), then NTP at the refresh: the
    # schedule, placed on the clock before, moved hours on, past the token's expiry by the
    # server's clock (a 410). The refresh due before the step is still made
    import sys
    import types

    from regtoken import edges

    skew = [0]
    real = time.time
    monkeypatch.setattr(edges, "time", types.SimpleNamespace(
        time=lambda: real() + skew[0], gmtime=time.gmtime))
    ntp = sys.modules["ntptime"]
    settime = ntp.settime

    def stepping() -> None:
        settime()
        if len(board.ntp_timeout_seen) == 2:  # the second: at the refresh
            skew[0] = -6 * 3600

    monkeypatch.setattr(ntp, "settime", stepping)
    with open("config.json", "w") as f:
        json.dump({"api_url": "http://127.0.0.1:9", "wifi": WIFI, "sleep": "deep",
                   "initial_token": "A" * 248}, f)  # imported: its refresh due at once
    ms = boot(board)
    assert len(board.ntp_timeout_seen) == 2, board.calls
    assert ms <= 10_000, ms  # backoff_min_s after the import, not 6 h


def test_a_clock_not_set_by_ntp_in_this_boot_asks_ntp_at_each_attempt(
        board: FakeBoard, monkeypatch: pytest.MonkeyPatch) -> None:
    # a timer wake trusts the RTC as it was before the sleep, which a server's Date may
    # have set: a server's clock days fast can put its own certificate past its expiry by
    # it, every handshake then fails and no Date comes to correct it. A backoff's attempt
    # asked NTP only while the clock was untrusted: never, there
    import types

    from regtoken import edges

    skew = [0.0]
    real = time.time
    monkeypatch.setattr(edges, "time", types.SimpleNamespace(
        time=lambda: real() + skew[0], gmtime=time.gmtime))
    store_token(due=int(time.time()) + 2)
    asked = []
    for wake in range(3):  # sleeps until due; refreshes (refused: a backoff); again
        board.reset_cause = 4 if wake else 1
        ms = boot(board)
        asked.append(("settime",) in board.calls)
        skew[0] += ms / 1000 + 1
    assert board.rtc_memory and board.rtc_memory.startswith(b"Tbackoff "), board.rtc_memory
    assert asked == [True, True, True], asked  # cold boot; healthy's refresh; the retry
