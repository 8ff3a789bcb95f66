"""Provisioning operations: init opens one with a verification code and a lifetime, an
operator approves or cancels it by that code (or its id), complete answers for it."""

from __future__ import annotations

import secrets
import sqlite3
from typing import Any

from refserver.lineage import Decision, LineageStore
from refserver.tokens import printable

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: read off a serial console
DEVICE_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")

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


def valid_device_id(value: object) -> bool:
    return isinstance(value, str) and 4 <= len(value) <= 90 and set(value) <= DEVICE_ID_CHARS


class Operations:
    """Provisioning operations, in the LineageStore's SQLite file beside the lineages.

    init opens one (pending, with a lifetime); an operator approves or cancels it by its
    verification code or id; complete answers 202 while pending, and for an approved one
    a new token in the operation's lineage, revoking every earlier token of that lineage
    (so completing again after a lost answer gives a new token and kills the old one).
    """

    def __init__(self, lineages: LineageStore) -> None:
        self.lineages = lineages
        lineages.add_schema(OPS_SCHEMA)

    def init(self, device_id: str | None, now: float, lifetime: float) -> dict[str, Any]:
        op_id = secrets.token_urlsafe(24)
        device = device_id or "op-" + secrets.token_hex(6)
        with self.lineages.transaction() as db:
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
        with self.lineages.transaction() as db:
            row = db.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
            if row is None:
                return Decision(410, "gone", "unknown-operation")
            if row["state"] == "cancelled":
                return Decision(410, "gone", "cancelled")
            if row["expires"] <= now:
                return Decision(410, "gone", "expired-operation")
            if row["state"] != "approved":
                return Decision(202, "pending")
            token, expires = self.lineages.restart(db, row["device"], now, lifetime)
            db.execute("UPDATE operations SET completions = completions + 1 WHERE id = ?",
                       (op_id,))
        return Decision(200, "provisioned", token=token, expires=expires)

    def decide(self, key: str, state: str, now: float) -> dict[str, Any]:
        """Approve (state 'approved') or cancel ('cancelled') the live operation whose
        verification code or id is `key`."""
        with self.lineages.transaction() as db:
            rows = db.execute("SELECT * FROM operations WHERE id = ? OR code = ? "
                              "ORDER BY created DESC", (key, normalize_code(key))).fetchall()
            live = [r for r in rows if r["expires"] > now]
            if not rows:
                raise OperationError("no provisioning operation with code or id %r"
                                     % printable(key, 40))
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
        rows = self.lineages.query("SELECT * FROM operations ORDER BY rowid")
        return [self._describe(r, now) for r in rows]

    @staticmethod
    def _describe(row: sqlite3.Row, now: float) -> dict[str, Any]:
        return {"id": row["id"], "code": row["code"], "device_id": row["device_id"],
                "device": row["device"], "state": row["state"], "created": row["created"],
                "expires": row["expires"], "expired": row["expires"] <= now,
                "completions": row["completions"]}
