# regtoken.wire on the real interpreter against a scripted loopback server
# (test_wire_live.py).
#
#   micropython host_tests/probes/wire_stream.py [--ureq] URL ...
#
# For each URL: PUT it (with regtoken.ureq's Urequests instead, given --ureq); prints
# CASE <ms> <open descriptors after it> OK <status> <kept header names> <body bytes> |
# ERR <exception> <message>.
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from regtoken.wire import Wire  # noqa: E402


def app(url):  # what an application's own use of requests does beside the transport
    import requests

    r = requests.request("PUT", url, b"{}")
    r.close()
    return r.status_code, {}, b""


def case(http, url):  # http: a Wire or a Urequests; "app:" URL: requests itself
    t0 = time.ticks_ms()
    try:
        if url[:4] == "app:":
            st, h, body = app(url[4:])
        else:
            st, h, body = http.request("PUT", url, b"{}", {})
        out = "OK %d %s %d" % (st, ",".join(sorted(h)), len(body))
    except Exception as e:
        out = "ERR %s %s" % (type(e).__name__, e)
    import os

    fds = len(os.listdir("/proc/self/fd"))  # what the exchange left open
    print("CASE", time.ticks_diff(time.ticks_ms(), t0), fds, out)


if __name__ == "__main__":
    urls = sys.argv[1:]
    http: object = Wire(4)
    if urls[:1] == ["--ureq"]:
        from regtoken.ureq import Urequests

        http = Urequests(4)
        urls = urls[1:]
    for url in urls:
        case(http, url)
