"""The command line: `PYTHONPATH=tools python -m refserver serve | mint | approve | cancel |
operations` (the Makefile's `server`, `approve`, `cancel`, `operations`). docs/refresh-api.md
is the long form of every --help here."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from refserver.dates import rfc3339
from refserver.faults import FAULT_MODES
from refserver.handler import COMPLETE_PATH, CONTROL_PREFIX, INIT_PATH, REFRESH_PATH
from refserver.lineage import LineageStore
from refserver.operations import OperationError, Operations
from refserver.server import TIME_FORMATS, RefServer, print_line
from refserver.tlsfiles import ensure_tls
from refserver.tokens import redact, write_private

DOC = "docs/refresh-api.md"
DB = "refserver.sqlite3"

DESCRIPTION = """\
Reference server for the registration-token refresh API, as the firmware speaks it.
  PUT  %s
       201 rotation (the parent keeps a grace period, the grandparent is revoked),
       200 after a lost answer (the child that never arrived is revoked), 403, 410,
       412 (rate limit), 415, 400; every error is application/problem+json
  POST %s, then PUT %s
       self-provisioning: 201 with a verification code, 202 until an operator
       approves (approve / cancel below), then 200 with a token; 401, 410
  %s...  (loopback only) stats, lineage, faults, reset, clock, mint,
       operations, approve, cancel
Tokens are never logged whole: 6 characters and the length. The whole protocol, every
fault and how to inject it by hand: %s.""" % (
    REFRESH_PATH, INIT_PATH, COMPLETE_PATH, CONTROL_PREFIX, DOC)

SERVE_EPILOG = """\
faults (loopback only; queued FIFO per endpoint: refresh, init or complete):
  curl -s -X POST http://127.0.0.1:8080%sfaults -d '{"mode": "status", "status": 503}'
  modes: %s
  fields: count, endpoint, status, retry_after, body (garbage kind), location, rst,
  interval, short, extra, chunk_size. See %s.""" % (
    CONTROL_PREFIX, ", ".join(FAULT_MODES), DOC)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m refserver", description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve", help="run the server until SIGINT/SIGTERM",
        description="Serve the refresh and provisioning endpoints and the control API until "
        "SIGINT/SIGTERM. Token lineages and operations persist in --db.",
        epilog=SERVE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="0.0.0.0 for a board on the LAN")
    serve.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    serve.add_argument("--port-file", help="write the bound port number here")
    serve.add_argument("--db", default=DB)
    serve.add_argument("--lifetime", type=parse_lifetime, default=60.0,
                       help="token lifetime: seconds or null (never expires)")
    serve.add_argument("--grace", type=float, default=30.0,
                       help="seconds a parent stays valid after its rotation")
    serve.add_argument("--rate-limit", type=int, default=0,
                       help="refreshes per lineage per window, then 412; 0 = off")
    serve.add_argument("--rate-window", type=float, default=60.0)
    serve.add_argument("--retry-after-412", type=float, default=None,
                       help="Retry-After seconds on a 412 (default: no header)")
    serve.add_argument(
        "--device-token", default=os.environ.get("REFSERVER_DEVICE_TOKEN"),
        help="require Authorization: DeviceToken SECRET (refresh: 403, provisioning: 401) "
        "(default: $REFSERVER_DEVICE_TOKEN, which keeps the secret out of the process list)",
    )
    serve.add_argument("--tls", action="store_true", help="serve https with a local CA")
    serve.add_argument("--tls-dir", default="refserver-tls")
    serve.add_argument("--cert", help="serve https with this certificate (chain) instead")
    serve.add_argument("--key", help="private key for --cert (default: inside --cert)")
    serve.add_argument("--san", action="extend", nargs="+", default=[], metavar="NAME",
                       help="extra certificate names (host names or IPs)")
    serve.add_argument("--lan", action="store_true", help="certificate names this host's LAN IPs")
    serve.add_argument("--time-format", choices=TIME_FORMATS, default="z",
                       help="expirationTime as ...316Z, +00:00, or the two alternating")
    serve.add_argument("--timeout", type=float, default=30.0, help="per-connection socket timeout")

    serve.add_argument("--op-lifetime", type=float, default=600.0,
                       help="seconds a provisioning operation stays valid")
    for name, what in (("approve", "approve"), ("cancel", "cancel")):
        op = sub.add_parser(
            name, help="%s a device's provisioning operation" % what,
            description="%s the live provisioning operation with this code or id, in the "
            "server's SQLite file (safe while it runs). Same as POST %s%s." % (
                what.capitalize(), CONTROL_PREFIX, name))
        op.add_argument("code", help="its verification code (as the device logged it) or id")
        op.add_argument("--db", default=DB)
    ops = sub.add_parser("operations", help="list the provisioning operations",
                         description="List the provisioning operations: code, state, device, "
                         "completions, expiry.")
    ops.add_argument("--db", default=DB)

    mint = sub.add_parser("mint", help="create a lineage and print its first token object",
                          description="Create a new lineage in --db and print its first token "
                          "object (what `make provision TOKEN_FILE=` takes).")
    mint.add_argument("--db", default=DB)
    # A day, not the server's 60 s: provisioning and the first boot may take a while.
    mint.add_argument("--lifetime", type=parse_lifetime, default=86400.0, help="seconds or null")
    mint.add_argument("--out", help="write the token object here (mode 0600) instead of stdout")
    return parser


def parse_lifetime(text: str) -> float | None:
    """CLI value: seconds (float) or `null` for tokens that never expire."""
    if text.strip().lower() in ("null", "none"):
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("lifetime must be >= 0 or null")
    return value


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
        host=args.host, port=args.port, log=print_line, handler_timeout=args.timeout,
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
            print_line("tls: CA for the device's ca_file: %s" % Path(args.tls_dir, "ca.der"))
        while not stop.wait(0.5):
            pass
    finally:
        srv.close()
    print_line("stopped")
    return 0


def cmd_mint(args: argparse.Namespace) -> int:
    store = LineageStore(args.db)
    try:
        token, expires, device = store.mint(time.time(), args.lifetime)
    finally:
        store.close()
    doc = {"registrationToken": token, "expirationTime": rfc3339(expires)}
    if not args.out:
        print(json.dumps(doc), flush=True)
        return 0
    write_private(Path(args.out), (json.dumps(doc) + "\n").encode())
    print_line("minted device=%s %s expires=%s -> %s" % (
        device, redact(token), doc["expirationTime"], args.out))
    return 0


def cmd_operation(args: argparse.Namespace) -> int:
    """approve / cancel CODE, or list the operations, on the server's SQLite file (safe while
    the server runs: both sides write in transactions)."""
    store = LineageStore(args.db)
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
