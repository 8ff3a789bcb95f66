"""Host side of the relayed HTTP (tools/bringup/onboard/relay_transport.py on the board): run a
program on the emulated Pico (a plain Pico has no network) through mpremote's own serial
transport, forward each exchange it prints to the reference server over loopback, and write the
answer back on the console. The tests' rotations on the Pico and `make bench`'s 32-bit figures
(tools/bench/rp2.py) both use it.

The server's clock is the board's (BoardClock): the emulator runs at ~0.3x real time, so
a token lifetime counts the seconds the board lives through, not the host's.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from mpremote.transport_serial import SerialTransport

MARK = b"@@relay@@"
DONE = b"@@done@@"
TICKS_PERIOD = 1 << 30  # MicroPython's ticks_ms wraps here


class BoardClock:
    """Real time at the start, then advancing as the board's ticks_ms do."""

    def __init__(self) -> None:
        self.base = time.time()
        self.first: int | None = None
        self.elapsed = 0.0

    def saw(self, ticks_ms: int) -> None:
        if self.first is None:
            self.first = ticks_ms
        self.elapsed = ((ticks_ms - self.first) % TICKS_PERIOD) / 1000

    def __call__(self) -> float:
        return self.base + self.elapsed


@dataclass
class Run:
    done: dict[str, Any] = field(default_factory=dict)  # the program's @@done@@ status
    log: list[str] = field(default_factory=list)  # everything else it printed
    exchanges: list[tuple[str, int]] = field(default_factory=list)  # (method, status)
    error: str = ""  # a traceback, if the program raised


def forward(url: str, method: str, body: bytes, headers: dict[str, str],
            timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request(method, parts.path or "/", body=body, headers=headers)
        answer = conn.getresponse()
        got: dict[str, str] = {}
        for name, value in answer.getheaders():
            key = name.lower()
            got[key] = got[key] + ", " + value if key in got else value
        return answer.status, got, answer.read()
    finally:
        conn.close()


def call(module: str, function: str, **args: Any) -> str:
    """What `mpremote exec` (or run()) sends to call module.function(**args) in a program
    already on the board: the args reach it as one JSON string literal, as with
    boardctl.program, so a value is only ever data, never code."""
    return ("ARGS_JSON = %r\nimport json, %s\n%s.%s(**json.loads(ARGS_JSON))\n"
            % (json.dumps(args), module, module, function))


def run(tty: str, code: str, clock: BoardClock, timeout: float = 300) -> Run:
    """Soft-reset the board, exec `code` (call(): a program already on the board), relay
    its exchanges until it ends; the board is left at its raw REPL's end."""
    link = SerialTransport(tty, baudrate=115200)
    result = Run()
    try:
        link.enter_raw_repl(soft_reset=True, timeout_overall=60)
        link.exec_raw_no_follow(code)
        deadline = time.monotonic() + timeout
        buf = b""
        while True:
            if time.monotonic() > deadline:
                raise AssertionError("the board program did not end in %ds; it printed:\n%s"
                                     % (timeout, "\n".join(result.log[-30:])))
            n = link.serial.inWaiting()
            buf += link.serial.read(n or 1)
            if b"\x04" in buf:  # raw REPL: end of the program's output, then its error
                out, _, rest = buf.partition(b"\x04")
                _lines(out + b"\n", result, link, clock)
                while rest.count(b"\x04") < 1 and time.monotonic() < deadline:
                    rest += link.serial.read(max(1, link.serial.inWaiting()))
                result.error = rest.partition(b"\x04")[0].decode(errors="replace").strip()
                break
            if b"\n" in buf:
                head, _, buf = buf.rpartition(b"\n")
                _lines(head + b"\n", result, link, clock)
        link.exit_raw_repl()
    finally:
        link.close()
    return result


def _lines(data: bytes, result: Run, link: SerialTransport, clock: BoardClock) -> None:
    for raw in data.split(b"\n"):
        line = raw.rstrip(b"\r")
        if line.startswith(MARK):
            method, url, b64, headers, ticks = json.loads(line[len(MARK):])
            clock.saw(ticks)
            status, got, body = forward(url, method, base64.b64decode(b64), headers)
            result.exchanges.append((method, status))
            answer = json.dumps([status, got, base64.b64encode(body).decode()])
            link.serial.write(answer.encode() + b"\n")
        elif line.startswith(DONE):
            result.done = json.loads(line[len(DONE):])
        elif line:
            result.log.append(line.decode(errors="replace"))
