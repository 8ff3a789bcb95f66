"""RefServer: the reference server in a background thread. Start and stop, the injectable
clock, minting, provisioning operations for the operator, queued faults, stats, and the
control API's commands. It is the `Site` the HTTP handler serves."""

from __future__ import annotations

import enum
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from refserver.dates import rfc3339
from refserver.faults import Fault, FaultQueue
from refserver.handler import HttpServer
from refserver.ledger import Ledger
from refserver.lineage import Decision, LineageStore, RateLimiter
from refserver.operations import OperationError, Operations

TIME_FORMATS = ("z", "offset", "mixed")


class _Unset(enum.Enum):
    UNSET = 0


_UNSET = _Unset.UNSET


def print_line(line: str) -> None:
    print(line, flush=True)


class RefServer:
    """The reference server, in a background thread. Also a context manager.

    Tests: `with RefServer(db=":memory:", log=None) as srv: srv.mint(); srv.url ...`
    """

    def __init__(
        self,
        db: str = ":memory:",
        lifetime: float | None = 60.0,
        grace: float = 30.0,
        rate_limit: int = 0,
        rate_window: float = 60.0,
        retry_after_412: float | str | None = None,
        device_token: str | None = None,
        tls: tuple[str | os.PathLike[str], str | os.PathLike[str]] | ssl.SSLContext | None = None,
        time_format: str = "z",
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] | None = None,
        log: Callable[[str], Any] | None = print_line,
        handler_timeout: float = 30.0,
        op_lifetime: float = 600.0,
    ) -> None:
        if time_format not in TIME_FORMATS:
            raise ValueError("time_format must be one of %s" % ", ".join(TIME_FORMATS))
        self.lifetime = lifetime
        self.grace = grace
        self.retry_after_412 = retry_after_412
        self.device_token = device_token
        self.time_format = time_format
        self.host = host
        self.port = port
        self.handler_timeout = handler_timeout
        self.url = ""
        self.lineages = LineageStore(db)
        self.operations = Operations(self.lineages)
        self.op_lifetime = op_lifetime
        self.faults = FaultQueue()
        self.ledger = Ledger()
        self.tls_context: ssl.SSLContext | None = None
        self.stopping = threading.Event()
        self._tls = tls
        self._clock = clock or time.time
        self._offset = 0.0
        # the Date header from the host's clock, not the server's (a proxy's Date in front
        # of a server whose clock is off): see date_now
        self.date_from_host = False
        self._logfn = log
        self._limiter = RateLimiter(rate_limit, rate_window)
        self._lock = threading.Lock()  # guards _offset and _issued
        self._issued = 0
        self._httpd: HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> RefServer:
        if self._httpd is not None:
            return self
        self.tls_context = self._make_tls_context()
        self.stopping.clear()
        self._httpd = HttpServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        scheme = "https" if self.tls_context else "http"
        shown = "[%s]" % self.host if ":" in self.host else self.host
        self.url = "%s://%s:%d" % (scheme, _connect_host(self.host), self.port)
        self.log("listening on %s://%s:%d" % (scheme, shown, self.port))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="refserver", daemon=True,
        )
        self._thread.start()
        return self

    def _make_tls_context(self) -> ssl.SSLContext | None:
        if self._tls is None or isinstance(self._tls, ssl.SSLContext):
            return self._tls
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self._tls[0], self._tls[1])
        return ctx

    def stop(self) -> None:
        """Stop serving; hanging and dripping handlers end promptly. The store stays readable."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()  # no more accepts once this returns
        for conn in self.ledger.active():
            conn.shutdown()  # wakes handlers blocked reading an idle client
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self.lineages.close()

    def __enter__(self) -> RefServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self, line: str) -> None:
        if self._logfn is not None:
            self._logfn(line)

    # -- clock

    def now(self) -> float:
        return self._clock() + self._offset

    def date_now(self) -> float:
        """The time the Date header says: now(), or the host's clock with date_from_host."""
        return self._clock() if self.date_from_host else self.now()

    def advance(self, seconds: float) -> float:
        """Move the server clock forward (tokens expire without sleeping) -> new now()."""
        with self._lock:
            self._offset += seconds
        return self.now()

    def set_clock_offset(self, offset: float) -> None:
        with self._lock:
            self._offset = float(offset)

    # -- tokens

    def mint(self, lifetime: float | None | _Unset = _UNSET) -> dict[str, Any]:
        """A new lineage -> its first token object (what provisioning gives a device)."""
        life = self.lifetime if lifetime is _UNSET else lifetime
        token, expires, _device = self.lineages.mint(self.now(), life)
        return self.token_object(Decision(201, "minted", token=token, expires=expires))

    def token_object(self, decision: Decision) -> dict[str, Any]:
        """The JSON a device gets for an issued token, in the configured time format."""
        style = self.time_format
        if style == "mixed":
            with self._lock:
                self._issued += 1
                style = "z" if self._issued % 2 else "offset"
        return {"registrationToken": decision.token,
                "expirationTime": rfc3339(decision.expires, style)}

    def refresh(self, token: str) -> Decision:
        """The platform's decision for a refresh presenting `token` (the lineage changes)."""
        now = self.now()
        return self.lineages.refresh(token, now, self.lifetime, self.grace,
                                     lambda device: self._limiter.admit(device, now))

    def lineage(self, device: str | None = None) -> list[dict[str, Any]]:
        return self.lineages.lineage(self.now(), device)

    def current_sha256(self, device: str | None = None) -> str | None:
        """sha256 of the lineage's newest non-revoked token (None if there is none)."""
        rows = self.lineage(device)
        if device is None and len({r["device"] for r in rows}) > 1:
            raise ValueError("several lineages: pass device=")
        current = [r["sha256"] for r in rows if r["state"] == "current"]
        return current[-1] if current else None

    # -- provisioning operations

    def open_operation(self, device_id: str | None) -> dict[str, Any]:
        """init: a new pending operation, valid for op_lifetime."""
        return self.operations.init(device_id, self.now(), self.op_lifetime)

    def complete_operation(self, op_id: str) -> Decision:
        return self.operations.complete(op_id, self.now(), self.lifetime)

    def approve(self, key: str) -> dict[str, Any]:
        """The operator approves the live operation with this verification code or id."""
        return self.operations.decide(key, "approved", self.now())

    def cancel(self, key: str) -> dict[str, Any]:
        return self.operations.decide(key, "cancelled", self.now())

    def list_operations(self) -> list[dict[str, Any]]:
        return self.operations.list(self.now())

    # -- faults and stats

    def fault(self, mode: str, count: int = 1, **params: Any) -> int:
        """Queue `mode` for the next `count` requests to `endpoint` (refresh, init or
        complete; default refresh) -> faults now pending."""
        return self.faults.add(mode, count, params)

    def take_fault(self, endpoint: str) -> Fault | None:
        return self.faults.take(endpoint)

    def reset(self) -> None:
        """Clear faults, stats and rate-limit windows; the token db stays."""
        self.faults.clear()
        self.ledger.reset()
        self._limiter.reset()

    def stats(self, settle: float = 2.0) -> dict[str, Any]:
        """Per-request records and connection counters. Waits (at most `settle` s) for
        connections whose answer is leaving, so the byte counts a client sees are final."""
        return {**self.ledger.snapshot(settle), "faults_pending": len(self.faults)}

    # -- control API (HTTP) -> JSON result, None for an unknown endpoint

    def control(
        self, method: str, name: str, doc: dict[str, Any], query: dict[str, str]
    ) -> Any:
        if (method, name) == ("GET", "stats"):
            return self.stats()
        if (method, name) == ("GET", "lineage"):
            return self.lineage(query.get("device"))
        if (method, name) == ("POST", "faults"):
            params = dict(doc)
            mode, count = params.pop("mode", None), params.pop("count", 1)
            return {"pending": self.fault(str(mode), count, **params)}
        if (method, name) == ("POST", "reset"):
            self.reset()
            return {"reset": True}
        if name == "clock" and method in ("GET", "POST"):
            return self._control_clock(doc)
        if (method, name) == ("GET", "operations"):
            return self.list_operations()
        if method == "POST" and name in ("approve", "cancel"):
            key = doc.get("code") or doc.get("id")
            if not isinstance(key, str):
                raise ValueError('body must be {"code": "..."} or {"id": "..."}')
            try:
                return self.approve(key) if name == "approve" else self.cancel(key)
            except OperationError as exc:
                raise ValueError(str(exc)) from None
        if (method, name) == ("POST", "mint"):
            if "lifetime" not in doc:
                return self.mint()
            return self.mint(None if doc["lifetime"] is None else float(doc["lifetime"]))
        return None

    def _control_clock(self, doc: dict[str, Any]) -> dict[str, float]:
        if "offset" in doc:
            self.set_clock_offset(float(doc["offset"]))
        if "advance" in doc:
            self.advance(float(doc["advance"]))
        return {"now": self.now(), "offset": self._offset}


def _connect_host(host: str) -> str:
    """Where a local client connects for a bind address (the wildcard is not a host)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return "[%s]" % host if ":" in host else host
