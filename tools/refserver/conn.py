"""An accepted connection that counts its bytes at the socket (`bytes_in`, `bytes_out` in
the stats), with TLS run through memory BIOs, and the file objects the HTTP handler reads
and writes through it."""

from __future__ import annotations

import contextlib
import functools
import io
import socket
import ssl
import struct
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


class CountingConn:
    """One accepted TCP connection, counting the bytes that cross its socket.

    TLS records and handshakes are counted too, so benchmarks see every byte on the
    network. That is why TLS runs here through memory BIOs: ssl.SSLSocket reads the file
    descriptor in C, where no counter can see it.
    """

    def __init__(self, sock: socket.socket, conn_id: int) -> None:
        self.sock = sock
        self.id = conn_id
        self.bytes_in = 0
        self.bytes_out = 0
        # Set just before the answer (or an alert, or a close) leaves: from then on a client
        # may ask for stats, which wait until this connection's counters are final.
        self.finishing = False
        self.records: list[dict[str, Any]] = []
        self._closed = False
        self._tls: ssl.SSLObject | None = None
        self._tls_up = False
        self._bio_in = ssl.MemoryBIO()
        self._bio_out = ssl.MemoryBIO()
        self._eof = False

    def settimeout(self, seconds: float | None) -> None:
        self.sock.settimeout(seconds)

    # -- raw socket, counted

    def _recv_raw(self) -> bytes:
        data = self.sock.recv(16384)
        self.bytes_in += len(data)
        return data

    def _send_raw(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self.bytes_out += len(view)  # counted before it can arrive; unsent bytes taken back
        try:
            while view:
                sent = self.sock.send(view)
                view = view[sent:]
        except OSError:
            self.bytes_out -= len(view)
            raise

    # -- TLS through memory BIOs

    def start_tls(self, ctx: ssl.SSLContext) -> None:
        self._tls = ctx.wrap_bio(self._bio_in, self._bio_out, server_side=True)
        self._pump(self._tls.do_handshake)
        self._tls_up = True

    def _pump(self, op: Callable[[], _T]) -> _T:
        while True:
            try:
                result = op()
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
                continue
            except ssl.SSLError:
                self.finishing = True
                with contextlib.suppress(OSError):
                    self._flush()  # the alert tells the client why
                raise
            self._flush()
            return result

    def _fill(self) -> None:
        if self._eof:
            raise ConnectionAbortedError("peer closed the connection")
        data = self._recv_raw()
        if data:
            self._bio_in.write(data)
        else:
            self._eof = True
            self._bio_in.write_eof()

    def _flush(self) -> None:
        data = self._bio_out.read()
        if data:
            self._send_raw(data)

    # -- what the HTTP handler uses

    def recv_into(self, buf: Any) -> int:
        if self._tls is None:
            n = self.sock.recv_into(buf)
            self.bytes_in += n
            return n
        try:
            data = self._pump(functools.partial(self._tls.read, len(buf)))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0
        buf[: len(data)] = data
        return len(data)

    def sendall(self, data: bytes | memoryview) -> None:
        if self._tls is None:
            self._send_raw(data)
            return
        view = memoryview(data)
        while view:
            sent = self._pump(functools.partial(self._tls.write, view))
            view = view[sent:]

    def shutdown(self) -> None:
        """Wake a thread blocked on this connection (server stop)."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self, mode: str = "graceful") -> None:
        """graceful: TLS close_notify, FIN, drain; fin: FIN only; rst: reset (SO_LINGER 0)."""
        if self._closed:
            return
        self._closed = True
        self.finishing = True
        with contextlib.suppress(OSError):
            if mode == "rst":
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                if mode == "graceful":
                    self._close_notify()
                self.sock.shutdown(socket.SHUT_WR)
                self._drain()
        self.sock.close()

    def _close_notify(self) -> None:
        if self._tls is None or not self._tls_up:
            return
        with contextlib.suppress(ssl.SSLError):
            self._tls.unwrap()  # writes close_notify; "want read" for the peer's is expected
        self.sock.settimeout(1.0)
        self._flush()

    def _drain(self) -> None:
        # Unread input makes close() send RST, which can destroy an answer still in flight;
        # read what already arrived, without waiting for more.
        self.sock.setblocking(False)
        with contextlib.suppress(OSError):
            for _ in range(16):  # bounded: a client streaming junk must not pin us here
                if not self._recv_raw():
                    break


class ConnReader(io.RawIOBase):
    def __init__(self, conn: CountingConn) -> None:
        super().__init__()
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._conn.recv_into(buffer)


class ConnWriter(io.BufferedIOBase):
    """wfile for BaseHTTPRequestHandler (it writes only for 100-continue)."""

    def __init__(self, conn: CountingConn) -> None:
        super().__init__()
        self._conn = conn

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._conn.sendall(data)
        return len(data)
