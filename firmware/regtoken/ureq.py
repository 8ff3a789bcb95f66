# urequests (micropython-lib `requests`) behind the same seam as wire.Wire. Only for
# http:// URLs: it cannot verify TLS, follows redirects on its own, bounds each socket
# operation but not the whole request, and blocks an asyncio loop for the whole call.
try:
    import requests
except ImportError:
    import urequests as requests  # type: ignore[no-redef]  # older ports name it so

LIMIT = 2048  # the answer's body; a token object is ~300 bytes


class Urequests:
    def __init__(self, timeout_s):
        self.timeout_s = timeout_s

    def request(self, method, url, body, headers):
        kept = {}

        def keep(line, _):
            k, _, v = line.decode().partition(":")
            k = k.strip().lower()
            if k in ("date", "retry-after"):
                kept[k] = v.strip()

        try:
            r = requests.request(method, url, data=body, headers=headers,
                                 timeout=self.timeout_s,
                                 parse_headers=keep)  # type: ignore[arg-type]
        except OSError as e:
            if e.args and isinstance(e.args[0], int) and e.args[0] < 0:  # getaddrinfo's
                raise OSError("cannot resolve %s (%s)" % (url.split("/")[2], e))
            raise
        try:
            data = r.raw.read(LIMIT + 1)
        finally:
            r.close()
        if len(data) > LIMIT:
            raise OSError("body over %d bytes" % LIMIT)
        return r.status_code, kept, data

    async def arequest(self, method, url, body, headers):
        return self.request(method, url, body, headers)
