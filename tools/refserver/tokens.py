"""Token values and the other secrets the server handles: new tokens, their digests, the
redacted form every log line uses, and files only the owner may read."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

TOKEN_BYTES = 186  # base64 of 186 bytes is 248 characters, like the platform's ~250


def new_token() -> str:
    return base64.b64encode(secrets.token_bytes(TOKEN_BYTES)).decode("ascii")


def sha256_hex(token: str) -> str:
    # surrogatepass: a hostile client can send lone surrogates as JSON escapes.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def printable(text: str, limit: int = 120) -> str:
    """Client-controlled text made safe for a one-line log."""
    out = "".join(c if c.isprintable() else "\\x%02x" % (ord(c) & 0xFF) for c in text[:limit])
    return out + ("…" if len(text) > limit else "")


def redact(token: object) -> str:
    """`tok=AbC123…(248)`: enough to tell tokens apart in a log, useless to an attacker."""
    if not isinstance(token, str):
        return "tok=-"
    return "tok=%s…(%d)" % (printable(token[:6]), len(token))


def write_private(path: Path, data: bytes) -> None:
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
