"""The token lineages, in SQLite: mint, refresh (201 rotation with a grace period for the
parent, the grandparent revoked at once; 200 after a lost answer, revoking the child that
never arrived), 410 reasons, and the per-lineage rate limit behind 412."""

from __future__ import annotations

import collections
import contextlib
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from refserver.tokens import new_token, sha256_hex


@dataclass
class Decision:
    """What the platform decided for one refresh (or provisioning) request."""

    status: int
    outcome: str  # rotated | recovered(200) | gone | rate-limited | provisioned | pending
    reason: str | None = None  # for 410: unknown | expired | revoked | revoked-child | ...
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


class LineageStore:
    """Token lineages in SQLite, so a restarted server still knows every device.

    Other tables (the provisioning operations) share the file and its transactions:
    `add_schema`, `transaction` and `query`.
    """

    def __init__(self, path: str) -> None:
        # Autocommit plus explicit BEGIN IMMEDIATE: a `mint` from another process may write
        # to the same file while the server runs.
        self._db = sqlite3.connect(
            path, timeout=10.0, isolation_level=None, check_same_thread=False
        )
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self.add_schema(SCHEMA)

    def add_schema(self, sql: str) -> None:
        with self._lock:
            self._db.executescript(sql)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def mint(self, now: float, lifetime: float | None) -> tuple[str, float | None, str]:
        """A new lineage with its first token -> (token, expires, device)."""
        device = secrets.token_hex(6)
        with self.transaction() as db:
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
        with self.transaction() as db:
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

    @classmethod
    def restart(
        cls, db: sqlite3.Connection, device: str, now: float, lifetime: float | None
    ) -> tuple[str, float | None]:
        """Inside a transaction: revoke every token of the lineage `device` (however young)
        and give it a new first token -> (token, expires)."""
        db.execute("UPDATE tokens SET revoked_at = ? WHERE device = ? "
                   "AND (revoked_at IS NULL OR revoked_at > ?)", (now, device, now))
        return cls._insert(db, device, None, now, lifetime)

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
        rows = self.query(sql, (device,) if device else ())
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
