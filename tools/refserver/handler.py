"""The HTTP side: routing, the refresh and provisioning endpoints, the control API, and
carrying out a queued fault. The handler reaches the server only through `Site`."""

from __future__ import annotations

import hmac
import io
import ipaddress
import json
import socket
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs

from refserver.answers import (
    Answer,
    ProblemError,
    garbage_body,
    json_answer,
    json_object,
    media_type_ok,
    phrase,
    presented_token,
    problem,
    retry_after,
)
from refserver.conn import ConnReader, ConnWriter, CountingConn
from refserver.dates import http_date, rfc3339
from refserver.faults import FAKE_ANSWERS, Fault
from refserver.ledger import Ledger
from refserver.lineage import Decision
from refserver.operations import valid_device_id
from refserver.tokens import printable, redact, sha256_hex

REFRESH_PATH = "/devices/registration-tokens/refresh"
INIT_PATH = "/provisioning-operations/init"
COMPLETE_PATH = "/provisioning-operations/complete"
CANCELLED_TYPE = "https://refserver.invalid/problems/provisioningOperationCancelled"
CONTROL_PREFIX = "/_control/"
MAX_BODY = 64 * 1024  # a refresh body is ~300 bytes; anything huge is hostile


class Site(Protocol):
    """All the handler may use of the server (RefServer is the one Site)."""

    handler_timeout: float  # per-connection socket timeout
    tls_context: ssl.SSLContext | None  # None: plain http
    device_token: str | None  # the DeviceToken every endpoint requires (None: any)
    retry_after_412: float | str | None
    url: str
    stopping: threading.Event  # set when the server stops: hanging handlers end
    ledger: Ledger

    def now(self) -> float: ...

    def date_now(self) -> float: ...

    def log(self, line: str) -> None: ...

    def take_fault(self, endpoint: str) -> Fault | None: ...

    def refresh(self, token: str) -> Decision: ...

    def open_operation(self, device_id: str | None) -> dict[str, Any]: ...

    def complete_operation(self, op_id: str) -> Decision: ...

    def token_object(self, decision: Decision) -> dict[str, Any]: ...

    def control(self, method: str, name: str, doc: dict[str, Any],
                query: dict[str, str]) -> Any: ...


