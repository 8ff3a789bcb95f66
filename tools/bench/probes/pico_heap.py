# mypy: ignore-errors
# MicroPython probe for `make bench` on the emulated Pico (tools/bench/rp2.py copies it
# onto the board beside heap.py, relay_transport.py, main.py, config.json and the
# regtoken package as armv6m .mpy). The firmware's code, its store on the board's littlefs
# and its clock; only the transport is the relay (the Pico has no network).
#
#   heap(cycles=N)   (each called by tools/bringup/rp2relay.py's call(), after a soft reset)
#       RESULT {"what": "imports", ...} and {"what": "cycle", ...} as heap.py prints
#       ("parts": bytes allocated inside the transport, the commit, the log, and the total)
#   ballast(free=BYTES, rotations=N)
#       after one warm-up rotation, a ballast allocation leaves FREE bytes of heap free;
#       RESULT {"what": "ballast", "free": bytes free then, "rotations": completed, ...}
import builtins
import gc

import heap as bh
from relay_transport import RelayTransport


def scrub():
    # heap.py's stack scrub recurses 40 deep; inside nested imports the Pico's small C
    # stack hits MicroPython's recursion limit at even 8. Without it a stale pointer on the
    # stack can keep some garbage alive: the import figures are upper bounds.
    return 0


bh.scrub = scrub


def refresher():
    import main  # noqa: F401  (what main.py imports; its loop runs only as __main__)
    import regtoken

    return regtoken.open("config.json", transport=RelayTransport())


def rotated(r):
    return r.status()["counts"]["rotations"]


def rotate(r):
    r._rec.at = 0  # force() waits backoff_min_s after a commit: rotations back to back
    r.force()
    r.step()


def heap(cycles):
    costs = bh.ImportCosts()
    builtins.__import__ = costs
    r = refresher()
    builtins.__import__ = costs.real
    bh.result({"what": "imports", "modules": costs.modules})
    for _ in range(2):  # warm-up: the first-boot rotation, lazy imports
        rotate(r)
    runs = [bh.measure(lambda: rotate(r)) for _ in range(cycles)]
    parts = {}
    bh.tally(r._http, "request", parts)  # the relay's share: JSON and base64 on the console
    bh.tally(r._store, "commit", parts)  # littlefs on the board's flash
    bh.tally(r, "_log", parts)  # print on the USB console
    parts["total"] = bh.measure(lambda: rotate(r))[0]
    bh.result({"what": "cycle", "alloc": [a for a, _ in runs], "kept": [k for _, k in runs],
               "parts": parts, "rotations": rotated(r)})


def ballast(free, rotations):
    r = refresher()
    rotate(r)  # warm-up: lazy imports are part of the code, not of a rotation
    start = rotated(r)
    keep = []
    bh.live()
    chunk = 4096
    while True:  # the free heap is fragmented: smaller pieces fill what is left
        want = gc.mem_free() - free
        if want < 64:
            break
        try:
            keep.append(bytearray(min(chunk, want) - 32))  # 32: the object and its rounding
        except MemoryError:
            if chunk <= 64:
                break
            chunk //= 2
    left = gc.mem_free()
    error = ""
    try:
        for _ in range(rotations):
            r._rec.at = 0  # as in rotate()
            if not r.force():
                break
            r.step()
    except MemoryError as e:
        error = repr(e)
    keep = []  # the ballast goes before the report, which needs heap of its own (status())
    gc.collect()
    bh.result({"what": "ballast", "free": left, "rotations": rotated(r) - start,
               "state": r.state, "error": error or (r.status()["reason"] or "")})
