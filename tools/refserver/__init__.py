"""The reference server for the registration-token refresh API (docs/refresh-api.md).

Behaves like the platform for `PUT /devices/registration-tokens/refresh` and the
provisioning operations; adds what the platform cannot: an injectable clock, fault
injection for hostile-network tests, byte counts at the socket and a loopback-only control
API. CPython stdlib only; trustme/cryptography are imported lazily, for TLS only. Tokens
are secrets: nothing here logs more than the first 6 characters and the length.

    PYTHONPATH=tools python -m refserver serve --port 8080 --lifetime 60 --grace 30 [--tls]
    PYTHONPATH=tools python -m refserver mint --db refserver.sqlite3 --out token.json

Modules, each one job (dependencies point down the list):
  tokens.py      new tokens, digests, redaction, private files
  dates.py       RFC 3339 and HTTP dates
  lineage.py     the SQLite lineage store: mint, refresh, grace, grandparent, rate limit
  operations.py  provisioning operations: init, complete, approve / cancel
  answers.py     Answer, problem+json, garbage token objects, reading a request body
  faults.py      the fault queue and its checks
  tlsfiles.py    TLS material: the local CA, server and broken certificates
  conn.py        CountingConn: a connection counting its bytes, TLS via memory BIOs
  ledger.py      the records and counters behind stats()
  handler.py     the HTTP handler; it sees the server only as a `Site`
  server.py      RefServer: start/stop, clock, the Site, the control API
  cli.py         the command line (__main__.py runs it)

This file only re-exports the names tests and tools use.
"""

from refserver.answers import GARBAGE_KINDS
from refserver.handler import COMPLETE_PATH, INIT_PATH, REFRESH_PATH, is_loopback
from refserver.operations import OperationError
from refserver.server import RefServer
from refserver.tlsfiles import ensure_tls, make_tls_files
from refserver.tokens import new_token, redact, sha256_hex

__all__ = [
    "COMPLETE_PATH",
    "GARBAGE_KINDS",
    "INIT_PATH",
    "REFRESH_PATH",
    "OperationError",
    "RefServer",
    "ensure_tls",
    "is_loopback",
    "make_tls_files",
    "new_token",
    "redact",
    "sha256_hex",
]
