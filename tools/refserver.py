#!/usr/bin/env python3
"""Reference server for the registration-token refresh API (docs: refresh-api.md).

Behaves like the platform for `PUT /devices/registration-tokens/refresh`: token lineages in
SQLite, 201 rotation with a grace period for the parent, 200 recovery after a lost answer,
403/410/412/415/400 problems. Adds what the platform cannot: an injectable clock, fault
injection for hostile-network tests, wire-level byte counts and a loopback-only control API.

CPython stdlib only; trustme/cryptography are imported lazily, for TLS certificates only.

    python tools/refserver.py serve --port 8080 --lifetime 60 --grace 30 [--tls]
    python tools/refserver.py mint --db refserver.sqlite3 --out token.json

Tokens are secrets: nothing here logs more than the first 6 characters and the length.
"""

from __future__ import annotations

import argparse
import base64
import collections
import contextlib
import datetime
import email.utils
import enum
import functools
import hashlib
import hmac
import http
import io
import ipaddress
import json
import os
import secrets
import signal
import socket
import socketserver
import sqlite3
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

REFRESH_PATH = "/devices/registration-tokens/refresh"
INIT_PATH = "/provisioning-operations/init"
COMPLETE_PATH = "/provisioning-operations/complete"
CANCELLED_TYPE = "https://refserver.invalid/problems/provisioningOperationCancelled"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read off a serial console
DEVICE_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")
FAULT_ENDPOINTS = ("refresh", "init", "complete")
CONTROL_PREFIX = "/_control/"
TOKEN_BYTES = 186  # base64 of 186 bytes is 248 characters, like the platform's ~250
MAX_BODY = 64 * 1024  # a refresh body is ~300 bytes; anything huge is hostile
MAX_RECORDS = 10000  # stats history kept, so a server left running for days stays small
JSON_TYPES = ("application/json", "application/json-patch+json", "text/json")
TIME_FORMATS = ("z", "offset", "mixed")
FAULT_MODES = (
    "status", "drop_after_commit", "garbage", "hang", "drip", "bad_length", "chunked", "redirect",
)
# Faults that answer instead of the platform: the lineage is never touched.
FAKE_ANSWERS = ("status", "garbage", "redirect", "hang")
GARBAGE_KINDS = ("notjson", "missing", "nonstring", "empty", "control", "huge", "badtime", "array")

if TYPE_CHECKING:
    import trustme

_T = TypeVar("_T")


class _Unset(enum.Enum):
    UNSET = 0


_UNSET = _Unset.UNSET


# ---------------------------------------------------------------- small helpers


def new_token() -> str:
    return base64.b64encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii")


def sha256_hex(token: str) -> str:
    # surrogatepass: a hostile client can send lone surrogates as JSON escapes.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _printable(text: str, limit: int = 120) -> str:
    """Client-controlled text made safe for a one-line log."""
    out = "".join(c if c.isprintable() else "\\x%02x" % (ord(c) & 0xFF) for c in text[:limit])
    return out + ("…" if len(text) > limit else "")


def redact(token: object) -> str:
    """`tok=AbC123…(248)`: enough to tell tokens apart in a log, useless to an attacker."""
    if not isinstance(token, str):
        return "tok=-"
    return "tok=%s…(%d)" % (_printable(token[:6]), len(token))


