"""Fakes of the board modules firmware/board/*.py and regtoken.edges import (network,
machine, ntptime, neopixel) and of the `time` they sleep with: nothing waits, a virtual
millisecond clock advances instead, and every hardware call is recorded in `board.calls`.

    board = FakeBoard()
    board.install(monkeypatch)       # puts the fake modules into sys.modules
    wifi.time = board.clock          # sleeps advance board.clock.ms
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


class DeepSleep(BaseException):
    """machine.deepsleep() never returns on a board: it reboots into main.py. Not an
    Exception: main.py retries a boot that raises one (a reboot is not a failure)."""


class FakeTime:
    """Stands in for MicroPython's time module where the board edges sleep."""

    def __init__(self) -> None:
        self.ms = 0

    def sleep_ms(self, ms: int) -> None:
        self.ms += ms

    def sleep(self, s: float) -> None:
        self.ms += int(s * 1000)


class FakeBoard:
    def __init__(self, rtc_memory: bool = True) -> None:
        self.clock = FakeTime()
        self.calls: list[tuple[Any, ...]] = []
        # Wi-Fi: the connect() call (1-based) that works, and how long the link then takes
        self.working_connect: int | None = 1
        self.link_delay_ms = 500
        self.connect_errors = 0  # the first N connect() calls raise OSError
        self.active_errors = 0  # the first N active(True) calls raise OSError (an ESP32 radio)
        self.disconnect_raises = False  # a driver that refuses to drop a link it lacks
        self.connects = 0
        self.link_up_at: int | None = None
        self.ntp_failures = 0  # the first N settime() calls raise OSError
        self.ntp_timeout_seen: list[int] = []
        self.rtc_memory: bytes | None = b"" if rtc_memory else None
        self.reset_cause = 1  # PWRON_RESET; 4 is DEEPSLEEP_RESET on ESP32
        self.rtc_datetime: tuple[int, ...] | None = None  # what RTC().datetime() was set to
        self.pins: dict[Any, FakePin] = {}
        self.timers: list[FakeTimer] = []
        self.pixels: list[FakeNeoPixel] = []

    # -- the link, as the tests steer it

    def link_up(self) -> bool:
        return self.link_up_at is not None and self.clock.ms >= self.link_up_at

    def drop_link(self) -> None:
        self.link_up_at = None

    # -- modules (plain namespaces: `import network` takes whatever sys.modules holds)

    def install(self, monkeypatch: Any) -> None:
        for name, module in self.modules().items():
            monkeypatch.setitem(sys.modules, name, module)

    def modules(self) -> dict[str, Any]:
        return {"network": self._network(), "machine": self._machine(),
                "ntptime": self._ntptime(), "neopixel": self._neopixel()}

    def _network(self) -> Any:
        board = self

        class WLAN:
            def __init__(self, iface: int) -> None:
                assert iface == 0, "board.wifi must use the station interface"
                self._active = False

            def active(self, on: bool | None = None) -> bool:
                if on is not None:
                    board.calls.append(("active", on))
                    if on and board.active_errors:
                        board.active_errors -= 1
                        raise OSError("Wifi Internal Error")
                    self._active = on
                return self._active

            def isconnected(self) -> bool:
                return board.link_up()

            def connect(self, ssid: str, key: str) -> None:
                assert self._active, "connect() before active(True)"
                board.connects += 1
                board.calls.append(("connect", ssid, key))
                if board.connects <= board.connect_errors:
                    raise OSError("Wifi Internal Error")
                if board.connects == board.working_connect:
                    board.link_up_at = board.clock.ms + board.link_delay_ms

            def disconnect(self) -> None:
                board.calls.append(("disconnect",))
                if board.disconnect_raises:
                    raise OSError("not connected")
                board.link_up_at = None

            def status(self) -> int:
                return 1001  # STAT_CONNECTING on ESP32

            def ipconfig(self, key: str) -> tuple[str, str]:
                assert key == "addr4"
                return ("192.0.2.10", "255.255.255.0")

        return types.SimpleNamespace(STA_IF=0, WLAN=WLAN)

    def _machine(self) -> Any:
        board = self

        class Pin(FakePin):
            OUT = 1

            def __init__(self, pin_id: Any, mode: int) -> None:
                assert mode == Pin.OUT
                super().__init__(pin_id)
                board.pins[pin_id] = self

        class Timer(FakeTimer):
            PERIODIC = 1

            def __init__(self, timer_id: int) -> None:
                super().__init__(timer_id)
                board.timers.append(self)

        class RTC:
            def __getattr__(self, name: str) -> Any:
                if name == "memory" and board.rtc_memory is not None:
                    return self._memory
                raise AttributeError(name)  # rp2: no RTC memory

            def datetime(self, t: tuple[int, ...]) -> None:
                assert len(t) == 8, "(year, month, day, weekday, hours, minutes, seconds, sub)"
                board.calls.append(("rtc", t))
                board.rtc_datetime = tuple(t)

            def _memory(self, data: bytes | None = None) -> bytes | None:
                if data is None:
                    return board.rtc_memory
                board.rtc_memory = bytes(data)
                return None

        def lightsleep(ms: int) -> None:
            board.calls.append(("lightsleep", ms))
            board.clock.ms += ms

        def deepsleep(ms: int) -> None:
            board.calls.append(("deepsleep", ms))
            raise DeepSleep(ms)

        return types.SimpleNamespace(Pin=Pin, Timer=Timer, RTC=RTC, lightsleep=lightsleep,
                                     deepsleep=deepsleep, DEEPSLEEP_RESET=4,
                                     reset_cause=lambda: board.reset_cause)

    def _ntptime(self) -> Any:
        board = self
        m = types.SimpleNamespace(timeout=1)

        def settime() -> None:
            board.ntp_timeout_seen.append(m.timeout)
            board.calls.append(("settime",))
            if len(board.ntp_timeout_seen) <= board.ntp_failures:
                raise OSError(110)  # ETIMEDOUT, what a lost UDP answer gives

        m.settime = settime
        return m

    def _neopixel(self) -> Any:
        board = self

        def neopixel(pin: FakePin, n: int) -> FakeNeoPixel:
            px = FakeNeoPixel(pin, n)
            board.pixels.append(px)
            return px

        return types.SimpleNamespace(NeoPixel=neopixel)


class FakePin:
    def __init__(self, pin_id: Any) -> None:
        self.id = pin_id
        self.history: list[int] = []

    def value(self, v: int) -> None:
        self.history.append(v)


class FakeTimer:
    def __init__(self, timer_id: int) -> None:
        self.id = timer_id
        self.period: int | None = None
        self.callback: Callable[[Any], None] | None = None
        self.running = False

    def init(self, period: int, mode: int, callback: Callable[[Any], None]) -> None:
        self.period, self.callback, self.running = period, callback, True

    def deinit(self) -> None:
        self.running = False

    def fire(self, times: int = 1) -> None:
        for _ in range(times):
            assert self.running and self.callback is not None
            self.callback(self)


class FakeNeoPixel:
    def __init__(self, pin: FakePin, n: int) -> None:
        self.pin = pin
        self.buf: list[tuple[int, int, int]] = [(0, 0, 0)] * n
        self.written: list[tuple[int, int, int]] = []

    def __setitem__(self, i: int, rgb: tuple[int, int, int]) -> None:
        self.buf[i] = rgb

    def write(self) -> None:
        self.written.append(self.buf[0])
