"""What `stats()` reports: a record per request, byte counts per connection, and counters
(connections, TLS handshake failures, control requests). Kept small for a server left
running for days."""

from __future__ import annotations

import collections
import contextlib
import socket
import threading
import time
from typing import Any

from refserver.conn import CountingConn

MAX_RECORDS = 10000  # request records kept


class Ledger:
    """The ledger behind stats(): per-request records and connection counters, shared by
    the handler threads."""

    def __init__(self) -> None:
        self._cond = threading.Condition()  # guards everything below
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS)
        self._active: dict[int, CountingConn] = {}
        self._conn_seq = 0
        self._connections = 0
        self._tls_failures = 0
        self._control_requests = 0

    # -- called as connections come and go

    def accepted(self, sock: socket.socket) -> CountingConn:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # drip: 1 byte = 1 segment
        with self._cond:
            self._conn_seq += 1
            self._connections += 1
            conn = CountingConn(sock, self._conn_seq)
            self._active[conn.id] = conn
        return conn

    def finished(self, conn: CountingConn) -> None:
        conn.close()
        with self._cond:
            self._active.pop(conn.id, None)
            self._sync(conn)
            self._cond.notify_all()

    def active(self) -> list[CountingConn]:
        with self._cond:
            return list(self._active.values())

    # -- called by the handler

    def new_record(self, conn: CountingConn, fields: dict[str, Any]) -> dict[str, Any]:
        """A request's record, filled in by the handler as the request goes on."""
        rec: dict[str, Any] = {
            "time": None, "connection_id": conn.id, "status": None, "outcome": None,
            "reason": None, "fault": None, "token_sha256": None, "issued_sha256": None,
            "body_received": False, "answered": False, "bytes_in": 0, "bytes_out": 0,
        }
        rec.update(fields)
        with self._cond:
            self._records.append(rec)
            conn.records.append(rec)
        return rec

    def tls_failed(self) -> None:
        with self._cond:
            self._tls_failures += 1

    def control_request(self) -> None:
        with self._cond:
            self._control_requests += 1

    # -- what stats() and reset() see

    def snapshot(self, settle: float) -> dict[str, Any]:
        """Waits (at most `settle` s) for connections whose answer is leaving, so the byte
        counts a client sees are final."""
        deadline = time.monotonic() + settle
        with self._cond:
            while any(c.finishing for c in self._active.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            for conn in self._active.values():
                self._sync(conn)
            return {
                "requests": [dict(r) for r in self._records],
                "connections": self._connections,
                "tls_handshake_failures": self._tls_failures,
                "control_requests": self._control_requests,
            }

    def reset(self) -> None:
        with self._cond:
            self._records.clear()
            self._connections = self._tls_failures = self._control_requests = 0

    @staticmethod
    def _sync(conn: CountingConn) -> None:
        for rec in conn.records:
            rec["bytes_in"], rec["bytes_out"] = conn.bytes_in, conn.bytes_out