def rfc3339(ts: float | None, style: str = "z") -> str | None:
    """`2024-11-28T14:03:07.316Z` (z) or `2021-11-12T14:00:00+00:00` (offset).

    Truncates (never rounds up) so a client never believes in a later expiry than the real one.
    """
    if ts is None:
        return None
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if style == "offset":
        return dt.isoformat(timespec="seconds")
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def is_loopback(host: str) -> bool:
    """Whether a peer address may use the control API (IPv4-mapped IPv6 included)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def parse_lifetime(text: str) -> float | None:
    """CLI value: seconds (float) or `null` for tokens that never expire."""
    if text.strip().lower() in ("null", "none"):
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("lifetime must be >= 0 or null")
    return value


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status %d" % status


def _print_line(line: str) -> None:
    print(line, flush=True)


def _write_private(path: Path, data: bytes) -> None:
    """Write a secret atomically with mode 0600 (a token file or a private key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a leftover tmp file
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ---------------------------------------------------------------- token store


@dataclass
class Decision:
    """What the platform decided for one refresh request."""

    status: int
    outcome: str  # rotated | recovered(200) | gone | rate-limited
    reason: str | None = None  # for 410: unknown | expired | revoked | revoked-child
    token: str | None = None  # the issued token
    expires: float | None = None
    revoked_child: str | None = None


class RateLimiter:
    """Sliding window per lineage; every request with a known token counts, 410s included,
    because a device hammering after a 410 should feed the limit as on the platform."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, device: str, now: float) -> bool:
        if self.limit <= 0:
            return True
        with self._lock:
            hits = self._hits.setdefault(device, collections.deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            hits.append(now)
            return len(hits) <= self.limit

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()


SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    parent TEXT,
    created REAL NOT NULL,
    expires REAL,
    revoked_at REAL,
    child TEXT
);
CREATE INDEX IF NOT EXISTS tokens_device ON tokens(device);
"""


class TokenStore:
    """Token lineages in SQLite, so a restarted server still knows every device."""

    def __init__(self, path: str) -> None:
        # Autocommit plus explicit BEGIN IMMEDIATE: a `mint` from another process may write
        # to the same file while the server runs.
        self._db = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _txn(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def mint(self, now: float, lifetime: float | None) -> tuple[str, float | None, str]:
        """A new lineage with its first token -> (token, expires, device)."""
        device = secrets.token_hex(6)
        with self._txn() as db:
            token, expires = self._insert(db, device, None, now, lifetime)
        return token, expires, device

    def refresh(
        self,
        token: str,
        now: float,
        lifetime: float | None,
        grace: float,
        admit: Callable[[str], bool],
    ) -> Decision:
        with self._txn() as db:
            row = self._row(db, token)
            if row is None:
                return Decision(410, "gone", "unknown")
            if not admit(row["device"]):
                return Decision(412, "rate-limited")
            reason = self._invalid_reason(db, row, now)
            if reason:
                return Decision(410, "gone", reason)
            if row["child"] is None:
                return self._rotate(db, row, now, lifetime, grace)
            return self._recover(db, row, now, lifetime)

    def _rotate(
        self, db: sqlite3.Connection, row: sqlite3.Row, now: float, lifetime: float | None,
        grace: float,
    ) -> Decision:
        child, expires = self._insert(db, row["device"], row["token"], now, lifetime)
        db.execute(
            "UPDATE tokens SET child = ?, revoked_at = ? WHERE token = ?",
            (child, now + grace, row["token"]),
        )
        self._revoke(db, row["parent"], now)  # the grandparent goes at once
        return Decision(201, "rotated", token=child, expires=expires)

    def _recover(
        self, db: sqlite3.Connection, row: sqlite3.Row, now: float, lifetime: float | None
    ) -> Decision:
        # The device lost our earlier answer: that child was never stored, so it dies now;
        # the parent's grace deadline stays where the first rotation put it.
        lost = row["child"]
        self._revoke(db, lost, now)
        child, expires = self._insert(db, row["device"], row["token"], now, lifetime)
        db.execute("UPDATE tokens SET child = ? WHERE token = ?", (child, row["token"]))
        self._revoke(db, row["parent"], now)
        return Decision(200, "recovered(200)", token=child, expires=expires, revoked_child=lost)

    @staticmethod
    def _insert(
        db: sqlite3.Connection, device: str, parent: str | None, now: float,
        lifetime: float | None,
    ) -> tuple[str, float | None]:
        token = new_token()
        expires = None if lifetime is None else now + lifetime
        db.execute(
            "INSERT INTO tokens (token, device, parent, created, expires) VALUES (?, ?, ?, ?, ?)",
            (token, device, parent, now, expires),
        )
        return token, expires

    @staticmethod
    def _revoke(db: sqlite3.Connection, token: str | None, now: float) -> None:
        if token is not None:
            db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE token = ? "
                "AND (revoked_at IS NULL OR revoked_at > ?)",
                (now, token, now),
            )

    @staticmethod
    def _row(db: sqlite3.Connection, token: str) -> sqlite3.Row | None:
        cur = db.execute("SELECT * FROM tokens WHERE token = ?", (token,))
        row: sqlite3.Row | None = cur.fetchone()
        return row

    def _invalid_reason(self, db: sqlite3.Connection, row: sqlite3.Row, now: float) -> str | None:
        if row["revoked_at"] is not None and row["revoked_at"] <= now:
            parent = self._row(db, row["parent"]) if row["parent"] else None
            lost = parent is not None and parent["child"] != row["token"] and not row["child"]
            return "revoked-child" if lost else "revoked"
        if row["expires"] is not None and row["expires"] <= now:
            return "expired"
        return None

    def lineage(self, now: float, device: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM tokens" + (" WHERE device = ?" if device else "") + " ORDER BY rowid"
        with self._lock:
            rows = self._db.execute(sql, (device,) if device else ()).fetchall()
        return [self._describe(row, now) for row in rows]

    @staticmethod
    def _describe(row: sqlite3.Row, now: float) -> dict[str, Any]:
        revoked_at = row["revoked_at"]
        if revoked_at is None:
            state = "current"
        else:
            state = "grace" if revoked_at > now else "revoked"
        expires = row["expires"]
        return {
            "sha256": sha256_hex(row["token"]),
            "parent_sha256": sha256_hex(row["parent"]) if row["parent"] else None,
            "device": row["device"],
            "state": state,
            "created": row["created"],
            "expires": expires,
            "expired": expires is not None and expires <= now,
            "revoked_at": revoked_at,
        }


# ---------------------------------------------------------------- provisioning operations


OPS_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    device_id TEXT,
    device TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    state TEXT NOT NULL,
    completions INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS operations_code ON operations(code);
"""


class OperationError(Exception):
    """An operator's approve/cancel that cannot be done; the message says why."""


def normalize_code(text: str) -> str:
    """`abcd efgh`, `ABCD-EFGH`: what an operator types, as the code is stored."""
    letters = "".join(c for c in text.upper() if c.isalnum())
    return letters[:4] + "-" + letters[4:] if len(letters) == 8 else text.strip()


def new_code() -> str:
    return normalize_code("".join(secrets.choice(CODE_ALPHABET) for _ in range(8)))


class Operations:
    """Provisioning operations, in the TokenStore's SQLite file beside the lineages.

    init opens one (pending, with a lifetime); an operator approves or cancels it by its
    verification code or id; complete answers 202 while pending, and for an approved one
    a new token in the operation's lineage, revoking every earlier token of that lineage
    (so completing again after a lost answer gives a new token and kills the old one).
    """

    def __init__(self, store: TokenStore) -> None:
        self.store = store
        with store._lock:
            store._db.executescript(OPS_SCHEMA)

    def init(self, device_id: str | None, now: float, lifetime: float) -> dict[str, Any]:
        op_id = secrets.token_urlsafe(24)
        device = device_id or "op-" + secrets.token_hex(6)
        with self.store._txn() as db:
            live = {r[0] for r in db.execute(
                "SELECT code FROM operations WHERE expires > ? AND state != 'cancelled'", (now,))}
            code = new_code()
            while code in live:
                code = new_code()
            db.execute("INSERT INTO operations (id, code, device_id, device, created, expires, "
                       "state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                       (op_id, code, device_id, device, now, now + lifetime))
        return {"id": op_id, "code": code, "expires": now + lifetime, "device": device}

    def complete(self, op_id: str, now: float, lifetime: float | None) -> Decision:
        with self.store._txn() as db:
            row = db.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
            if row is None:
                return Decision(410, "gone", "unknown-operation")
            if row["state"] == "cancelled":
                return Decision(410, "gone", "cancelled")
            if row["expires"] <= now:
                return Decision(410, "gone", "expired-operation")
            if row["state"] != "approved":
                return Decision(202, "pending")
            db.execute("UPDATE tokens SET revoked_at = ? WHERE device = ? "
                       "AND (revoked_at IS NULL OR revoked_at > ?)", (now, row["device"], now))
            token, expires = self.store._insert(db, row["device"], None, now, lifetime)
            db.execute("UPDATE operations SET completions = completions + 1 WHERE id = ?",
                       (op_id,))
        return Decision(200, "provisioned", token=token, expires=expires)

    def decide(self, key: str, state: str, now: float) -> dict[str, Any]:
        """Approve (state 'approved') or cancel ('cancelled') the live operation whose
        verification code or id is `key`."""
        with self.store._txn() as db:
            rows = db.execute("SELECT * FROM operations WHERE id = ? OR code = ? "
                              "ORDER BY created DESC", (key, normalize_code(key))).fetchall()
            live = [r for r in rows if r["expires"] > now]
            if not rows:
                raise OperationError("no provisioning operation with code or id %r"
                                     % _printable(key, 40))
            if not live:
                raise OperationError("operation %s expired: the device starts a new one with "
                                     "a new code" % rows[0]["code"])
            row = live[0]
            if row["state"] == "cancelled":
                raise OperationError("operation %s was cancelled" % row["code"])
            db.execute("UPDATE operations SET state = ? WHERE id = ?", (state, row["id"]))
            row = db.execute("SELECT * FROM operations WHERE id = ?", (row["id"],)).fetchone()
        return self._describe(row, now)

    def list(self, now: float) -> list[dict[str, Any]]:
        with self.store._lock:
            rows = self.store._db.execute("SELECT * FROM operations ORDER BY rowid").fetchall()
        return [self._describe(r, now) for r in rows]

    @staticmethod
    def _describe(row: sqlite3.Row, now: float) -> dict[str, Any]:
        return {"id": row["id"], "code": row["code"], "device_id": row["device_id"],
                "device": row["device"], "state": row["state"], "created": row["created"],
                "expires": row["expires"], "expired": row["expires"] <= now,
                "completions": row["completions"]}


def valid_device_id(value: object) -> bool:
    return isinstance(value, str) and 4 <= len(value) <= 90 and set(value) <= DEVICE_ID_CHARS


# ---------------------------------------------------------------- TLS files


@dataclass
class TlsFiles:
    ca_der: Path  # what a device's ca_file gets
    ca_pem: Path
    server_pem: Path  # certificate chain and private key in one file


def lan_ipv4_addresses() -> list[str]:
    """Non-loopback IPv4 addresses a board on the LAN may use to reach this host."""
    found: set[str] = set()
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            found.add(str(info[4][0]))
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))  # a UDP connect sends nothing; it picks the route
        found.add(udp.getsockname()[0])
    return sorted(a for a in found if a != "0.0.0.0" and not ipaddress.ip_address(a).is_loopback)


def load_or_create_ca(directory: str | os.PathLike[str]) -> trustme.CA:
    """The local CA in `directory`, created once: devices provisioned with its ca.der must
    keep trusting every later server certificate."""
    import trustme  # lazily: plain http needs no third-party package

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "ca.pem", folder / "ca.key.pem"
    if cert_path.exists() and key_path.exists():
        ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
    else:
        ca = trustme.CA(organization_name="refserver local CA")
        _write_private(key_path, ca.private_key_pem.bytes())
        cert_path.write_bytes(ca.cert_pem.bytes())
    der = ssl.PEM_cert_to_DER_cert(cert_path.read_text())
    (folder / "ca.der").write_bytes(der)
    return ca


def ensure_tls(
    directory: str | os.PathLike[str], sans: Iterable[str] = (), lan: bool = False
) -> TlsFiles:
    """CA (reused) plus a fresh server certificate for localhost, 127.0.0.1 and `sans`."""
    folder = Path(directory)
    ca = load_or_create_ca(folder)
    hosts = ["localhost", "127.0.0.1", *sans, *(lan_ipv4_addresses() if lan else [])]
    leaf = ca.issue_cert(*dict.fromkeys(hosts))
    server_pem = folder / "server.pem"
    _write_private(server_pem, leaf.private_key_and_cert_chain_pem.bytes())
    return TlsFiles(folder / "ca.der", folder / "ca.pem", server_pem)


def make_tls_files(
    directory: str | os.PathLike[str],
    hosts: Iterable[str],
    *,
    expired: bool = False,
    self_signed: bool = False,
) -> tuple[Path, Path, Path]:
    """(ca_der, certfile, keyfile) for tests. ca_der is the CA a device trusts; the server
    certificate is for `hosts` (pass another name for a wrong-host test), expired if asked,
    or self-signed, i.e. not issued by that CA at all."""
    folder = Path(directory)
    ca = load_or_create_ca(folder)
    names = list(hosts)
    certfile, keyfile = folder / "server-cert.pem", folder / "server-key.pem"
    if self_signed:
        cert_pem, key_pem = _self_signed(names)
    else:
        now = datetime.datetime.now(datetime.timezone.utc)
        window: dict[str, Any] = {}
        if expired:
            window = {"not_before": now - datetime.timedelta(days=30),
                      "not_after": now - datetime.timedelta(days=1)}
        leaf = ca.issue_cert(*names, **window)
        cert_pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        key_pem = leaf.private_key_pem.bytes()
    certfile.write_bytes(cert_pem)
    _write_private(keyfile, key_pem)
    return folder / "ca.der", certfile, keyfile


def _self_signed(hosts: list[str]) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    sans: list[x509.GeneralName] = []
    for host in hosts:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# ---------------------------------------------------------------- the wire


class WireConn:
    """One accepted TCP connection.

    Counts bytes at the socket, TLS records and handshakes included, so benchmarks see wire
    bytes. That is why TLS runs here through memory BIOs: ssl.SSLSocket reads the file
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


class _RawReader(io.RawIOBase):
    def __init__(self, conn: WireConn) -> None:
        super().__init__()
        self._conn = conn

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._conn.recv_into(buffer)


class _Writer(io.BufferedIOBase):
    """wfile for BaseHTTPRequestHandler (it writes only for 100-continue)."""

    def __init__(self, conn: WireConn) -> None:
        super().__init__()
        self._conn = conn

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._conn.sendall(data)
        return len(data)


# ---------------------------------------------------------------- faults and answers


@dataclass
class Fault:
    mode: str
    params: dict[str, Any]


def _check_fault(mode: str, count: int, params: dict[str, Any]) -> None:
    if mode not in FAULT_MODES:
        raise ValueError("unknown fault mode %r (one of %s)" % (mode, ", ".join(FAULT_MODES)))
    if params.get("endpoint", "refresh") not in FAULT_ENDPOINTS:
        raise ValueError("endpoint must be one of %s" % ", ".join(FAULT_ENDPOINTS))
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be an integer >= 1")
    if mode == "status" and not _is_status(params.get("status")):
        raise ValueError("status fault needs an HTTP status (100..599)")
    if mode == "garbage" and params.get("body", "notjson") not in GARBAGE_KINDS:
        raise ValueError("garbage body must be one of %s" % ", ".join(GARBAGE_KINDS))
    if mode == "redirect" and not isinstance(params.get("location", ""), str):
        raise ValueError("redirect location must be a string")
    if "status" in params and not _is_status(params["status"]):
        raise ValueError("status must be an HTTP status (100..599)")
    for key in ("interval", "extra", "chunk_size"):
        value = params.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("%s must be a number >= 0" % key)


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


@dataclass
class Answer:
    status: int
    body: bytes = b""
    ctype: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def problem(status: int, detail: str | None = None, instance: str | None = None,
            headers: list[tuple[str, str]] | None = None) -> Answer:
    doc = {"type": "about:blank", "title": _phrase(status), "status": status,
           "detail": detail, "instance": instance}
    return Answer(status, json.dumps(doc).encode(), "application/problem+json", headers or [])


def json_answer(status: int, obj: Any) -> Answer:
    return Answer(status, json.dumps(obj).encode(), "application/json")


def _retry_after(value: object) -> list[tuple[str, str]]:
    if value is None:
        return []
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [("Retry-After", str(value))]  # a string passes through: HTTP-dates, junk tests


def garbage_body(kind: str) -> bytes:
    """A broken token object. Any token in it is random and unknown to the store."""
    tok = new_token()
    if kind == "notjson":
        return b"<html><body>502 Bad Gateway</body></html>"
    docs: dict[str, Any] = {
        "missing": {"expirationTime": None},
        "nonstring": {"registrationToken": 123, "expirationTime": None},
        "empty": {"registrationToken": "", "expirationTime": None},
        "control": {"registrationToken": tok[:100] + "\u0001" + tok[100:], "expirationTime": None},
        "huge": {"registrationToken": "A" * (1 << 20), "expirationTime": None},
        "badtime": {"registrationToken": tok, "expirationTime": "yesterday"},
        "array": [{"registrationToken": tok, "expirationTime": None}],
    }
    return json.dumps(docs[kind]).encode()


def _media_type_ok(value: str | None) -> bool:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES:
        return True
    return media.startswith("application/") and media.endswith("+json")


def _presented_token(body: bytes) -> str | None:
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):  # [[[[... nests deep cheaply
        return None
    token = doc.get("registrationToken") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None


class _Problem(Exception):
    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


# ---------------------------------------------------------------- HTTP handler


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True  # server_close() joins handler threads
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], ref: RefServer) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.ref = ref
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for
        # seconds on a machine without DNS; we never need the name.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        return self.ref._accepted(sock), addr

    def shutdown_request(self, request: Any) -> None:
        self.ref._finished(request)

    def close_request(self, request: Any) -> None:
        request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.ref._log_error("handler error from %s" % (client_address,))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "refserver/1"
    server: _HTTPServer

    def setup(self) -> None:
        self.conn: WireConn = self.request
        self.ref = self.server.ref
        self.conn.settimeout(self.ref.handler_timeout)
        self.rfile = io.BufferedReader(_RawReader(self.conn))
        self.wfile = _Writer(self.conn)
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
            if self.ref._tls_ctx is not None and not self._handshake():
                return
            self.close_connection = True
            self.handle_one_request()
        except OSError as exc:  # the client vanished or timed out; nothing to answer
            self.note = ("%s client-gone(%s)" % (self.note, type(exc).__name__)).strip()
        except Exception as exc:  # a hostile request must never take the server down
            self.ref._log_error("unexpected %s: %s" % (type(exc).__name__, exc))
        finally:
            if self.rec is not None or self.command:
                self._log_request()

    def _handshake(self) -> bool:
        assert self.ref._tls_ctx is not None
        try:
            self.conn.start_tls(self.ref._tls_ctx)
            return True
        except OSError as exc:  # ssl.SSLError is an OSError; so are timeouts and resets
            self.ref._tls_failed(self.client_address, exc)
            return False

    # -- http.server hooks

    def log_message(self, format: str, *args: Any) -> None:
        self.ref._log("%s %s" % (self._client(), _printable(format % args, 200)))

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        rec = self._record()
        rec["outcome"] = "http-error"
        self._answer(problem(code, explain or message, _printable(self.path or "")))

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
                self._answer(problem(404, "no such endpoint", _printable(path)))
        except _Problem as exc:
            if self.rec is not None:
                self.rec["outcome"] = self.rec["outcome"] or "bad-request"
            self._answer(exc.answer)

    def _client(self) -> str:
        host, port = self.client_address[:2]
        return "%s:%s" % (host, port)

    def _record(self) -> dict[str, Any]:
        if self.rec is None:
            self.rec = self.ref._new_record(self.conn, {
                "client": self._client(), "method": self.command,
                "path": _printable(self.path or ""),
            })
        return self.rec

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "identity").lower() != "identity":
            raise _Problem(problem(501, "chunked request bodies are not supported"))
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise _Problem(problem(400, "bad Content-Length")) from None
        if size < 0:
            raise _Problem(problem(400, "bad Content-Length"))
        if size > MAX_BODY:
            raise _Problem(problem(413, "body larger than %d bytes" % MAX_BODY))
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
        token = _presented_token(body)
        if token is not None:
            rec["token_sha256"] = sha256_hex(token)
            self.tok_label = redact(token)
        fault = self.ref._take_fault()
        rec["fault"] = fault.mode if fault else None
        if fault is not None and fault.mode in FAKE_ANSWERS:
            self._fake(fault)
            return
        answer = self._decide(token, body)
        self._deliver(answer, fault)

    def _decide(self, token: str | None, body: bytes) -> Answer:
        rec = self._record()
        if not self._authorized():
            rec["outcome"] = "forbidden"
            return problem(403, "missing or wrong DeviceToken", REFRESH_PATH)
        if not _media_type_ok(self.headers.get("Content-Type")):
            rec["outcome"] = "unsupported-media-type"
            return problem(415, "send application/json", REFRESH_PATH)
        if token is None:
            rec["outcome"] = "bad-request"
            return problem(400, "body must be {\"registrationToken\": \"...\"}", REFRESH_PATH)
        decision = self.ref._refresh(token)
        rec["outcome"], rec["reason"] = decision.outcome, decision.reason
        if decision.revoked_child:
            self.note = "revoked-child=%s" % redact(decision.revoked_child)[4:]
        if decision.token is not None:
            rec["issued_sha256"] = sha256_hex(decision.token)
            self.note = ("issued=%s " % redact(decision.token)[4:] + self.note).strip()
            return json_answer(decision.status, self.ref._token_object(decision))
        if decision.status == 412:
            return problem(412, "too many refresh requests for this device", REFRESH_PATH,
                           _retry_after(self.ref.retry_after_412))
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
        fault = self.ref._take_fault(endpoint)
        rec["fault"] = fault.mode if fault else None
        if fault is not None and fault.mode in FAKE_ANSWERS:
            self._fake(fault)
            return
        self._deliver(self._decide_provisioning(endpoint, path, body), fault)

    def _decide_provisioning(self, endpoint: str, path: str, body: bytes) -> Answer:
        rec = self._record()
        if not self._authorized():
            rec["outcome"] = "unauthorized"
            return problem(401, "missing or wrong DeviceToken (the provisioning token)", path)
        if not _media_type_ok(self.headers.get("Content-Type")):
            rec["outcome"] = "unsupported-media-type"
            return problem(415, "send application/json", path)
        try:
            doc = json.loads(body.decode("utf-8")) if body.strip() else None
        except (UnicodeDecodeError, ValueError, RecursionError):
            doc = None
        if not isinstance(doc, dict):
            rec["outcome"] = "bad-request"
            return problem(400, "body must be a JSON object", path)
        if endpoint == "init":
            device_id = doc.get("deviceId")
            if device_id is not None and not valid_device_id(device_id):
                rec["outcome"] = "bad-request"
                return problem(400, "deviceId must be 4-90 characters of 0-9 a-z A-Z - _ .", path)
            op = self.ref._init_operation(device_id)
            rec["outcome"] = "operation-opened"
            self.note = "code=%s device=%s" % (op["code"], op["device"])
            return json_answer(201, {"provisioningOperationId": op["id"],
                                     "verificationCode": op["code"],
                                     "expirationTime": rfc3339(op["expires"])})
        op_id = doc.get("provisioningOperationId")
        if not isinstance(op_id, str):
            rec["outcome"] = "bad-request"
            return problem(400, 'body must be {"provisioningOperationId": "..."}', path)
        decision = self.ref._complete_operation(op_id)
        rec["outcome"], rec["reason"] = decision.outcome, decision.reason
        self.note = "op=%s…" % _printable(op_id[:6])
        if decision.token is not None:
            rec["issued_sha256"] = sha256_hex(decision.token)
            self.note += " issued=%s" % redact(decision.token)[4:]
            return json_answer(200, self.ref._token_object(decision))
        if decision.status == 202:
            return Answer(202, b"", None)
        answer = problem(410, "provisioning operation is %s" % decision.reason, path)
        if decision.reason == "cancelled":
            doc = json.loads(answer.body)
            doc["type"] = CANCELLED_TYPE
            answer.body = json.dumps(doc).encode()
        return answer

    def _authorized(self) -> bool:
        secret = self.ref.device_token
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
            self._answer(problem(status, "injected fault", _printable(self.path.split("?")[0]),
                                 _retry_after(params.get("retry_after"))))
        elif fault.mode == "garbage":
            kind = params.get("body", "notjson")
            self.note = "body=%s" % kind
            self._answer(Answer(params.get("status", 201), garbage_body(kind), "application/json"))
        else:  # redirect
            location = params.get("location") or self.ref.url + REFRESH_PATH
            self._answer(Answer(params.get("status", 307), b"", None, [("Location", location)]))

    def _hold(self) -> None:
        """Never answer; keep the connection until the client leaves or the server stops."""
        self._log_request()
        self.conn.settimeout(0.2)
        buf = bytearray(4096)
        while not self.ref._stopping.is_set():
            try:
                if self.conn.recv_into(buf) == 0:
                    return
            except TimeoutError:
                continue
            except OSError:
                return

    # -- writing answers

    def _head(self, answer: Answer, length: int | None) -> bytes:
        lines = ["HTTP/1.1 %d %s" % (answer.status, _phrase(answer.status)),
                 "Date: " + http_date(self.ref.now()), "Server: " + self.server_version]
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
            if i and self.ref._stopping.wait(interval):
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
        self.ref._log(" ".join(filter(None, [
            rfc3339(self.ref.now()), self._client(), self.command or "-",
            _printable(self.path or "-"), str(status) if status else "---", self.tok_label,
            outcome, self.note,
        ])))

    # -- control API

    def _control(self, path: str) -> None:
        self.ref._count_control()
        if not is_loopback(self.client_address[0]):
            self._answer(problem(403, "the control API answers loopback clients only", path))
            return
        body = self._read_body()
        try:
            doc = json.loads(body.decode("utf-8")) if body.strip() else {}
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _Problem(problem(400, "control body must be JSON", path)) from None
        if not isinstance(doc, dict):
            raise _Problem(problem(400, "control body must be a JSON object", path))
        query = {k: v[-1] for k, v in parse_qs(self.path.partition("?")[2]).items()}
        try:
            result = self.ref._control(self.command, path[len(CONTROL_PREFIX):], doc, query)
        except (TypeError, ValueError) as exc:
            raise _Problem(problem(400, str(exc), path)) from None
        if result is None:
            raise _Problem(problem(404, "no such control endpoint", path))
        self.note = "control"
        self._answer(json_answer(200, result))


# ---------------------------------------------------------------- the server


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
        log: Callable[[str], Any] | None = _print_line,
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
        self.store = TokenStore(db)
        self.operations = Operations(self.store)
        self.op_lifetime = op_lifetime
        self._tls = tls
        self._tls_ctx: ssl.SSLContext | None = None
        self._clock = clock or time.time
        self._offset = 0.0
        self._logfn = log
        self._limiter = RateLimiter(rate_limit, rate_window)
        self._cond = threading.Condition()  # guards everything below
        self._faults: collections.deque[Fault] = collections.deque()
        self._records: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_RECORDS)
        self._active: dict[int, WireConn] = {}
        self._conn_seq = 0
        self._connections = 0
        self._tls_failures = 0
        self._control_requests = 0
        self._issued = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> RefServer:
        if self._httpd is not None:
            return self
        self._tls_ctx = self._make_tls_context()
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), self)
        self.port = self._httpd.server_address[1]
        scheme = "https" if self._tls_ctx else "http"
        shown = "[%s]" % self.host if ":" in self.host else self.host
        self.url = "%s://%s:%d" % (scheme, _connect_host(self.host), self.port)
        self._log("listening on %s://%s:%d" % (scheme, shown, self.port))
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
        self._stopping.set()
        httpd.shutdown()  # no more accepts once this returns
        with self._cond:
            active = list(self._active.values())
        for conn in active:
            conn.shutdown()  # wakes handlers blocked reading an idle client
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self.store.close()

    def __enter__(self) -> RefServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- clock

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the server clock forward (tokens expire without sleeping) -> new now()."""
        with self._cond:
            self._offset += seconds
        return self.now()

    def set_clock_offset(self, offset: float) -> None:
        with self._cond:
            self._offset = float(offset)

    # -- tokens

    def mint(self, lifetime: float | None | _Unset = _UNSET) -> dict[str, Any]:
        """A new lineage -> its first token object (what provisioning gives a device)."""
        life = self.lifetime if lifetime is _UNSET else lifetime
        token, expires, _device = self.store.mint(self.now(), life)
        return self._token_object(Decision(201, "minted", token=token, expires=expires))

    def _token_object(self, decision: Decision) -> dict[str, Any]:
        style = self.time_format
        if style == "mixed":
            with self._cond:
                self._issued += 1
                style = "z" if self._issued % 2 else "offset"
        return {"registrationToken": decision.token,
                "expirationTime": rfc3339(decision.expires, style)}

    def _refresh(self, token: str) -> Decision:
        now = self.now()
        return self.store.refresh(token, now, self.lifetime, self.grace,
                                  lambda device: self._limiter.admit(device, now))

    def lineage(self, device: str | None = None) -> list[dict[str, Any]]:
        return self.store.lineage(self.now(), device)

    # -- provisioning operations

    def _init_operation(self, device_id: str | None) -> dict[str, Any]:
        return self.operations.init(device_id, self.now(), self.op_lifetime)

    def _complete_operation(self, op_id: str) -> Decision:
        return self.operations.complete(op_id, self.now(), self.lifetime)

    def approve(self, key: str) -> dict[str, Any]:
        """The operator approves the live operation with this verification code or id."""
        return self.operations.decide(key, "approved", self.now())

    def cancel(self, key: str) -> dict[str, Any]:
        return self.operations.decide(key, "cancelled", self.now())

    def list_operations(self) -> list[dict[str, Any]]:
        return self.operations.list(self.now())

    def current_sha256(self, device: str | None = None) -> str | None:
        """sha256 of the lineage's newest non-revoked token (None if there is none)."""
        rows = self.lineage(device)
        if device is None and len({r["device"] for r in rows}) > 1:
            raise ValueError("several lineages: pass device=")
        current = [r["sha256"] for r in rows if r["state"] == "current"]
        return current[-1] if current else None

    # -- faults and stats

    def fault(self, mode: str, count: int = 1, **params: Any) -> int:
        """Queue `mode` for the next `count` requests to `endpoint` (refresh, init or
        complete; default refresh) -> faults now pending."""
        _check_fault(mode, count, params)
        with self._cond:
            self._faults.extend(Fault(mode, dict(params)) for _ in range(count))
            return len(self._faults)

    def _take_fault(self, endpoint: str = "refresh") -> Fault | None:
        """The first queued fault for this endpoint (params["endpoint"], default refresh)."""
        with self._cond:
            for fault in self._faults:
                if fault.params.get("endpoint", "refresh") == endpoint:
                    self._faults.remove(fault)
                    return fault
            return None

    def reset(self) -> None:
        """Clear faults, stats and rate-limit windows; the token db stays."""
        with self._cond:
            self._faults.clear()
            self._records.clear()
            self._connections = self._tls_failures = self._control_requests = 0
        self._limiter.reset()

    def stats(self, settle: float = 2.0) -> dict[str, Any]:
        """Per-request records and connection counters. Waits (at most `settle` s) for
        connections whose answer is leaving, so the byte counts a client sees are final."""
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
                "faults_pending": len(self._faults),
            }

    @staticmethod
    def _sync(conn: WireConn) -> None:
        for rec in conn.records:
            rec["bytes_in"], rec["bytes_out"] = conn.bytes_in, conn.bytes_out

    # -- control API (HTTP) -> JSON result, None for an unknown endpoint

    def _control(
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

    # -- bookkeeping called from the HTTP server

    def _accepted(self, sock: socket.socket) -> WireConn:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # drip: 1 byte = 1 segment
        with self._cond:
            self._conn_seq += 1
            self._connections += 1
            conn = WireConn(sock, self._conn_seq)
            self._active[conn.id] = conn
        return conn

    def _finished(self, conn: WireConn) -> None:
        conn.close()
        with self._cond:
            self._active.pop(conn.id, None)
            self._sync(conn)
            self._cond.notify_all()

    def _new_record(self, conn: WireConn, fields: dict[str, Any]) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "time": self.now(), "connection_id": conn.id, "status": None, "outcome": None,
            "reason": None, "fault": None, "token_sha256": None, "issued_sha256": None,
            "body_received": False, "answered": False, "bytes_in": 0, "bytes_out": 0,
        }
        rec.update(fields)
        with self._cond:
            self._records.append(rec)
            conn.records.append(rec)
        return rec

    def _tls_failed(self, client: Any, exc: BaseException) -> None:
        with self._cond:
            self._tls_failures += 1
        self._log("%s %s:%s TLS handshake failed: %s" % (
            rfc3339(self.now()), client[0], client[1], _printable(str(exc), 160)))

    def _count_control(self) -> None:
        with self._cond:
            self._control_requests += 1

    def _log(self, line: str) -> None:
        if self._logfn is not None:
            self._logfn(line)

    def _log_error(self, line: str) -> None:
        self._log("%s error: %s" % (rfc3339(self.now()), line))


