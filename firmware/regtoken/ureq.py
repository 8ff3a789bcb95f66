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



_n = 0  # header bytes of the answer being read


def _keep(line, headers):
    # requests' parse_headers: called with each header line and the answer's headers
    # dict; only the ones used are kept, as wire keeps them, and the header section is
    # bounded as wire bounds it (requests holds each line whole, but not all of them)
    global _n
    _n += len(line)
    if _n > 32768:
        raise ValueError("headers too long")
    try:
        k, _, v = line.decode().partition(":")
    except ValueError:  # a byte past ASCII (obs-text, legal in a value): not one used
        return
    k = k.lower()
    if k in ("date", "retry-after", "content-length"):
        v = v.strip()
        if k == "content-length" and headers.get(k, v) != v:  # two: which one frames the
            raise ValueError(k)  # body? (RFC 9112 6.3: an unrecoverable error)
        headers[k] = v


class Urequests:
    def __init__(self, timeout_s):
        self.timeout_s = timeout_s

    def request(self, method, url, body, headers):
        global _n
        _n = 0
        requests.socket = _Net  # type: ignore[attr-defined]
        try:
            try:  # (method, url, data, json, headers, stream, auth, timeout, parse_headers)
                r = requests.request(method, url, body, None, headers, None, None,
                                     self.timeout_s, _keep)  # type: ignore[arg-type]
                try:
                    # up to Content-Length (a keep-alive server sends no EOF), a 204's or
                    # 304's none; a token object is ~300 bytes: 2 KiB at most (a longer
                    # body cut there is no JSON object, or one only padded: never lost)
                    v = r.headers.get("content-length")
                    n = 0 if r.status_code in (204, 304) else 2048 if v is None else \
                        min(int(v), 2048)
                    if n < 0:
                        raise ValueError(n)
                    body = r.raw.read(n)
                    if v and len(body) < n:
                        raise OSError("truncated")
                finally:
                    r.close()
            except MemoryError:
                raise
            except Exception as e:  # the host named, as a DNS failure must be; the text in
                # 48 characters, as wire's: requests quotes what it could not parse, which
                # can be a whole token object
                raise OSError("%s: %s %.48s" % (url.split("/")[2], type(e).__name__, e))
        finally:
            requests.socket = socket  # type: ignore[attr-defined]
            while _opened:  # closed already, or not: closed now (closing again is a no-op)
                _opened.pop().close()
        return r.status_code, r.headers, body

    async def arequest(self, *a):
        return self.request(*a)
