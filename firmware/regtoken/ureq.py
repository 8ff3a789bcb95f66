# urequests (micropython-lib `requests`, frozen into the ports since 1.22, which `tls` needs
# anyway) behind the same seam as wire.Wire. Only for http:// URLs: it cannot verify TLS,
# reads no chunked answer, bounds each socket operation but not the whole request, and
# blocks an asyncio loop for the whole call.
import socket

import requests

# requests closes its socket only on an OSError: a ValueError (a chunked answer, a status
# line that is no HTTP) or a redirect loop's RuntimeError left it open, one descriptor and
# ~137 bytes lost for good per attempt. So, for our calls only (an application may use
# requests too), it gets a socket module that keeps what it opens
_opened: list = []


def _open(*a):
    if _opened:  # a second socket in one request: a redirect, which wire never follows
        # either (the token would go to wherever it points; a loop sent it ~165 times)
        raise OSError("redirect not followed")
    s = socket.socket(*a)
    _opened.append(s)
    return s


class _Net:  # what requests reads of its socket module
    SOCK_STREAM = socket.SOCK_STREAM
    getaddrinfo = socket.getaddrinfo
    socket = _open



def _keep(line, headers):
    # requests' parse_headers: called with each header line and the answer's headers
    # dict; only the ones used are kept, as wire keeps them
    k, _, v = line.decode().partition(":")
    k = k.lower()
    if k in ("date", "retry-after"):
        headers[k] = v.strip()


class Urequests:
    def __init__(self, timeout_s):
        self.timeout_s = timeout_s

    def request(self, method, url, body, headers):
        requests.socket = _Net  # type: ignore[attr-defined]
        try:
            try:  # (method, url, data, json, headers, stream, auth, timeout, parse_headers)
                r = requests.request(method, url, body, None, headers, None, None,
                                     self.timeout_s, _keep)  # type: ignore[arg-type]
            except MemoryError:
                raise
            except Exception as e:  # the host named, as a DNS failure must be; the text in
                # 48 characters, as wire's: requests quotes what it could not parse, which
                # can be a whole token object
                raise OSError("%s: %s %.48s" % (url.split("/")[2], type(e).__name__, e))
            try:  # a token object is ~300 bytes: 2 KiB at most (a longer body cut there is
                body = r.raw.read(2048)  # no JSON object, or one only padded: never lost)
            finally:
                r.close()
        finally:
            requests.socket = socket  # type: ignore[attr-defined]
            while _opened:  # closed already, or not: closed now (closing again is a no-op)
                _opened.pop().close()
        return r.status_code, r.headers, body

    async def arequest(self, *a):
        return self.request(*a)
