# regtoken.wire on the real interpreter against a scripted loopback server
# (test_wire_live.py).
#
#   micropython host_tests/probes/wire_stream.py URL ...
#
# For each URL: PUT it; prints CASE <ms> OK <status> <kept header names> <body bytes>
# | ERR <exception> <message>.
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from regtoken.wire import Wire  # noqa: E402


def case(url):
    t0 = time.ticks_ms()
    try:
        st, h, body = Wire(4).request("PUT", url, b"{}", {})
        out = "OK %d %s %d" % (st, ",".join(sorted(h)), len(body))
    except Exception as e:
        out = "ERR %s %s" % (type(e).__name__, e)
    print("CASE", time.ticks_diff(time.ticks_ms(), t0), out)


if __name__ == "__main__":
    for url in sys.argv[1:]:
        case(url)
