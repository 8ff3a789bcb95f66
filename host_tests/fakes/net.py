# A scripted HTTP seam for the refresher: the same object serves CPython and MicroPython
# tests. Each scripted answer is (status, headers, body), an exception to raise, or a
# callable(method, url, body, headers) returning one of those.
import json


def token_body(token, exp="2030-01-01T00:00:00Z"):
    return json.dumps({"registrationToken": token, "expirationTime": exp}).encode()


def issued(token, exp="2030-01-01T00:00:00Z", status=201, headers=None):
    return status, headers or {}, token_body(token, exp)


def problem(status, headers=None, type=None):
    body = json.dumps({"type": type, "title": "x", "status": status, "detail": None})
    return status, headers or {}, body.encode()


CANCELLED = "https://device-api.test/problems/provisioningOperationCancelled"


def operation(op_id, code, exp, status=201):
    """An answer to POST /provisioning-operations/init."""
    body = {"provisioningOperationId": op_id, "verificationCode": code, "expirationTime": exp}
    return status, {}, json.dumps(body).encode()


class FakeHTTP:
    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls = []

    def presented(self, i=-1):
        """The token the i-th request presented."""
        return json.loads(self.calls[i][2])["registrationToken"]

    def request(self, method, url, body, headers):
        self.calls.append((method, url, body, headers))
        a = self.answers.pop(0) if self.answers else OSError("no answer scripted")
        if callable(a):
            a = a(method, url, body, headers)
        if isinstance(a, Exception):
            raise a
        return a

    async def arequest(self, method, url, body, headers):
        return self.request(method, url, body, headers)


class NoHeapJSON:
    """A json module whose loads() finds no heap `fail` times (as on a board near its
    minimum), then parses; swapped in with cases.util.swap_module("json", NoHeapJSON)."""

    fail = 0

    @classmethod
    def loads(cls, body):
        if cls.fail:
            cls.fail -= 1
            raise MemoryError("memory allocation failed, allocating 368 bytes")
        return json.loads(body)
