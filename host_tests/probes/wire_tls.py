# The transport alone on the real interpreter (test_tls.py): CA files in every shape, a
# wrong CA, a server that never answers the TLS handshake.
#
#   micropython host_tests/probes/wire_tls.py PATH LABEL|URL|TIMEOUT|CA_FILE ...
#
# For each case: PUT URL+PATH with a made-up token, verified against CA_FILE; prints
# CASE <label> <certificates in CA_FILE> <ms> <open descriptors after it> OK <status> |
# ERR <exception> <message>.
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from regtoken.pem import der  # noqa: E402
from regtoken.wire import Wire  # noqa: E402

BODY = b'{"registrationToken": "not-a-known-token"}'
HEADERS = {"Content-Type": "application/json"}


def case(path, arg):
    label, url, timeout, ca_file = arg.split("|")
    with open(ca_file, "rb") as f:
        ca = f.read()
    ca = der(ca) if b"-----BEGIN" in ca else [ca]
    t0 = time.ticks_ms()
    try:
        r = Wire(int(timeout), ca).request("PUT", url + path, BODY, HEADERS)
        out = "OK %d" % r[0]
    except Exception as e:
        out = "ERR %s %s" % (type(e).__name__, e)
    import os

    fds = len(os.listdir("/proc/self/fd"))  # what the exchange left open
    print("CASE", label, len(ca), time.ticks_diff(time.ticks_ms(), t0), fds, out)


if __name__ == "__main__":
    for arg in sys.argv[2:]:
        case(sys.argv[1], arg)
