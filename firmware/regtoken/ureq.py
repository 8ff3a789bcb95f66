# urequests (micropython-lib `requests`, frozen into the ports since 1.22, which `tls` needs
# anyway) behind the same seam as wire.Wire. Only for http:// URLs: it cannot verify TLS,
# follows redirects on its own, bounds each socket operation but not the whole request, and
# blocks an asyncio loop for the whole call.
import requests


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
        try:  # request(method, url, data, json, headers, stream, auth, timeout, parse_headers)
            r = requests.request(method, url, body, None, headers, None, None, self.timeout_s,
                                 _keep)  # type: ignore[arg-type]  # the stub says bool
        except OSError as e:  # the host named, as a DNS failure must be
            raise OSError("%s: %s" % (url.split("/")[2], e))
        try:  # a token object is ~300 bytes: 2 KiB at most (a longer body cut there is no
            body = r.raw.read(2048)  # JSON object, or one that was only padded: never lost)
        finally:
            r.close()
        return r.status_code, r.headers, body

    async def arequest(self, *a):
        return self.request(*a)
