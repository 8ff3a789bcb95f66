# The HTTP client (regtoken.wire.Wire) against a scripted socket, on both tiers: the request
# it writes, headers through a fixed LINE-byte window of which only the ones used are kept,
# the body in a fixed BODY buffer, reading that stops where the answer says it ends, and the
# server's address kept until a request fails.
import sys

from regtoken import wire

from cases.util import raises, restore_module, swap_module

TOKEN = b'{"registrationToken": "abc", "expirationTime": null}'
URL = "http://h.example:8080/x"


class Sock:
    """Serves `data` in pieces of `piece` bytes, a would-block (None) between pieces, then
    EOF, or nothing ever again (a keep-alive server) when `hold` is set. Keeps what the
    client wrote."""

    def __init__(self, data, piece=100, hold=False):
        self.data = data
        self.piece = piece
        self.hold = hold
        self.pos = 0
        self.reads = 0
        self.blocked = False
        self.sent = b""
        self.closed = False

    def setblocking(self, flag):
        assert flag is False

    def connect(self, addr):
        self.addr = addr

    def write(self, data):
        self.sent += bytes(data)
        return len(data)

    def close(self):
        self.closed = True

    def readinto(self, mv):
        self.reads += 1
        if self.blocked:
            self.blocked = False
            return None
        self.blocked = True
        if self.pos >= len(self.data):
            if self.hold:
                raise AssertionError("read past the end of a kept-alive answer")
            return 0
        n = min(len(mv), self.piece, len(self.data) - self.pos)
        mv[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class Net:
    """Stands in for the socket module: every socket() is the next scripted Sock; the
    resolver counts its calls, and raises `fail` when set."""
    SOCK_STREAM = 1

    def __init__(self, *socks):
        self.socks = list(socks)
        self.resolved = []
        self.fail = None

    def getaddrinfo(self, host, port, af=0, kind=0):
        self.resolved.append((host, port))
        if self.fail:
            raise self.fail
        return [(2, 1, 6, "", (host, port))]

    def socket(self, af, kind, proto):
        return self.socks.pop(0)


class Poll:
    def register(self, s, events):
        pass

    def unregister(self, s):
        pass


class Ticks:  # CPython's time has no ticks_ms
    @staticmethod
    def ticks_ms():
        return 0

    @staticmethod
    def ticks_add(t, delta):
        return t + delta


class Ticks30:
    """A 32-bit port's ticks (rp2, ESP32): they wrap at 2**30 ms (12.4 days), and
    ticks_diff takes ticks values only (a sum past the period is a big int: garbage)."""

    P = 1 << 30

    def __init__(self, t):
        self.t = t

    def ticks_ms(self):
        return self.t

    def ticks_add(self, t, delta):
        return (t + delta) % self.P

    def ticks_diff(self, a, b):
        assert 0 <= a < self.P and 0 <= b < self.P, "not ticks: %d, %d" % (a, b)
        return (a - b + self.P // 2) % self.P - self.P // 2


def exchange(w, net, method="PUT", url=URL, body=b"{}", headers=None, ticks=Ticks):
    """One request of client w, its generator driven as request() does but without waits
    (the socket never needs one); net is the socket module while it runs."""
    saved = swap_module("socket", net), wire.time
    wire.time = ticks  # type: ignore[assignment]
    try:
        for _ in w._x(method, url, body, headers or {}):
            pass
    finally:
        restore_module("socket", saved[0])
        wire.time = saved[1]
    return w.ans


def client():
    w = wire.Wire(5)
    w.p = Poll()  # type: ignore[assignment]
    return w


def read(sock):
    return exchange(client(), Net(sock))


def http(head, body=TOKEN, length=True):
    out = b"HTTP/1.1 201 Created\r\n" + head
    if length:
        out += b"Content-Length: %d\r\n" % len(body)
    return out + b"\r\n" + body


def cdn_headers(total):
    """`total` bytes of headers a CDN adds: long cookies and a long policy line."""
    out = []  # joined once: a Pico's heap holds no chain of growing copies
    n = size = 0
    while size < total:
        n += 1
        out.append(b"Set-Cookie: c%d=" % n + b"x" * 900 + b"; Path=/; Secure\r\n")
        out.append(b"Content-Security-Policy: default-src " + b"https://a.example " * 150
                   + b"\r\n")
        size += len(out[-1]) + len(out[-2])
    return b"".join(out)


def test_a_plain_answer():
    status, h, body = read(Sock(http(b"Date: Fri, 15 Jan 2027 08:00:00 GMT\r\nX-A: b\r\n")))
    assert status == 201 and body == TOKEN
    assert h == {"date": "Fri, 15 Jan 2027 08:00:00 GMT", "content-length": str(len(TOKEN))}


def test_7_kb_of_cdn_headers_pass_by():
    head = cdn_headers(7 * 1024) + b"rEtRy-AfTeR: 30\r\n"
    assert len(head) > 7 * 1024 and max(len(x) for x in head.split(b"\r\n")) > wire.LINE
    status, h, body = read(Sock(http(head), piece=1460))
    assert status == 201 and body == TOKEN and h["retry-after"] == "30"
    assert sorted(h) == ["content-length", "retry-after"]  # nothing else is held


def test_64_kb_of_headers_are_refused_without_being_held():
    if sys.implementation.name == "micropython" and sys.platform not in ("linux", "darwin"):
        return  # a board (the emulated Pico) has no two 32 KB blocks free: tiers 1 and 2 run it
    sock = Sock(http(cdn_headers(64 * 1024)), piece=4096)
    e = raises(OSError, read, sock)
    assert "headers too long" in str(e)
    assert sock.pos <= wire.HEAD + wire.LINE  # it stopped reading soon after the bound


def test_reading_stops_at_content_length():
    # a keep-alive server sends the answer and then nothing: no read may wait for more
    status, h, body = read(Sock(http(b"Connection: keep-alive\r\n"), hold=True))
    assert status == 201 and body == TOKEN


def test_chunked_body():
    chunks = b"10\r\n" + TOKEN[:16] + b"\r\n%x\r\n" % (len(TOKEN) - 16) + TOKEN[16:] + \
        b"\r\n0\r\n\r\n"
    status, h, body = read(Sock(http(b"Transfer-Encoding: chunked\r\n", chunks, False), 7))
    assert body == TOKEN and h["transfer-encoding"] == "chunked"


def test_a_body_arrives_whole_whatever_the_pieces_it_comes_in():
    # a token object is ~300 bytes: a buffer that fills to exactly LINE bytes in the body
    # was once read as a header line, and its bytes dropped (an answer trickling in, or a
    # 256-byte body, lost every rotation)
    for size in (wire.LINE - 1, wire.LINE, wire.LINE + 1, 300, 600):
        data = b"x" * size
        chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (size, data)
        for piece in (1, 7, 64, 1460):
            for answer in (http(b"", data), http(b"", data, False),
                           http(b"Transfer-Encoding: chunked\r\n", chunked, False)):
                assert read(Sock(answer, piece=piece))[2] == data, (size, piece)
    data = b"x" * wire.BODY  # the whole buffer, when the length says so
    for piece in (7, 1460):
        assert read(Sock(http(b"", data), piece=piece))[2] == data


def test_a_chunk_whose_data_ends_like_the_last_chunk_is_not_the_end():
    # pretty-printed JSON with CRLF line ends: a chunk ending in '10' CRLF, or in a line
    # that is just 0, then the chunk's own CRLF, reads "0\r\n\r\n" like the last chunk; the
    # answer goes on after it, and the server keeps the connection open (hold)
    for part in (b'{"status": 410\r\n', b'{"v": [\r\n0\r\n'):
        chunks = b"%x\r\n%s\r\n2\r\n]}\r\n0\r\n\r\n" % (len(part), part)
        for piece in (1, 7, len(part) + 6, len(chunks)):
            sock = Sock(http(b"Transfer-Encoding: chunked\r\n", chunks, False), piece, hold=True)
            assert read(sock)[2] == part + b"]}", (piece, part)


def test_chunk_extensions_and_trailers():
    # the end is seen where it is, also from a server that keeps the connection (hold):
    # not only at its close, nor at our deadline
    for chunks in (b"3;name=value\r\nabc\r\n0;x=y\r\nServer-Timing: db;dur=53\r\n\r\n",
                   b"3\r\nabc\r\n0;x=y\r\n\r\n", b"3\r\nabc\r\n0\r\nA: 1\r\nB: 2\r\n\r\n"):
        for piece in (1, 5, len(chunks)):
            for hold in (False, True):
                sock = Sock(http(b"Transfer-Encoding: chunked\r\n", chunks, False), piece, hold)
                assert read(sock)[2] == b"abc", (chunks, piece, hold)


def test_the_last_chunk_is_seen_with_more_bytes_behind_it():
    # a keep-alive server's next bytes (or junk) in the same piece as the last chunk: the
    # end was looked for only at the buffer's end, so it waited for the deadline unless
    # the pieces happened to split right after it
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(TOKEN), TOKEN)
    answer = http(b"Transfer-Encoding: chunked\r\n", chunks, False)
    for more in (b"XYZ", b"HTTP/1.1 200 OK\r\n"):
        for piece in (1, 2, 3, 7, len(answer) - 3, len(answer) + len(more)):
            sock = Sock(answer + more, piece, hold=True)
            assert read(sock)[2] == TOKEN, (more, piece)


def test_204_and_304_have_no_body_whatever_their_headers():
    # RFC 9112 6.3: ended by the empty line after the headers (a 304 may carry the length
    # its body would have had); read up to a length or a close that never came, a held
    # connection took the whole deadline and lost the Retry-After
    for status in (b"204 No Content", b"304 Not Modified"):
        for head in (b"Retry-After: 600\r\nContent-Length: 300\r\n", b"Retry-After: 600\r\n",
                     b"Retry-After: 600\r\nTransfer-Encoding: chunked\r\n"):
            answer = b"HTTP/1.1 " + status + b"\r\n" + head + b"\r\n"
            for piece in (1, len(answer)):
                st, h, body = read(Sock(answer, piece, hold=True))
                assert (st, body, h["retry-after"]) == (int(status[:3]), b"", "600"), head


def test_only_chunked_as_the_last_coding_is_read_as_chunks():
    # any other coding (identity, from older servers): the body runs up to EOF, and a
    # Content-Length beside it is not read (RFC 9112 6.3)
    for head in (b"Transfer-Encoding: identity\r\n", b"Transfer-Encoding: identity\r\n"
                 b"Content-Length: 5\r\n"):
        status, h, body = read(Sock(http(head, TOKEN, False), 7))
        assert status == 201 and body == TOKEN, head
    chunks = b"%x\r\n%s\r\n0\r\n\r\n" % (len(TOKEN), TOKEN)
    for te in (b"Chunked", b"identity, CHUNKED"):
        head = b"Transfer-Encoding: " + te + b"\r\n"
        assert read(Sock(http(head, chunks, False), 7, hold=True))[2] == TOKEN, te


def test_two_different_lengths_are_a_bad_answer():
    # which one frames the body cannot be told (RFC 9112 6.3: an unrecoverable error); the
    # same length twice is one length
    e = raises(OSError, read, Sock(http(b"Content-Length: 5\r\n")))
    assert "bad answer" in str(e) and "content-length" in str(e)
    twice = b"Content-Length: %d\r\n" % len(TOKEN)
    assert read(Sock(http(twice)))[2] == TOKEN


def test_interim_answers_are_read_past():
    # RFC 9110 15.2: a client reads past any 1xx (100 Continue, 103 Early Hints, asked for
    # or not) to the final answer, whose headers alone count
    early = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
             b"Link: </a.css>; rel=preload\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n")
    for piece in (1, 7, 1460):
        status, h, body = read(Sock(early + http(b"Retry-After: 5\r\n"), piece))
        assert (status, body) == (201, TOKEN)
        assert h == {"retry-after": "5", "content-length": str(len(TOKEN))}


