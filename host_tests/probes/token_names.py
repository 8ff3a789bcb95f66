# Checking a token must not intern its characters (test_api.py): on MicroPython min()/max()
# or indexing of a str make every distinct character a name (qstr), which is never freed.
# Prints the interpreter's name count ("qstr pool: ... n_qstr=N") before and after checking
# a token that holds every printable ASCII character, then after classifying a 201 with
# such a token twice (the first may intern the JSON keys once; the second nothing).
import sys

import micropython

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

from regtoken.policy import classify, valid_token  # noqa: E402

token = bytes(range(33, 127)).decode() * 2  # decode() interns nothing
body = b'{"registrationToken": "%s", "expirationTime": "2026-12-02T00:00:00Z"}' % (
    token.replace("\\", "").replace('"', "").encode())
classify(201, {}, b"{}", 0)  # its own names, once
micropython.qstr_info()
assert valid_token(token)
micropython.qstr_info()
assert classify(201, {}, body, 0)[1]
micropython.qstr_info()
assert classify(201, {}, body, 0)[1]
micropython.qstr_info()
