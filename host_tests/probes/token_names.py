# A rotation must not intern names (test_api.py): on MicroPython indexing a str (s[i]), or
# min()/max() of one, makes each distinct character a name (qstr), which is never freed.
# A token's characters (~60 of them) would make the name pool double at once (~4 KB); the
# digits of a date, the letters of a header name, one by one over the first rotations, so
# that the pool's next table (~3.6 KB in one piece) came due in the middle of a rotation.
#
# Prints the interpreter's name count ("qstr pool: ... n_qstr=N") after each code path has
# run once (its own names, e.g. a module's), then after each of: checking a token that
# holds every printable ASCII character; classifying a 201 with such a token; answers with
# every digit, both zone forms, a fraction and lower-case separators, read through the
# HTTP client with every header it keeps, and their Date and Retry-After read.
import sys

import micropython

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")
sys.path.insert(0, HERE + "/..")  # host_tests: the scripted socket of cases/test_wire.py

from cases.test_wire import Sock, http, read  # type: ignore[import-not-found]  # noqa: E402
from regtoken import policy  # noqa: E402
from regtoken.policy import classify, valid_token  # noqa: E402

token = bytes(range(33, 127)).decode() * 2  # decode() interns nothing
safe = token.replace("\\", "").replace('"', "")
DATES = ("1987-06-05T14:39:28.123456Z", "2031-09-17t23:59:60+05:30",
         "2000-02-29 01:02:03-08:00", "2024-11-28T14:03:07.316z")
HEADERS = (b"DATE: Wed, 21 Oct 2015 07:28:00 GMT\r\nretry-after: 30\r\n",
           b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\nRetry-After: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
           b"Transfer-Encoding: chunked\r\n")


def body(tok, exp):
    return b'{"registrationToken": "%s", "expirationTime": "%s"}' % (tok.encode(), exp.encode())


def answer(head, data):
    if b"chunked" in head:  # one chunk, its size in hex, then the last
        return http(head, b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data), False)
    return http(head, data)


def rotation(exp, head, tok="abc"):
    status, h, data = read(Sock(answer(head, body(tok, exp)), piece=7))
    policy.http_date(h.get("date"))
    policy.retry_after(h, 0)
    return classify(status, h, data, 0)


# each path once: the names of its own code
classify(201, {}, b"{}", 0)
rotation("2026-12-02T00:00:00Z", HEADERS[0])
micropython.qstr_info()
assert valid_token(token)
micropython.qstr_info()
assert classify(201, {}, body(safe, "2026-12-02T00:00:00Z"), 0)[1]
micropython.qstr_info()
for i, exp in enumerate(DATES):
    assert rotation(exp, HEADERS[i % 2], safe)[1] == safe
micropython.qstr_info()