def _connect_host(host: str) -> str:
    """Where a local client connects for a bind address (the wildcard is not a host)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return "[%s]" % host if ":" in host else host


# ---------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refserver.py", description="Reference server for the token refresh API."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 for a board on the LAN")
    serve.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    serve.add_argument("--port-file", help="write the bound port number here")
    serve.add_argument("--db", default="refserver.sqlite3")
    serve.add_argument("--lifetime", type=parse_lifetime, default=60.0, help="seconds or null")
    serve.add_argument("--grace", type=float, default=30.0)
    serve.add_argument("--rate-limit", type=int, default=0, help="requests per window; 0 = off")
    serve.add_argument("--rate-window", type=float, default=60.0)
    serve.add_argument("--retry-after-412", type=float, default=None)
    serve.add_argument(
        "--device-token", default=os.environ.get("REFSERVER_DEVICE_TOKEN"),
        help="require Authorization: DeviceToken SECRET (default: $REFSERVER_DEVICE_TOKEN, "
        "which keeps the secret out of the process list)",
    )
    serve.add_argument("--tls", action="store_true", help="serve https with a local CA")
    serve.add_argument("--tls-dir", default="refserver-tls")
    serve.add_argument("--cert", help="serve https with this certificate (chain) instead")
    serve.add_argument("--key", help="private key for --cert (default: inside --cert)")
    serve.add_argument("--san", action="extend", nargs="+", default=[], metavar="NAME",
                       help="extra certificate names (host names or IPs)")
    serve.add_argument("--lan", action="store_true", help="certificate names this host's LAN IPs")
    serve.add_argument("--time-format", choices=TIME_FORMATS, default="z")
    serve.add_argument("--timeout", type=float, default=30.0, help="per-connection socket timeout")

    serve.add_argument("--op-lifetime", type=float, default=600.0,
                       help="seconds a provisioning operation stays valid")
    for name, what in (("approve", "approve"), ("cancel", "cancel")):
        op = sub.add_parser(name, help="%s a device's provisioning operation" % what)
        op.add_argument("code", help="its verification code (as the device logged it) or id")
        op.add_argument("--db", default="refserver.sqlite3")
    ops = sub.add_parser("operations", help="list the provisioning operations")
    ops.add_argument("--db", default="refserver.sqlite3")

    mint = sub.add_parser("mint", help="create a lineage and print its first token object")
    mint.add_argument("--db", default="refserver.sqlite3")
    # A day, not the server's 60 s: provisioning and the first boot may take a while.
    mint.add_argument("--lifetime", type=parse_lifetime, default=86400.0, help="seconds or null")
    mint.add_argument("--out", help="write the token object here (mode 0600) instead of stdout")
    return parser


def _tls_setting(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.cert:
        return args.cert, args.key or args.cert
    if not args.tls:
        return None
    files = ensure_tls(args.tls_dir, args.san, args.lan)
    return str(files.server_pem), str(files.server_pem)


def cmd_serve(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    tls = _tls_setting(args)
    srv = RefServer(
        db=args.db, lifetime=args.lifetime, grace=args.grace, rate_limit=args.rate_limit,
        rate_window=args.rate_window, retry_after_412=args.retry_after_412,
        device_token=args.device_token, tls=tls, time_format=args.time_format,
        host=args.host, port=args.port, log=_print_line, handler_timeout=args.timeout,
        op_lifetime=args.op_lifetime,
    )
    try:
        srv.start()  # prints the "listening on" line first
    except OSError as exc:
        srv.close()
        print("refserver: cannot listen on %s:%s: %s" % (args.host, args.port, exc),
              file=sys.stderr)
        return 2
    try:
        if args.port_file:
            Path(args.port_file).write_text("%d\n" % srv.port)
        if tls and args.tls and not args.cert:
            _print_line("tls: CA for the device's ca_file: %s" % Path(args.tls_dir, "ca.der"))
        while not stop.wait(0.5):
            pass
    finally:
        srv.close()
    _print_line("stopped")
    return 0


def cmd_mint(args: argparse.Namespace) -> int:
    store = TokenStore(args.db)
    try:
        token, expires, device = store.mint(time.time(), args.lifetime)
    finally:
        store.close()
    doc = {"registrationToken": token, "expirationTime": rfc3339(expires)}
    if not args.out:
        print(json.dumps(doc), flush=True)
        return 0
    _write_private(Path(args.out), (json.dumps(doc) + "\n").encode())
    _print_line("minted device=%s %s expires=%s -> %s" % (
        device, redact(token), doc["expirationTime"], args.out))
    return 0


def cmd_operation(args: argparse.Namespace) -> int:
    """approve / cancel CODE, or list the operations, on the server's SQLite file (safe while
    the server runs: both sides write in transactions)."""
    store = TokenStore(args.db)
    try:
        ops = Operations(store)
        if args.command == "operations":
            for op in ops.list(time.time()):
                state = "expired" if op["expired"] else op["state"]
                print("%s  %-9s device=%s completions=%d expires=%s" % (
                    op["code"], state, op["device_id"] or op["device"], op["completions"],
                    rfc3339(op["expires"])))
            return 0
        state = "approved" if args.command == "approve" else "cancelled"
        try:
            op = ops.decide(args.code, state, time.time())
        except OperationError as exc:
            print("refserver: %s" % exc, file=sys.stderr)
            return 2
    finally:
        store.close()
    print("%s operation %s (device %s)" % (state, op["code"], op["device_id"] or op["device"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "serve":
        return cmd_serve(args)
    if args.command == "mint":
        return cmd_mint(args)
    return cmd_operation(args)


if __name__ == "__main__":
    sys.exit(main())
