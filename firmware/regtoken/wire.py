# The project's own HTTP client, for what urequests cannot do safely: it verifies the
# server's certificate and host name, never follows a redirect, bounds the whole request
# by one deadline (connect, TLS handshake, every read) and bounds what it holds.
#
# One buffer of BODY bytes, kept by the client, carries the request out and the answer in:
# the status line and headers line by line through its first LINE bytes, keeping only the
# headers used and letting the rest pass by, then the body; HEAD bounds the bytes read.
# Reading stops at Content-Length.
#
# One exchange is one generator (Wire._x) that yields whenever its socket would block, the
# socket registered in the client's one poll object; `request` drives it with select.poll,
# `arequest` (aio.py) inside asyncio: the same code serves a plain loop and an event loop.
# Per request little is built but the answer: the request head is kept while the method,
# URL, headers and body length stay the same, the server's address until a request fails.
import errno  # only names in MicroPython's default list
import select
import time

LINE = 256  # longest header line kept; longer ones of unused headers pass by
HEAD = 32768  # answer bytes read at most (a CDN adds ~7 KB of headers; 64 KB is refused)
BODY = 2048  # a token object is ~300 bytes
# the headers used, by the length of their name
_KEEP = {4: "date", 11: "retry-after", 14: "content-length", 17: "transfer-encoding"}
# The first client's buffer, taken when wire is first imported (the config check imports
# it at boot): while the heap is emptiest, before the pieces freed by boot fragment it.
_spare: bytearray | None = bytearray(BODY)
# Room for a TLS context (the tls module's SSLContext: 3,048 bytes in one piece on the
# 64-bit unix port), kept from the same moment; the config check frees it at once for an
# http URL, and boot.py just before it makes the context, which then finds that piece.
try:  # a reservation: none on a heap too full for it (compiled from source, a board's
    # heap is in pieces here), and the context finds a piece later, or fails then
    _room: bytearray | None = bytearray(3072)
except MemoryError:
    _room = None


def split_url(url):
    """(tls, host, port, path, host header) of an http(s) URL; IPv6 literals in []."""
    scheme, rest = url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    if host[:1] == "[":
        host, port = hostport[1:].split("]")  # no "]": ValueError
        port = port[1:]
    tls = scheme == "https"
    return tls, host, int(port or (443 if tls else 80)), "/" + path, hostport



def _head(method, url, n, headers):
    """split_url(url) and, last, the request's head, for a body of n bytes. Not in Wire._x:
    compiled from source, a function's bytecode takes one piece of heap"""
    u = split_url(url)
    lines = ""
    for kv in headers.items():
        lines += "%s: %s\r\n" % kv
    # Connection: close: an answer without a length (a 204, a proxy's error) ends where
    # the server closes, not at our deadline
    return u + (("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: "
                 "%d\r\n%s\r\n" % (method, u[3], u[4], n, lines)).encode(),)


def _dechunk(buf, n):
    """The data of the chunked body in buf[:n] (per chunk: its size line, its data, CRLF; up
    to a chunk of size 0), or None while it has not all arrived; ValueError if garbled."""
    # not arguments: each argument's name is one more of the module's names, and at 97
    # of them compiling wire.py from source takes 2,032 bytes in one piece, not 1,552
    b, mv = buf, memoryview(buf)
    data = b""
    i = 0
    while True:
        j = b.find(b"\r\n", i, n)
        if j < 0:
            return None
        k = int(bytes(mv[i:j]).split(b";")[0], 16)  # a size, and maybe an extension
        if k < 0:  # "-6" is no size: it would lead back, a loop no deadline stops
            raise ValueError(k)
        if not k:
            return data  # trailers, if any, are not used
        i = j + 2 + k
        if i + 2 > n:
            return None
        data += mv[j + 2:i]
        i += 2


