# The project's own HTTP client, for what urequests cannot do safely: it verifies the
# server's certificate and host name, never follows a redirect, bounds the whole request
# by one deadline (connect, TLS handshake, every read) and bounds what it holds.
#
# The answer streams through two fixed buffers: the status line and headers line by line
# through LINE bytes, keeping only the headers used and letting the rest pass by (up to
# HEAD bytes of them), then the body into BODY bytes. Reading stops at Content-Length.
#
# One exchange is a generator that yields whenever its socket would block, the socket
# registered in the client's one poll object; `request` drives it with select.poll,
# `arequest` inside asyncio: the same code serves a plain loop and an application's event
# loop.
import errno  # only names in MicroPython's default list: it has no EPROTO, no EFBIG
import select
import time

LINE = 256  # longest header line kept; longer ones of unused headers pass by
HEAD = 32768  # header bytes read at most (a CDN adds ~7 KB; 64 KB is refused)
BODY = 2048  # a token object is ~300 bytes
# the headers used, by the length of their name
_KEEP = {4: "date", 11: "retry-after", 14: "content-length", 17: "transfer-encoding"}
# The two buffers, allocated once, at import: early at boot, before the heap fragments (a
# device has one client; requests never overlap)
_BUFS = (bytearray(LINE), bytearray(BODY))


def _err(why, code=errno.EIO):
    return OSError(code, why)


def split_url(url):
    """(tls, host, port, path, host header) of an http(s) URL; IPv6 literals in []."""
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    if hostport[:1] == "[":
        host, port = hostport[1:].split("]")  # no "]": ValueError
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    tls = scheme == "https"
    return tls, host, int(port) if port else (443 if tls else 80), "/" + path, hostport


def answer(s, line, body, p=None):
    """Generator: (status, headers with lower-case str names, body bytes) read from s
    through the two buffers. It yields whenever s would block, with s registered in the
    poll object p (when given). Nothing per header line is allocated but what is kept."""
    mv = memoryview(line)
    i = n = seen = 0  # line[i:n] is read and not yet used
    status = skip = None  # skip: inside a line too long to keep
    h = {}
    while True:
        j = line.find(b"\n", i, n)
        if j < 0:
            mv[:n - i] = mv[i:n]
            n -= i
            i = 0
            if n == LINE:  # a line longer than the buffer: passed by, unless it is needed
                if not skip and (status is None or _name(line, 0, n)):
                    raise _err("header too long")
                skip, n = 1, 0
            while True:  # read, waiting as often as the socket says (no generator per read)
                k = s.readinto(mv[n:])
                if k is not None:
                    break
                if p:
                    p.register(s, select.POLLIN)
                yield
            seen += k
            if not k or seen > HEAD:
                raise _err("headers too long" if k else "truncated")
            n += k
        else:
            a, i = i, j + 1
            if skip:
                skip = None
            elif status is None:
                if not line.startswith(b"HTTP/1.", a) or not line[a + 9:a + 12].isdigit():
                    raise _err("not HTTP")
                status = line[a + 9] * 100 + line[a + 10] * 10 + line[a + 11] - 5328
            elif j - a < 2:  # the empty line ("\r" at most): headers done
                break
            else:
                k = _name(line, a, j)
                if k:  # its value, stripped, as the one str kept
                    a += len(k) + 1
                    while a < j and line[a] in b" \t":
                        a += 1
                    while j > a and line[j - 1] in b" \t\r":
                        j -= 1
                    h[k] = str(mv[a:j], "utf-8")
    # the body: what came with the headers, then up to its length, chunked end or EOF
    bv = memoryview(body)
    m = n - i
    if m > BODY:
        raise _err("body too long")
    bv[:m] = mv[i:n]
    te = h.get("transfer-encoding", "").lower() == "chunked"
    cl = h.get("content-length")
    want = BODY + 1
    if cl is not None and not te:
        if not cl.isdigit():
            raise _err("bad Content-Length")
        want = int(cl)
        if want > BODY:
            m = BODY
    while m < want and not (te and body.find(b"0\r\n\r\n", m - 5 if m > 5 else 0, m) >= 0):
        if m >= BODY:
            raise _err("body too long")
        k = s.readinto(bv[m:])
        if k is None:
            if p:
                p.register(s, select.POLLIN)
            yield
            continue
        if not k:
            if want <= BODY:
                raise _err("truncated")
            break
        m += k
    data = bytes(bv[:m if m < want else want])
    return status, h, _dechunk(data) if te else data