def is_loopback(host: str) -> bool:
    """Whether a peer address may use the control API (IPv4-mapped IPv6 included)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def log_error(site: Site, line: str) -> None:
    site.log("%s error: %s" % (rfc3339(site.now()), line))


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins handler threads
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], site: Site) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.site = site
        super().__init__(address, Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for
        # seconds on a machine without DNS; we never need the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.site.ledger.accepted(sock), addr

    def shutdown_request(self, request: Any) -> None:
        self.site.ledger.finished(request)

    def close_request(self, request: Any) -> None:
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log_error(self.site, "handler error from %s" % (client_address,))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "refserver/1"
    server: HttpServer

    def setup(self) -> None:
        self.conn: CountingConn = self.request
        self.site = self.server.site
        self.conn.settimeout(self.site.handler_timeout)
        self.rfile = io.BufferedReader(ConnReader(self.conn))
        self.wfile = ConnWriter(self.conn)
        self.rec: dict[str, Any] | None = None
        self.path = ""  # parse_request may fail before it sets these
        self.command = ""
        self.tok_label = "tok=-"
        self.note = ""
        self.logged = False

    def finish(self) -> None:
        pass  # the server's shutdown_request closes the connection and settles the stats

    def handle(self) -> None:
        try:
            if self.site.tls_context is not None and not self._handshake():
                return
            self.close_connection = True
            self.handle_one_request()
        except OSError as exc:  # the client vanished or timed out; nothing to answer
            self.note = ("%s client-gone(%s)" % (self.note, type(exc).__name__)).strip()
        except Exception as exc:  # a hostile request must never take the server down
            log_error(self.site, "unexpected %s: %s" % (type(exc).__name__, exc))
        finally:
            if self.rec is not None or self.command:
                self._log_request()

    def _handshake(self) -> bool:
        assert self.site.tls_context is not None
        try:
            self.conn.start_tls(self.site.tls_context)
            return True
        except OSError as exc:  # ssl.SSLError is an OSError; so are timeouts and resets
            self.site.ledger.tls_failed()
            self.site.log("%s %s:%s TLS handshake failed: %s" % (
                rfc3339(self.site.now()), self.client_address[0], self.client_address[1],
                printable(str(exc), 160)))
            return False

    # -- http.server hooks

    def log_message(self, format: str, *args: Any) -> None:
        self.site.log("%s %s" % (self._client(), printable(format % args, 200)))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        rec = self._record()
        rec["outcome"] = "http-error"
        self._answer(problem(code, explain or message, printable(self.path or "")))

    def do_PUT(self) -> None:
        self._route()

    do_GET = do_POST = do_DELETE = do_PATCH = do_OPTIONS = do_PUT

    # -- routing

    def _route(self) -> None:
        self.close_connection = True
        path = self.path.split("?", 1)[0]  # not urlsplit: it reads "//x/..." as a host name
        try:
            if path.startswith(CONTROL_PREFIX):
                self._control(path)
            elif path == REFRESH_PATH:
                self._refresh()
            elif path in (INIT_PATH, COMPLETE_PATH):
                self._provisioning(path)
            else:
                self._record()["outcome"] = "not-found"
                self._answer(problem(404, "no such endpoint", printable(path)))
        except ProblemError as exc:
            if self.rec is not None:
                self.rec["outcome"] = self.rec["outcome"] or "bad-request"
            self._answer(exc.answer)

    def _client(self) -> str:
        host, port = self.client_address[:2]
        return "%s:%s" % (host, port)

    def _record(self) -> dict[str, Any]:
        if self.rec is None:
            self.rec = self.site.ledger.new_record(self.conn, {
                "time": self.site.now(), "client": self._client(), "method": self.command,
                "path": printable(self.path or ""),
            })
        return self.rec

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "identity").lower() != "identity":
            raise ProblemError(problem(501, "chunked request bodies are not supported"))
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ProblemError(problem(400, "bad Content-Length")) from None
        if size < 0:
            raise ProblemError(problem(400, "bad Content-Length"))
        if size > MAX_BODY:
            raise ProblemError(problem(413, "body larger than %d bytes" % MAX_BODY))
        body = self.rfile.read(size)
        if len(body) < size:
            raise ConnectionAbortedError("client closed during the body")
        return body

    # -- the refresh endpoint

    def _refresh(self) -> None:
        rec = self._record()
        if self.command != "PUT":
            rec["outcome"] = "method-not-allowed"
            self._answer(problem(405, "use PUT", REFRESH_PATH, [("Allow", "PUT")]))
            return
        body = self._read_body()
        rec["body_received"] = bool(body)
        token = presented_token(body)
        if token is not None:
            rec["token_sha256"] = sha256_hex(token)
            self.tok_label = redact(token)
        fault = self.site.take_fault("refresh")
        rec["fault"] = fault.mode if fault else None
        if fault is not None and fault.mode in FAKE_ANSWERS:
            self._fake(fault)
            return
        answer = self._decide(token, body)
        self._deliver(answer, fault)

    def _refused(self, path: str, status: int, outcome: str, detail: str) -> Answer | None:
        """The checks every endpoint makes first: the DeviceToken, then the media type."""
        rec = self._record()
        if not self._authorized():
            rec["outcome"] = outcome
            return problem(status, detail, path)
        if not media_type_ok(self.headers.get("Content-Type")):
            rec["outcome"] = "unsupported-media-type"
            return problem(415, "send application/json", path)
        return None

    def _decide(self, token: str | None, body: bytes) -> Answer:
        rec = self._record()
        refused = self._refused(REFRESH_PATH, 403, "forbidden", "missing or wrong DeviceToken")
        if refused is not None:
            return refused
        if token is None:
            rec["outcome"] = "bad-request"
            return problem(400, "body must be {\"registrationToken\": \"...\"}", REFRESH_PATH)
        decision = self.site.refresh(token)
        rec["outcome"], rec["reason"] = decision.outcome, decision.reason
        if decision.revoked_child:
            self.note = "revoked-child=%s" % redact(decision.revoked_child)[4:]
        if decision.token is not None:
            rec["issued_sha256"] = sha256_hex(decision.token)
            self.note = ("issued=%s " % redact(decision.token)[4:] + self.note).strip()
            return json_answer(decision.status, self.site.token_object(decision))
        if decision.status == 412:
            return problem(412, "too many refresh requests for this device", REFRESH_PATH,
                           retry_after(self.site.retry_after_412))
        return problem(410, "registration token is %s" % decision.reason, REFRESH_PATH)

    # -- the provisioning endpoints

    def _provisioning(self, path: str) -> None:
        rec = self._record()
        endpoint, method = ("init", "POST") if path == INIT_PATH else ("complete", "PUT")
        if self.command != method:
            rec["outcome"] = "method-not-allowed"
            self._answer(problem(405, "use " + method, path, [("Allow", method)]))
            return
        body = self._read_body()
        rec["body_received"] = bool(body)
        fault = self.site.take_fault(endpoint)
        rec["fault"] = fault.mode if fault else None
        if fault is not None and fault.mode in FAKE_ANSWERS:
            self._fake(fault)
            return
        self._deliver(self._decide_provisioning(endpoint, path, body), fault)

    def _decide_provisioning(self, endpoint: str, path: str, body: bytes) -> Answer:
        rec = self._record()
        refused = self._refused(path, 401, "unauthorized",
                                "missing or wrong DeviceToken (the provisioning token)")
        if refused is not None:
            return refused
        doc = json_object(body)
        if not isinstance(doc, dict):
            rec["outcome"] = "bad-request"
            return problem(400, "body must be a JSON object", path)
        if endpoint == "init":
            device_id = doc.get("deviceId")
            if device_id is not None and not valid_device_id(device_id):
                rec["outcome"] = "bad-request"
                return problem(400, "deviceId must be 4-90 characters of 0-9 a-z A-Z - _ .", path)
            op = self.site.open_operation(device_id)
            rec["outcome"] = "operation-opened"
            self.note = "code=%s device=%s" % (op["code"], op["device"])
            return json_answer(201, {"provisioningOperationId": op["id"],
                                     "verificationCode": op["code"],
                                     "expirationTime": rfc3339(op["expires"])})
        op_id = doc.get("provisioningOperationId")
        if not isinstance(op_id, str):
            rec["outcome"] = "bad-request"
            return problem(400, 'body must be {"provisioningOperationId": "..."}', path)
        decision = self.site.complete_operation(op_id)
        rec["outcome"], rec["reason"] = decision.outcome, decision.reason
        self.note = "op=%s…" % printable(op_id[:6])
        if decision.token is not None:
            rec["issued_sha256"] = sha256_hex(decision.token)
            self.note += " issued=%s" % redact(decision.token)[4:]
            return json_answer(200, self.site.token_object(decision))
        if decision.status == 202:
            return Answer(202, b"", None)
        cancelled = decision.reason == "cancelled"
        return problem(410, "provisioning operation is %s" % decision.reason, path,
                       problem_type=CANCELLED_TYPE if cancelled else "about:blank")

    def _authorized(self) -> bool:
        secret = self.site.device_token
        if secret is None:
            return True
        scheme, _, value = self.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "devicetoken" and hmac.compare_digest(
            value.strip().encode("utf-8", "surrogateescape"), secret.encode("utf-8")
        )

    def _fake(self, fault: Fault) -> None:
        """Answers from a broken proxy, never from the platform: the lineage is untouched."""
        rec, params = self._record(), fault.params
        rec["outcome"] = "fault:" + fault.mode
        if fault.mode == "hang":
            self._hold()
        elif fault.mode == "status":
            status = params["status"]
            self._answer(problem(status, "injected fault", printable(self.path.split("?")[0]),
                                 retry_after(params.get("retry_after"))))
        elif fault.mode == "garbage":
            kind = params.get("body", "notjson")
            self.note = "body=%s" % kind
            self._answer(Answer(params.get("status", 201), garbage_body(kind), "application/json"))
        else:  # redirect
            location = params.get("location") or self.site.url + REFRESH_PATH
            self._answer(Answer(params.get("status", 307), b"", None, [("Location", location)]))

    def _hold(self) -> None:
        """Never answer; keep the connection until the client leaves or the server stops."""
        self._log_request()
        self.conn.settimeout(0.2)
        buf = bytearray(4096)
        while not self.site.stopping.is_set():
            try:
                if self.conn.recv_into(buf) == 0:
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    # -- writing answers

    def _head(self, answer: Answer, length: int | None) -> bytes:
        lines = ["HTTP/1.1 %d %s" % (answer.status, phrase(answer.status)),
                 "Date: " + http_date(self.site.date_now()), "Server: " + self.server_version]
        if answer.ctype:
            lines.append("Content-Type: " + answer.ctype)
        lines += ["%s: %s" % kv for kv in answer.headers]
        if length is None:
            lines.append("Transfer-Encoding: chunked")
        else:
            lines.append("Content-Length: %d" % length)
        lines += ["Connection: close", "", ""]
        return "\r\n".join(lines).encode("latin-1")

    def _answer(self, answer: Answer) -> None:
        body = b"" if self.command == "HEAD" else answer.body
        self._finalize(answer)
        self.conn.sendall(self._head(answer, len(answer.body)) + body)

    def _finalize(self, answer: Answer, answered: bool = True) -> None:
        """Record the answer before its first byte leaves (a client may look at stats then)."""
        if self.rec is not None:
            self.rec["status"] = answer.status
            self.rec["answered"] = answered
        self.conn.finishing = True
        self._log_request()  # now, so the line is there when the client has its answer

    def _deliver(self, answer: Answer, fault: Fault | None) -> None:
        """The platform's real answer, through the transport fault if one is queued."""
        if fault is None:
            self._answer(answer)
            return
        params, mode = fault.params, fault.mode
        self.note = ("fault=%s %s" % (mode, self.note)).strip()
        if mode == "drop_after_commit":
            self._finalize(answer, answered=False)
            self.conn.close("rst" if params.get("rst") else "fin")
        elif mode == "drip":
            self._drip(answer, float(params.get("interval", 1.0)))
        elif mode == "bad_length":
            wrong = len(answer.body) // 2 if params.get("short") else len(answer.body) + int(
                params.get("extra", 64))
            self._finalize(answer)
            self.conn.sendall(self._head(answer, wrong) + answer.body)
            self.conn.close()
        else:  # chunked
            self._chunked(answer, max(1, int(params.get("chunk_size", 64))))

    def _drip(self, answer: Answer, interval: float) -> None:
        data = self._head(answer, len(answer.body)) + answer.body
        self._finalize(answer)
        self.conn.finishing = False  # a drip takes long; stats() must not wait for it
        for i in range(len(data)):
            if i and self.site.stopping.wait(interval):
                return
            if i == len(data) - 1:
                self.conn.finishing = True
            self.conn.sendall(data[i : i + 1])

    def _chunked(self, answer: Answer, size: int) -> None:
        self._finalize(answer)
        self.conn.sendall(self._head(answer, None))
        for start in range(0, len(answer.body), size):
            piece = answer.body[start : start + size]
            self.conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.conn.sendall(b"0\r\n\r\n")

    def _log_request(self) -> None:
        if self.logged:
            return
        self.logged = True
        rec = self.rec or {}
        status = rec.get("status")
        outcome = rec.get("outcome") or "-"
        if rec.get("reason"):
            outcome += "(%s)" % rec["reason"]
        self.site.log(" ".join(filter(None, [
            rfc3339(self.site.now()), self._client(), self.command or "-",
            printable(self.path or "-"), str(status) if status else "---", self.tok_label,
            outcome, self.note,
        ])))

    # -- control API

    def _control(self, path: str) -> None:
        self.site.ledger.control_request()
        if not is_loopback(self.client_address[0]):
            self._answer(problem(403, "the control API answers loopback clients only", path))
            return
        body = self._read_body()
        try:
            doc = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ProblemError(problem(400, "control body must be JSON", path)) from None
        if not isinstance(doc, dict):
            raise ProblemError(problem(400, "control body must be a JSON object", path))
        query = {k: v[-1] for k, v in parse_qs(self.path.partition("?")[2]).items()}
        try:
            result = self.site.control(self.command, path[len(CONTROL_PREFIX):], doc, query)
        except (TypeError, ValueError) as exc:
            raise ProblemError(problem(400, str(exc), path)) from None
        if result is None:
            raise ProblemError(problem(404, "no such control endpoint", path))
        self.note = "control"
        self._answer(json_answer(200, result))