class Wire:
    def __init__(self, timeout_s, ca=None):
        self.ms = int(timeout_s * 1000)
        # boot.py sets ctx itself; a client built otherwise (a tool, a test) makes it from
        # `ca` at its first https request
        self.ca = ca
        self.ctx = None
        self.p = select.poll()  # one for every request: its sockets come and go
        global _spare
        self.buf = _spare or bytearray(BODY)  # a second client has a buffer of its own
        _spare = None
        # r: the plain socket of the exchange in flight (a name wire.py has: see _dechunk)
        self.k = self.ai = self.ans = self.r = None
        # split_url(url) of self.k, and the request head built from it
        self.parts: tuple = None  # type: ignore[assignment]

    def _x(self, method, url, body, headers):
        """Generator for one exchange: it builds the request, resolves the host, connects,
        writes, and leaves the answer (status, {kept lower-case name: str}, body bytes) in
        self.ans. It yields whenever its socket would block, the socket registered in
        self.p. A `for` loop drives it, so nothing is allocated for its end."""
        import socket  # here: a board without one (a plain Pico, another transport) can
        # still import wire for split_url, which the config validator uses

        self.ans = None
        # ticks_add: a 32-bit port's ticks wrap at 2**30 ms (12.4 days), and ticks_diff of
        # a plain sum past that (a big int) is garbage: a stall then waited ~74 h
        self.deadline = time.ticks_add(time.ticks_ms(), self.ms)
        if self.r:  # an exchange that never ended (its asyncio loop left mid-call, by
            # a Ctrl-C: its generator never closed): its socket closed, and its poll let
            # go, where that socket stays registered and reads as ready for ever
            self.r.close()
            self.p = select.poll()
        p = self.p
        b = self.buf
        mv = memoryview(b)
        n = len(body)
        u = self.parts
        # the answer's state first: the first 16 locals (self and the arguments among
        # them) take one byte less of bytecode at each use
        a = i = j = seen = got = 0  # b[i:n] is read and not yet used
        lim = LINE  # BODY once the headers are done
        want = 0x3FFFFFFF  # the body's length; this one (a small int on 32 bits): up to EOF
        if (method, url, n, headers) != self.k:
            u = self.parts = _head(method, url, n, headers)
            self.k = method, url, n, dict(headers)  # a copy: the caller's may change
            self.ai = None
        ai = self.ai
        if not ai:
            try:
                ai = self.ai = socket.getaddrinfo(u[1], u[2], 0, socket.SOCK_STREAM)[0]
            except OSError as e:
                raise OSError("cannot resolve %s (%s)" % (u[1], e))
        # the whole request in one buffer: one write, one TLS record
        a = len(u[5])  # the head
        n += a
        out = memoryview(b if n <= BODY else bytearray(n))[:n]
        out[:a] = u[5]
        out[a:] = body
        s = r = self.r = socket.socket(ai[0], socket.SOCK_STREAM, ai[2])
        try:
            s.setblocking(False)
            try:
                s.connect(ai[-1])
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    raise
            if u[0]:  # wrapped while it connects: the handshake starts at the first write
                c = self.ctx
                if not c:
                    from .pem import context  # TLS code only for https

                    c = self.ctx = context(self.ca)
                    self.ca = None  # parsed into the context
                s = c.wrap_socket(s, server_hostname=u[1], do_handshake_on_connect=False)
            while out:
                n = s.write(out)  # None: it would block (connecting, or a full buffer;
                if n is None:  # TLS: the socket polls for what the handshake awaits)
                    p.register(s, 4)  # POLLOUT (4, and POLLIN 1, on every port)
                    yield
                else:
                    out = out[n:]
            # the status line and headers line by line through b[:LINE], then the body
            # through b[:BODY]
            n = 0
            st = skip = te = data = k = None  # skip: inside a line too long to keep;
            # k: the last header's name if kept
            h: dict = {}
            while True:
                j = b.find(b"\n", i, n) if lim == LINE else -1
                cut = j < 0  # no end of line: the first LINE bytes of a longer one, if full
                # (only while the headers are read: LINE bytes of body are just body)
                if lim == LINE and (not cut or n - i == LINE):
                    a = i
                    if cut:
                        j = i = n  # passed by (or refused): not kept
                    else:
                        i = j + 1
                    if skip:
                        skip = cut  # the rest of a long line, up to its end
                    elif st is None:  # "HTTP/1.x 201", then a space or the line's end
                        # (three digits: the line goes on to a + 12 at least); a reason
                        # phrase past LINE bytes passes by. Else garbled: "4100" or "XTTP"
                        # is no 410 or 201. ("status": a name it has, not one more str)
                        st = int(b[a + 9:a + 12])
                        skip = cut
                        if b.find(b"HTTP/1.", a, a + 7) != a or b[a + 8] != 32 or \
                                st < 100 or b[a + 12] > 32:
                            raise ValueError("status")
                    elif j - a < 2:  # the empty line ("\r" at most)
                        if st < 200:  # an interim answer (100 Continue, 103 Early Hints,
                            st = k = None  # which a client must read past): the final
                            h = {}  # one follows
                            continue
                        lim = BODY  # on to the body
                        te = h.get("transfer-encoding")
                        if st == 204 or st == 304:  # no body, whatever the headers say
                            want = te = 0  # (RFC 9112 6.3): a Retry-After is all it has
                        elif te:  # chunked if it is the last coding, else up to EOF, the
                            te = te.lower().endswith("chunked")  # length unread (RFC
                        else:  # 9112 6.3); without a length up to EOF
                            v = h.get("content-length")
                            if v is not None:  # a length from 0x3FFFFFFF on is one too:
                                want = min(int(v), 0x3FFFFFFE)  # cut short at EOF
                                if want < 0:
                                    raise ValueError(want)
                    else:  # a header: kept if its name is one of _KEEP. A line that
                        # starts with a space or a tab (any byte up to 32) goes on with the
                        # one before (an obs-fold, which RFC 9112 5.2 says a recipient must
                        # unfold): kept if that one was (k still its name), its name's
                        # length taken as -1. No new local: at 97 names (see _dechunk)
                        c = -1
                        if b[a] > 32:
                            c = b.find(b":", a, j) - a
                            k = _KEEP.get(c)
                        if k:  # its name in lower case, in place (`| 32`: ASCII letters;
                            # "-" stays), then one str: "date" is a name already (no
                            # copy). Not k[x]: indexing a str makes a 1-char str, which
                            # MicroPython interns for good. A byte past ASCII (obs-text,
                            # legal in a value) becomes "?": no str() of the line can
                            # fail, and no kept header's value or name has one
                            for x in range(a, j):
                                if b[x] > 126:
                                    b[x] = 63
                                elif x < a + c:
                                    b[x] |= 32
                            if c >= 0 and str(mv[a:a + c], "utf-8") != k:
                                k = None
                        if not k:
                            skip = cut
                        elif cut:
                            raise OSError("header too long")
                        else:  # its value, stripped, as the one str kept: the usual
                            a += c + 1  # space and CR are left out here, so that strip()
                            a += b[a] == 32  # returns the str it was given (no copy)
                            j -= b[j - 1] == 13
                            v = str(mv[a:j], "utf-8").strip()
                            if c < 0:  # folded: one space for the fold, and the value
                                v = (h[k] + " " + v).strip()  # bounded as one line is
                                if len(v) > LINE:
                                    raise OSError("header too long")
                            if c == 14 and h.get(k, v) != v:  # two Content-Lengths:
                                raise ValueError(k)  # which one? (RFC 9112 6.3: an
                            h[k] = v  # unrecoverable error); of the others, the last
                    continue
                if i:
                    mv[:n - i] = mv[i:n]
                    n -= i
                    i = 0
                if lim == BODY:
                    if n >= want:
                        break
                    # chunked: ends with an empty line (after the last chunk, "0" and maybe
                    # an extension, and its trailers, if any); over when the chunk sizes,
                    # followed from the start, lead to it (data may end that way too).
                    # Looked for in what the last read brought, not only at the end: a
                    # keep-alive server's next bytes may follow it in the same piece (got
                    # None: a read that would have blocked, nothing new)
                    if te and b.find(b"\r\n\r\n", max(n - 3 - (got or 0), 0), n) >= 0:
                        data = _dechunk(b, n)
                        if data is not None:
                            break
                    if n == BODY:
                        if st < 300:  # type: ignore[operator]  # no token object is this long
                            raise OSError("body too long")
                        te = 0  # a refusal's status is all that counts: its first BODY
                        break  # bytes are enough (a problem's "type"), the rest unread
                got = s.readinto(mv[n:lim])  # type: ignore[assignment]  # None: it would block
                if got is None:
                    p.register(s, 1)
                    yield
                    continue
                seen += got
                if not got:
                    if lim == LINE or want < 0x3FFFFFFF:  # short of its Content-Length
                        raise OSError("truncated")
                    break
                if seen > HEAD:
                    raise OSError("headers too long")
                n += got
            if te:  # at its end, or at EOF: all there, or cut short
                body = data if data is not None else _dechunk(b, n)
                if body is None:
                    raise OSError("truncated")
            else:
                body = bytes(mv[:min(n, want)])
            self.ans = st, h, body
        except ValueError as e:  # mbedTLS: a failed verification; else a garbled answer,
            # said in 48 characters: its text may quote the answer (int() of a chunk size
            # quotes the line, which can be a whole token object)
            v = " ".join(str(e).split())
            raise OSError("TLS: " + v if out else "bad answer: %.48s" % v)
        finally:
            p.unregister(s)
            s.close()
            # and the plain socket under TLS: a failed handshake (a wrong CA, a refused
            # or reset connection) lets go of it unclosed, one descriptor (and on a board
            # one of lwIP's few sockets) lost per attempt until none is left
            r.close()
            self.r = None
            if not self.ans:  # failed: resolve the host again next time
                self.ai = None

    def _left(self):
        left = time.ticks_diff(self.deadline, time.ticks_ms())
        if left <= 0:
            # over 10 characters: a str constant, not one more name (wire.py has 96: see
            raise OSError("request timed out")  # _dechunk)
        return left

    def request(self, method, url, body, headers):
        x = self._x(method, url, body, headers)
        try:
            for _ in x:
                self.p.ipoll(self._left())
        finally:
            x.close()  # a timeout: close the socket now, not at the next gc
        return self.ans

    async def arequest(self, method, url, body, headers):
        from .aio import arequest  # the asyncio code stays off the heap of a plain loop

        return await arequest(self, self._x(method, url, body, headers))
