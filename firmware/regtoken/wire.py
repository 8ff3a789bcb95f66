# The project's own HTTP client, for what urequests cannot do safely: it verifies the
# server's certificate and host name, never follows a redirect, bounds the whole request
# by one deadline (connect, TLS handshake, every read) and bounds the bytes it reads.
#
# One exchange is a generator that yields (socket, poll event) whenever it would block;
# `request` drives it with select.poll, `arequest` drives it inside asyncio, so the same
# code serves a plain loop and an application's event loop.
import errno  # only names in MicroPython's default list: it has no EPROTO, no EFBIG
import select
import socket
import time

MAX_ANSWER = 6144  # status line + headers + body; a token object is ~300 bytes
AT_EOF = -1  # where an answer ends, when its headers give no length
CHUNKED = -2
MALFORMED = -3
_KEEP = (b"date", b"retry-after", b"content-length", b"transfer-encoding")


class WireError(OSError):
    pass


def pem_to_der(data):
    """Every certificate in a PEM or DER file, as a list of DER blobs."""
    if b"-----BEGIN" not in data:
        return [data]
    from binascii import a2b_base64

    out: list = []
    b64: list | None = None
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN CERTIFICATE"):
            b64 = []
        elif line.startswith(b"-----END CERTIFICATE") and b64 is not None:
            out.append(a2b_base64(b"".join(b64)))
            b64 = None
        elif b64 is not None:
            b64.append(line)
    return out


def split_url(url):
    scheme, rest = url.split("://", 1)
    hostport, path = (rest.split("/", 1) + [""])[:2]
    host, port = (hostport.split(":", 1) + [""])[:2]
    tls = scheme == "https"
    return tls, host, int(port) if port else (443 if tls else 80), "/" + path


def _send(s, data, want):
    data = memoryview(data)
    while data:
        n = s.write(data)
        if n is None:
            yield s, want
        else:
            data = data[n:]


def _read_all(s, limit):
    """(the whole answer, its _head() or None): up to EOF, or to where its headers say it
    ends, so that a server keeping the connection open does not cost us the deadline."""
    buf = b""
    head = None
    while True:
        b = s.read(512)
        if b is None:
            yield s, select.POLLIN
            continue
        if not b:
            return buf, head
        buf += b
        if len(buf) > limit:
            raise WireError(errno.ENOBUFS, "answer larger than %d bytes" % limit)
        if head is None:
            head = _head(buf)
        if head and ((head[2] > 0 and len(buf) >= head[2])
                     or (head[2] == CHUNKED and buf.endswith(b"0\r\n\r\n"))):
            return buf, head


def _head(buf):
    """(where the headers end, the headers, where the answer ends: a length, CHUNKED,
    AT_EOF or MALFORMED), parsed once; None while the headers are not all in."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    h = _headers(buf[:i])
    n = h.get(b"content-length")
    if h.get(b"transfer-encoding", b"").lower() == b"chunked":
        end = CHUNKED
    elif n is None:
        end = AT_EOF
    else:
        end = i + 4 + int(n) if n.isdigit() else MALFORMED
    return i, h, end


def _headers(head):
    """The few headers we use, by lower-case name. Searched for, not split into lines:
    every copy counts on a small heap."""
    low = head.lower()
    out = {}
    for k in _KEEP:
        i = low.find(b"\r\n" + k + b":")
        if i >= 0:
            i += len(k) + 3
            j = low.find(b"\r\n", i)
            out[k] = head[i:j if j >= 0 else len(head)].strip()
    return out


def _dechunk(body):
    out = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        if len(rest) < n + 2:
            raise ValueError
        out += rest[:n]
        body = rest[n + 2:]


def parse(buf, head):
    """(status, headers with str lower-case names, body) from a whole HTTP answer and
    its _head()."""
    if head is None or buf[:7] != b"HTTP/1." or buf[8:9] != b" " or not buf[9:12].isdigit():
        raise WireError(errno.EIO, "not an HTTP answer")
    i, h, end = head
    try:
        if end == CHUNKED:
            body = _dechunk(buf[i + 4:])
        elif end == AT_EOF:
            body = buf[i + 4:]
        elif 0 < end <= len(buf):
            body = buf[i + 4:end]
        else:
            raise ValueError
    except ValueError:
        raise WireError(errno.EIO, "truncated or malformed body")
    return int(buf[9:12]), {k.decode(): v.decode() for k, v in h.items()}, body


def exchange(parts, method, body, headers, ca):
    """Generator for one request to split_url()'s `parts`; returns (status, headers,
    body). `ca`: DER list, or None for an unverified https connection (only ever by the
    config's explicit opt-out)."""
    tls, host, port, path = parts
    ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
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
        req = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n" % (
            method, path, host, len(body))
        for k in headers:
            req += "%s: %s\r\n" % (k, headers[k])
        # a TLS write that cannot proceed is waiting for the server's handshake data
        yield from _send(s, req.encode() + b"\r\n" + body, select.POLLIN if tls else select.POLLOUT)
        buf, head = yield from _read_all(s, MAX_ANSWER)
        return parse(buf, head)
    finally:
        s.close()


def _wrap(s, host, ca):
    import tls

    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    if ca is None:
        ctx.verify_mode = tls.CERT_NONE  # type: ignore[attr-defined]  # stubs lack it
    else:
        ctx.verify_mode = tls.CERT_REQUIRED  # type: ignore[attr-defined]
        for der in ca:
            ctx.load_verify_locations(der)
    return ctx.wrap_socket(s, server_hostname=host, do_handshake_on_connect=False)


def _tls_error(e):
    # mbedTLS reports a failed verification (wrong CA, host, expiry) as ValueError
    return WireError(errno.ECONNABORTED, "TLS: " + " ".join(str(e).split()))


def _left(deadline):
    left = time.ticks_diff(deadline, time.ticks_ms())
    if left <= 0:
        raise WireError(errno.ETIMEDOUT, "timed out")
    return left


class Wire:
    def __init__(self, timeout_s, ca=None):
        self.timeout_s = timeout_s
        self.ca = ca
        self.url = self.parts = None  # the URL never changes: split it once

    def _steps(self, method, url, body, headers):
        """Yields (poll, deadline) whenever the exchange would block; returns its answer.
        The two drivers below differ only in how they wait."""
        if url != self.url:
            self.url, self.parts = url, split_url(url)
        deadline = time.ticks_add(time.ticks_ms(), int(self.timeout_s * 1000))
        gen = exchange(self.parts, method, body, headers, self.ca)
        try:
            want = next(gen)
            while True:
                p = select.poll()
                p.register(want[0], want[1])
                yield p, deadline
                want = gen.send(None)
        except StopIteration as e:
            return e.value
        except ValueError as e:
            raise _tls_error(e)
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
