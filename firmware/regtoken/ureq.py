# urequests (micropython-lib `requests`) behind the same seam as wire.Wire. Only for
# http:// URLs: it cannot verify TLS, follows redirects on its own, bounds each socket
# operation but not the whole request, and blocks an asyncio loop for the whole call.
try:
    import requests
except ImportError:
    import urequests as requests  # type: ignore[no-redef]  # older ports name it so

_KEEP = ("date", "retry-after")


class Urequests:
    def __init__(self, timeout_s, limit=6144):
        self.timeout_s = timeout_s
        self.limit = limit

    def request(self, method, url, body, headers):
        kept = {}

        def keep(line, _):
            k, _, v = line.decode().partition(":")
            if k.strip().lower() in _KEEP:
                kept[k.strip().lower()] = v.strip()

        r = requests.request(method, url, data=body, headers=headers,
                             timeout=self.timeout_s,
                             parse_headers=keep)  # type: ignore[arg-type]  # stub: bool only
        try:
            data = r.raw.read(self.limit + 1)
        finally:
            r.close()
        if len(data) > self.limit:
            raise OSError("answer larger than %d bytes" % self.limit)
        return r.status_code, kept, data

    async def arequest(self, method, url, body, headers):
        return self.request(method, url, body, headers)