class Pieces(Sock):
    """A Sock whose reads return pieces of sizes drawn from `sizes`, as a network does."""

    def __init__(self, data, draw, sizes):
        super().__init__(data)
        self.draw, self.sizes = draw, sizes

    def readinto(self, mv):
        self.piece = self.sizes[self.draw(len(self.sizes))]
        return super().readinto(mv)


def test_random_answers_in_random_pieces_read_as_they_were_sent():
    # status, kept headers and body of answers built at random (header lines around the
    # line buffer's size, bodies around its and the body buffer's, three framings), read
    # in pieces of random sizes: what the client returns is what the server sent
    x = [12345]

    def draw(n):  # a small LCG: the same answers on both tiers
        x[0] = (x[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (x[0] >> 8) % n

    sizes = (1, 2, 7, 13, 64, 255, 256, 257, 1460)
    for _ in range(150 if sys.platform in ("linux", "darwin") else 40):  # a board is slower
        status = (200, 201, 403, 410, 412, 503)[draw(6)]
        head, want = b"HTTP/1.1 %d X\r\n" % status, {}
        for _ in range(draw(5)):
            k = draw(3)
            if k == 0:  # passes by, whatever its length
                head += b"X-Pad: " + b"p" * (240, 248, 249, 250, 300, 3000)[draw(6)] + b"\r\n"
            elif k == 1:
                want["date"] = "Fri, 15 Jan 2027 08:00:00 GMT"
                head += b"Date: %s\r\n" % want["date"].encode()
            else:  # kept: its line up to LINE bytes long
                want["retry-after"] = "9" * (1, 200, 241)[draw(3)]
                head += b"Retry-After: %s\r\n" % want["retry-after"].encode()
        data = bytes(b'ab0" :{}\r\n'[draw(10)] for _ in range(
            (0, 1, 255, 256, 257, 300, 600, 1500)[draw(8)]))
        framing = draw(3)
        if framing == 0:
            want["content-length"] = str(len(data))
            head += b"Content-Length: %d\r\n" % len(data)
            body = data
        elif framing == 1:
            body = data  # until EOF
        else:
            want["transfer-encoding"] = "chunked"
            head += b"Transfer-Encoding: chunked\r\n"
            body, i = b"", 0
            while i < len(data):
                k = 1 + draw(300)
                body += b"%x\r\n%s\r\n" % (len(data[i:i + k]), data[i:i + k])
                i += k
            body += b"0\r\n\r\n"
        sock = Pieces(head + b"\r\n" + body, draw, sizes)
        if status < 300 and len(body) >= wire.BODY + (framing == 0):  # no token object
            assert "body too long" in str(raises(OSError, read, sock))
            continue
        got = read(sock)
        assert got[:2] == (status, want), (got[:2], status, want)
        assert got[2] == (data if len(body) < wire.BODY + (framing == 0) else body[:wire.BODY])


def test_body_until_eof_without_a_length():
    assert read(Sock(http(b"", TOKEN, False)))[2] == TOKEN


def test_too_long_a_kept_header_or_body_is_refused():
    e = raises(OSError, read, Sock(http(b"Date: " + b"x" * 400 + b"\r\n")))
    assert "header too long" in str(e)
    e = raises(OSError, read, Sock(http(b"", b"x" * (wire.BODY + 1))))
    assert "body too long" in str(e)
    e = raises(OSError, read, Sock(http(b"", b"x" * (wire.BODY + 1), False)))
    assert "body too long" in str(e)


def test_a_refusal_with_a_long_problem_document_still_counts():
    # a 410 or 403 whose body passes the buffer: its status is the answer, not a transport
    # failure (which would present the refused token again), and the problem's "type" at
    # the start of the document is still there to read
    doc = b'{"type": "urn:problem:tokenRevoked", "detail": "' + b"d" * 3000 + b'"}'
    for length in (True, False):
        answer = http(b"", doc, length).replace(b"201 Created", b"410 Gone")
        sock = Sock(answer, piece=512)
        status, h, body = read(sock)
        assert status == 410 and body == doc[:wire.BODY]
        assert sock.pos < len(answer)  # the rest is left unread


def test_a_status_line_longer_than_the_line_buffer_still_counts():
    # a long reason phrase passes by like a long unused header: a 410 stays a 410 (as a
    # transport failure its dead token would be presented again)
    for reason in (b"G" * 245, b"Gone " * 200):
        for piece in (7, 100, 1460):
            answer = http(b"Retry-After: 30\r\n", b"{}").replace(b"201 Created",
                                                                    b"410 " + reason)
            status, h, body = read(Sock(answer, piece))
            assert (status, h["retry-after"], body) == (410, "30", b"{}"), (len(reason), piece)


def test_broken_answers_are_errors_not_crashes():
    for data in (b"", b"SMTP ready\r\n\r\n", b"HTTP/1.1 20", b"HTTP/1.1 201 Created\r\nA: b",
                 http(b"Content-Length: 9999x\r\n", TOKEN, False),
                 http(b"Transfer-Encoding: chunked\r\n", b"zz\r\nab\r\n0\r\n\r\n", False),
                 http(b"", TOKEN)[:-5]):
        raises(OSError, read, Sock(data))
    # a negative chunk size leads back, not on: it once spun for ever, the deadline
    # unchecked (it is only while a socket blocks)
    for size in (b"-6", b"-1", b"-1000"):
        chunks = size + b"\r\nabcdef\r\n0\r\n\r\n"
        e = raises(OSError, read, Sock(http(b"Transfer-Encoding: chunked\r\n", chunks, False)))
        assert "bad answer" in str(e), size
    # closed short of its Content-Length, a length past the buffer too: cut short, not whole
    # a length of 2**30 or more too: it once read as "no length", the answer up to EOF
    for length in (b"5000", b"1073741823", b"2147483648", b"99999999999999999999"):
        for status in (b"201 Created", b"403 Forbidden"):
            data = http(b"Content-Length: " + length + b"\r\n", TOKEN, False).replace(
                b"201 Created", status)
            assert "truncated" in str(raises(OSError, read, Sock(data))), (status, length)


def test_a_garbled_status_line_is_a_bad_answer_not_a_status():
    # read from fixed places, "4100" was a 410 (the token dead for good) and "XTTP/1.1 201"
    # a rotation
    for line in (b"HTTP/1.1 4100 Gone", b"XXXXXXXX 410 Gone", b"HTTP/1.1 410x",
                 b"XTTP/1.1 201 Created", b"HTTP/1.1 201Created", b"HTTP/1.1 2011 Created",
                 b"HTTP/1.1  41 Gone", b"HTTP/1.1 +41 Gone", b"HTTP/2 201", b"HTTP/1.1 201"):
        data = http(b"", TOKEN).replace(b"HTTP/1.1 201 Created", line, 1)
        if line == b"HTTP/1.1 201":  # the line cut before its end, the answer with it
            data = line
        e = raises(OSError, read, Sock(data))
        assert "bad answer" in str(e) or "truncated" in str(e), (line, str(e))
    for line in (b"HTTP/1.0 201", b"HTTP/1.1 201 ", b"HTTP/1.1 201 Created"):
        for end in (b"\r\n", b"\n"):
            data = http(b"", TOKEN).replace(b"HTTP/1.1 201 Created\r\n", line + end, 1)
            got = read(Sock(data))
            assert (got[0], got[2]) == (201, TOKEN), (line, end)


def test_a_byte_past_ascii_in_a_header_spoils_only_that_header():
    # obs-text is legal in a field value: it once made str() of a kept header fail, and the
    # whole answer a transport failure (a 410 presented again, a 201's token thrown away)
    head = b"Date: Thu, 03 D\xe9c 2026 10:00:00 GMT\r\nRetry-After: 1\xe9\r\n" \
        b"D\xe9te: x\r\nSet-Cookie: \xff\xfe\r\n"
    for status in (b"201 Created", b"410 Gone", b"403 Forbidden"):
        st, h, body = read(Sock(http(head).replace(b"201 Created", status)))
        assert (st, body) == (int(status[:3]), TOKEN)
        assert h["date"] == "Thu, 03 D?c 2026 10:00:00 GMT" and h["retry-after"] == "1?"
        assert sorted(h) == ["content-length", "date", "retry-after"]
    # a length with one is no length: a bad answer; a name with one is no kept header
    e = raises(OSError, read, Sock(http(b"Content-Length: 29\xb7\r\n", TOKEN, False)))
    assert "bad answer" in str(e)
    st, h, body = read(Sock(http(b"Content-L\xe5ngth: 9\r\n", TOKEN, False)))
    assert (st, h, body) == (201, {}, TOKEN)  # read up to EOF



def test_folded_header_lines_are_unfolded():
    # obs-fold: a line that starts with a space or a tab goes on with the header before;
    # RFC 9112 5.2: a recipient must replace each fold with a space before reading the
    # value. Unread, a folded Content-Length failed every 2xx, a folded Retry-After was lost
    head = (b"Content-Length:\r\n %d\r\nX-Long: a\r\n\tb: c\r\nRetry-After:\r\n\t 30\r\n"
            b"Date: Fri, 15 Jan\r\n 2027 08:00:00\r\n\tGMT\r\n" % len(TOKEN))
    for piece in (1, 9, 1460):
        st, h, body = read(Sock(http(head, TOKEN, False), piece))
        assert (st, body) == (201, TOKEN)
        assert h == {"content-length": str(len(TOKEN)), "retry-after": "30",
                     "date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # X-Long's fold passes by
    # unfolded, a value is bounded as one line is: 20 folds of 250 bytes were one value
    # of 5 KB, rebuilt at each fold (a MemoryError on a small heap)
    many = b"Retry-After: 1\r\n" + (b" " + b"9" * 250 + b"\r\n") * 20
    for piece in (7, 1460):
        e = raises(OSError, read, Sock(http(many), piece))
        assert "header too long" in str(e)
    # a fold with no header before it, or after one not kept, is not kept
    st, h, body = read(Sock(http(b" Retry-After: 5\r\nX: y\r\n Date: z\r\n")))
    assert (st, body) == (201, TOKEN) and h == {"content-length": str(len(TOKEN))}
    # nor one after a 1xx's last header: the final answer's headers start anew
    early = b"HTTP/1.1 103 Early Hints\r\nRetry-After: 9\r\n\r\n"
    st, h, body = read(Sock(early + http(b" 7\r\n")))
    assert h == {"content-length": str(len(TOKEN))}


def test_a_bad_answer_never_quotes_a_token_it_carries():
    # a 201 that says chunked but carries the token object plain: int() of the "chunk size"
    # quotes the line, which is the whole object; the error says 48 characters of it at most
    tok = "eyJ" + "A1b2C3d4" * 30
    body = b'{"registrationToken": "%s", "expirationTime": null}' % tok.encode()
    for head in (b"Transfer-Encoding: chunked\r\n", b"Content-Length: %s\r\n" % tok[:200].encode()):
        e = raises(OSError, read, Sock(http(head, body + b"\r\n0\r\n\r\n", False)))
        assert str(e).startswith("bad answer: ") and len(str(e)) <= 12 + 48, str(e)
        assert tok[:12] not in str(e)

def test_urls_with_ipv6_literals():
    assert wire.split_url("http://[::1]:8080") == (False, "::1", 8080, "/", "[::1]:8080")
    assert wire.split_url("https://[2001:db8::1]/v1/x") == (
        True, "2001:db8::1", 443, "/v1/x", "[2001:db8::1]")
    assert wire.split_url("http://h.example:81/p") == (False, "h.example", 81, "/p",
                                                       "h.example:81")


def test_the_request_written_and_ipv6_hosts_in_brackets():
    w = client()
    sock = Sock(http(b""))
    exchange(w, Net(sock), "PUT", "http://[::1]:8080/v1/r", b'{"a": 1}', {"X-K": "v"})
    assert sock.sent == (b"PUT /v1/r HTTP/1.1\r\nHost: [::1]:8080\r\nConnection: close\r\n"
                         b"Content-Length: 8\r\nX-K: v\r\n\r\n{\"a\": 1}")
    assert sock.addr == ("::1", 8080) and sock.closed
    # a body of another length, other headers: the head follows
    sock = Sock(http(b""))
    exchange(w, Net(sock), "POST", "http://[::1]:8080/v1/r", b"{}", {})
    assert sock.sent.startswith(b"POST /v1/r HTTP/1.1\r\n")
    assert b"Content-Length: 2\r\n\r\n{}" in sock.sent and b"X-K" not in sock.sent


def test_a_body_longer_than_the_buffer_is_still_sent_whole():
    sock = Sock(http(b""))
    body = b"x" * (wire.BODY + 100)
    exchange(client(), Net(sock), body=body)
    assert sock.sent.endswith(b"\r\n\r\n" + body)


def test_the_address_is_kept_until_a_request_fails():
    w = client()
    net = Net(Sock(http(b"")), Sock(http(b"")), Sock(b"SMTP ready\r\n"), Sock(http(b"")))
    exchange(w, net)
    exchange(w, net)
    assert net.resolved == [("h.example", 8080)]  # resolved once for two requests
    raises(OSError, exchange, w, net)
    exchange(w, net)
    assert net.resolved == [("h.example", 8080)] * 2  # and again after the failure
    exchange(w, Net(Sock(http(b""))), url="http://other.example/x")
    assert w.parts[1] == "other.example"


def test_a_dns_failure_names_the_host():
    net = Net()
    net.fail = OSError(-2)
    e = raises(OSError, exchange, client(), net, url="http://no-such.invalid/x")
    assert "no-such.invalid" in str(e)


def test_a_failed_request_closes_its_socket():
    sock = Sock(b"HTTP/1.1 201 Created\r\nContent-Length: 99\r\n\r\n{}")
    raises(OSError, read, sock)
    assert sock.closed


def test_an_exchange_never_ended_is_closed_by_the_next():
    # an asyncio loop left mid-call (a Ctrl-C) never closes that exchange's generator: its
    # socket stayed open and registered in the client's poll, where it read as ready for
    # ever, and every later call spun on the loop past its deadline
    class Select:
        made = []

        @classmethod
        def poll(cls):
            cls.made.append(Poll())
            return cls.made[-1]

    w = client()
    old = w.p
    first = Sock(http(b""), piece=10)
    net = Net(first, Sock(http(b"")))
    saved = swap_module("socket", net), wire.time, wire.select
    wire.time, wire.select = Ticks, Select  # type: ignore[assignment]
    try:
        x = w._x("PUT", URL, b"{}", {})
        next(x)  # waits for the answer's next piece, its socket registered
        assert not first.closed
        for _ in w._x("PUT", URL, b"{}", {}):  # x is left as it is, never closed
            pass
    finally:
        restore_module("socket", saved[0])
        wire.time, wire.select = saved[1], saved[2]
    assert first.closed and w.p is not old and w.p is Select.made[0]
    assert w.ans == (201, {"content-length": str(len(TOKEN))}, TOKEN)
    assert w.r is None  # the second one ended


def test_the_deadline_holds_across_a_32_bit_ports_ticks_wrap():
    # a request begun in the last timeout_s before the wrap: its deadline was the plain
    # sum, past the period, and a stalled server held the device ~74 h, not timeout_s
    ticks = Ticks30(Ticks30.P - 2000)
    w = client()  # timeout_s 5
    assert exchange(w, Net(Sock(http(b""))), ticks=ticks)[0] == 201
    saved = wire.time
    wire.time = ticks  # type: ignore[assignment]
    try:
        assert w._left() == 5000
        ticks.t = 2000  # 4 s on, past the wrap
        assert w._left() == 1000
        ticks.t = 3001
        raises(OSError, w._left)  # timed out
    finally:
        wire.time = saved


def test_headers_changed_in_place_change_the_request():
    w = client()
    headers = {"X-K": "v"}
    exchange(w, Net(Sock(http(b""))), headers=headers)
    headers["X-K"] = "w"  # the same dict, changed: the next request must say so
    sock = Sock(http(b""))
    exchange(w, Net(sock), headers=headers)
    assert b"\r\nX-K: w\r\n" in sock.sent


def test_the_buffer_kept_from_import_goes_to_the_first_client_only():
    # allocated when wire is imported (at boot, while the heap is emptiest): the first Wire
    # takes it, a second has its own, and nobody else can take it twice
    b = wire._spare = bytearray(wire.BODY)
    first = wire.Wire(5)
    assert first.buf is b and wire._spare is None
    second = wire.Wire(5)
    assert second.buf is not b and len(second.buf) == wire.BODY


class Tls:
    """Stands in for the tls module: counts the contexts made and the sockets wrapped."""
    PROTOCOL_TLS_CLIENT = 2
    CERT_NONE = 0
    CERT_REQUIRED = 2

    def __init__(self):
        self.made = []
        self.wrapped = []

    def SSLContext(self, protocol):  # noqa: N802  (the tls module's name)
        tls = self

        class Ctx:
            verify_mode = None

            def __init__(self):
                self.cas = []
                tls.made.append(self)

            def load_verify_locations(self, der):
                self.cas.append(der)

            def wrap_socket(self, s, server_hostname=None, do_handshake_on_connect=True):
                assert do_handshake_on_connect is False  # the handshake runs non-blocking
                tls.wrapped.append(server_hostname)
                return s

        return Ctx()


def test_one_tls_context_per_client_made_once_and_reused():
    # ~3 KB in one piece per context: made at the first https request (boot.py makes it
    # at construction), reused by every later one; the CA blobs are dropped once parsed
    fake = Tls()
    saved = swap_module("tls", fake)
    try:
        w = client()
        w.ca = [b"der-1", b"der-2"]
        for _ in range(3):
            exchange(w, Net(Sock(http(b""))), url="https://h.example/x")
        assert len(fake.made) == 1 and fake.wrapped == ["h.example"] * 3
        ctx = fake.made[0]
        assert ctx.cas == [b"der-1", b"der-2"] and ctx.verify_mode == Tls.CERT_REQUIRED
        assert w.ca is None and w.ctx is ctx
        exchange(w, Net(Sock(http(b""))))  # plain http: not wrapped
        assert fake.wrapped == ["h.example"] * 3
        w = client()  # no CA: TLS without verification (tls_verify false)
        exchange(w, Net(Sock(http(b""))), url="https://h.example/x")
        assert fake.made[1].verify_mode == Tls.CERT_NONE and fake.made[1].cas == []
    finally:
        restore_module("tls", saved)