def _name(line, a, j):
    """The name (one of _KEEP) of the header line line[a:j], if it is one we keep;
    compared in place, case-insensitively: no copy."""
    c = line.find(b":", a, j) - a
    k = _KEEP.get(c)
    if k:
        for x in range(c):
            b = line[a + x]
            if 64 < b < 91:
                b += 32
            if b != ord(k[x]):
                return None
    return k


def _dechunk(data):
    out = b""
    try:
        while True:
            size, _, data = data.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if not n:
                return out
            if len(data) < n + 2:
                raise ValueError
            out += data[:n]
            data = data[n + 2:]
    except ValueError:
        raise _err("bad chunks")


class Wire:
    def __init__(self, timeout_s, ca=None):
        self.timeout_s = timeout_s
        self.ca = ca
        self.url = self.key = self.ans = None
        self.p = select.poll()  # one for every request: its sockets come and go
        # set by the first request; the buffers then live as long as the client
        self.parts: tuple = None  # type: ignore[assignment]
        self.head: tuple = None  # type: ignore[assignment]
        self.bufs = _BUFS

    def _prep(self, method, url, body, headers):
        """The whole request in the body buffer (one write, one TLS record), the server's
        address and the deadline. Not a generator: its locals cost no heap."""
        # the buffers live as long as the client: no garbage per request, no fragments
        # the head, but for Content-Length, is the same for every call with the same
        # method, URL and headers: built once
        if url != self.url or method != self.key or self.head[1] != headers:
            self.url, self.parts, self.key = url, split_url(url), method
            self.head = ("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n%s"
                         "Content-Length: " % (method, self.parts[3], self.parts[4], "".join(
                             "%s: %s\r\n" % kv for kv in headers.items()))).encode(), headers
        tls, host, port, path, hostport = self.parts
        import socket  # here: a board without one (a plain Pico, another transport) can still
        # import wire for split_url, which the config validator uses

        self.ans = None
        self.deadline = time.ticks_add(time.ticks_ms(), int(self.timeout_s * 1000))
        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        except OSError as e:
            raise _err("cannot resolve %s (%s)" % (host, e), errno.ENOENT)
        head = self.head[0]
        tail = b"%d\r\n\r\n" % len(body)
        a, b = len(head), len(head) + len(tail)
        n = b + len(body)
        buf = self.bufs[1] if n <= BODY else bytearray(n)
        buf[:a] = head
        buf[a:b] = tail
        buf[b:n] = body
        return self._x(memoryview(buf)[:n], ai)

    def _x(self, out, ai):
        """Generator for one exchange: it yields whenever the socket would block, with
        the socket registered in self.p, and leaves (status, headers, body) in self.ans.
        The two drivers below differ only in how they wait; a `for` loop drives it, so
        nothing is allocated for its end (no StopIteration)."""
        import socket

        p = self.p
        s = socket.socket(ai[0], socket.SOCK_STREAM, ai[2])
        try:
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    raise
            p.register(s, select.POLLOUT)
            yield
            if self.parts[0]:
                from .pem import wrap  # TLS code only for https

                p.unregister(s)
                s = wrap(s, self.parts[1], self.ca)
            while out:
                n = s.write(out)
                if n is None:  # a TLS write that cannot proceed awaits handshake data
                    p.register(s, select.POLLIN if self.parts[0] else select.POLLOUT)
                    yield
                else:
                    out = out[n:]
            self.ans = yield from answer(s, self.bufs[0], self.bufs[1], p)
        except ValueError as e:  # how mbedTLS reports a failed verification
            raise _err("TLS: " + " ".join(str(e).split()), errno.ECONNABORTED)
        finally:
            p.unregister(s)
            s.close()

    def _left(self):
        left = time.ticks_diff(self.deadline, time.ticks_ms())
        if left <= 0:
            raise _err("timed out", errno.ETIMEDOUT)
        return left

    def request(self, method, url, body, headers):
        x = self._prep(method, url, body, headers)
        try:
            for _ in x:
                self.p.ipoll(self._left())
        finally:
            x.close()  # a timeout: close the socket now, not at the next gc
        return self.ans

    async def arequest(self, method, url, body, headers):
        from .aio import arequest  # the asyncio code stays off the heap of a plain loop

        return await arequest(self, self._prep(method, url, body, headers))
