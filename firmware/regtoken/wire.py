# The project's own HTTP client, for what urequests cannot do safely: it verifies the
# server's certificate and host name, never follows a redirect, bounds the whole request
# by one deadline (connect, TLS handshake, every read) and bounds what it holds.
#
# The answer streams through two fixed buffers: the status line and headers line by line
# through LINE bytes, keeping only the headers used and letting the rest pass by (up to
# HEAD bytes of them), then the body into BODY bytes. Reading stops at Content-Length.
#
# One exchange is a generator that yields (socket, poll event) whenever it would block;
# `request` drives it with select.poll, `arequest` inside asyncio: the same code serves a
# plain loop and an application's event loop.
import errno  # only names in MicroPython's default list: it has no EPROTO, no EFBIG
import select
import time

LINE = 256  # longest header line kept; longer ones of unused headers pass by
HEAD = 32768  # header bytes read at most (a CDN adds ~7 KB; 64 KB is refused)
BODY = 2048  # a token object is ~300 bytes
_KEEP = (b"date", b"retry-after", b"content-length", b"transfer-encoding")


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


def _recv(s, mv):
    """Bytes read into mv (0 at EOF), waiting as often as the socket says."""
    while True:
        n = s.readinto(mv)
        if n is not None:
            return n
        yield s, select.POLLIN


def answer(s, line, body):
    """Generator: (status, headers with lower-case str names, body bytes) read from s
    through the two buffers."""
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
                if not skip and (status is None or _name(line, 0, n) in _KEEP):
                    raise _err("header too long")
                skip, n = 1, 0
            k = yield from _recv(s, mv[n:])
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
                status = int(line[a + 9:a + 12])
            elif j - a < 2:  # the empty line ("\r" at most): headers done
                break
            else:
                k = _name(line, a, j)
                if k in _KEEP:
                    h[k.decode()] = bytes(line[a + len(k) + 1:j]).strip().decode()
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
        k = yield from _recv(s, bv[m:])
        if not k:
            if want <= BODY:
                raise _err("truncated")
            break
        m += k
    data = bytes(bv[:m if m < want else want])
    return status, h, _dechunk(data) if te else data


def _name(line, a, j):
    """The lower-case name of the header line line[a:j], when it could be one we keep."""
    c = line.find(b":", a, j) - a
    return bytes(line[a:a + c]).lower() if c in (4, 11, 14, 17) else None


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


def _send(s, data, want):
    while data:
        n = s.write(data)
        if n is None:
            yield s, want
        else:
            data = data[n:]


def exchange(parts, method, body, headers, ca, bufs):
    """Generator for one request to split_url()'s `parts`; returns (status, headers,
    body). `ca`: DER list, or None for an unverified https connection (only ever by the
    config's explicit opt-out)."""
    tls, host, port, path, hostport = parts
    import socket  # here: a board without one (a plain Pico, another transport) can still
    # import wire for split_url, which the config validator uses

    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        raise _err("cannot resolve %s (%s)" % (host, e), errno.ENOENT)
    s = socket.socket(ai[0], socket.SOCK_STREAM, ai[2])
    try:
        s.setblocking(False)
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != errno.EINPROGRESS:
                raise
        yield s, select.POLLOUT
        if tls:
            s = _wrap(s, host, ca)
        # the whole request in one write (one TLS record), assembled in the body buffer
        req = ("%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n"
               "%s\r\n" % (method, path, hostport, len(body),
                            "".join("%s: %s\r\n" % kv for kv in headers.items()))).encode()
        n = len(req) + len(body)
        buf = bufs[1] if n <= len(bufs[1]) else bytearray(n)
        buf[:len(req)] = req
        buf[len(req):n] = body
        # a TLS write that cannot proceed is waiting for the server's handshake data
        yield from _send(s, memoryview(buf)[:n], select.POLLIN if tls else select.POLLOUT)
        return (yield from answer(s, *bufs))
    finally:
        s.close()


def _wrap(s, host, ca):
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_NONE if ca is None else tls.CERT_REQUIRED  # type: ignore
    for der in ca or ():
        ctx.load_verify_locations(der)
    return ctx.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)


def _left(deadline):
    left = time.ticks_diff(deadline, time.ticks_ms())
    if left <= 0:
        raise _err("timed out", errno.ETIMEDOUT)
    return left


class Wire:
    def __init__(self, timeout_s, ca=None):
        self.timeout_s = timeout_s
        self.ca = ca
        self.url = self.parts = self.bufs = None

    def _steps(self, method, url, body, headers):
        """Yields (poll, deadline) whenever the exchange would block; returns its answer.
        The two drivers below differ only in how they wait."""
        if url != self.url:  # the URL never changes: split it once
            self.url, self.parts = url, split_url(url)
        # the buffers live as long as the client: no garbage per request, no fragments
        self.bufs = self.bufs or (bytearray(LINE), bytearray(BODY))
        deadline = time.ticks_add(time.ticks_ms(), int(self.timeout_s * 1000))
        gen = exchange(self.parts, method, body, headers, self.ca, self.bufs)
        last = None
        try:
            want = next(gen)
            while True:
                if want[0] is not last:  # one poll per socket: the TLS one after the plain
                    last, p = want[0], select.poll()
                p.register(last, want[1])  # registered again: its event replaced
                yield p, deadline
                want = gen.send(None)
        except StopIteration as e:
            return e.value
        except ValueError as e:  # how mbedTLS reports a failed verification
            raise _err("TLS: " + " ".join(str(e).split()), errno.ECONNABORTED)
        finally:
            gen.close()

    def request(self, method, url, body, headers):
        steps = self._steps(method, url, body, headers)
        try:
            while True:
                p, deadline = next(steps)
                p.poll(_left(deadline))
        except StopIteration as e:
            return e.value
        finally:
            steps.close()  # a timeout: close the socket now, not at the next gc

    async def arequest(self, method, url, body, headers):
        import asyncio

        steps = self._steps(method, url, body, headers)
        try:
            while True:
                p, deadline = next(steps)
                while not p.poll(0):
                    _left(deadline)
                    await asyncio.sleep_ms(10)  # the other tasks run; at most 10 ms of lag
        except StopIteration as e:
            return e.value
        finally:
            steps.close()
