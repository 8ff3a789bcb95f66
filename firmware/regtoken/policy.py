# The rules, pure: no I/O, identical under CPython and MicroPython. The caller passes `now`
# (or the seconds a token has `left`) and a random number in [0, 1), so tests replay any
# schedule exactly and a fleet simulator can run it for 10,000 devices. One module, not
# three: each module a board imports keeps ~300 bytes of heap of its own for years.
#
#   dates:    wall-clock arithmetic in Unix seconds
#   schedule: when to refresh, how long to back off
#   answers:  what the server's answer means
import time

# -- dates ------------------------------------------------------------------------------
# Wall-clock arithmetic in Unix seconds, computed by hand so that it never depends on the
# port's epoch (1970 on unix and rp2, 2000 on older ESP32 builds) or its time.mktime.


def days(y, m, d):
    # days since 1970-01-01 in the proleptic Gregorian calendar (Hinnant's algorithm, with
    # floor division doing the eras); the year starts in March so that Feb 29 comes last
    y -= m <= 2
    return y * 365 + y // 4 - y // 100 + y // 400 + (153 * ((m + 9) % 12) + 2) // 5 + d - 719469


EPOCH = days(time.gmtime(0)[0], 1, 1) * 86400  # the port's epoch in Unix seconds
RELEASED = 1796083200  # 2026-12-01: no clock running this firmware can be earlier


def _num(b, i, top):
    # the two ASCII digits at b[i] as an int below top; ValueError for anything else
    # (int() would allocate a slice, and take other Unicode digits under CPython)
    x = b[i] - 48
    y = b[i + 1] - 48
    if 0 <= x <= 9 and 0 <= y <= 9 and x * 10 + y < top:
        return x * 10 + y
    raise ValueError


def rfc3339(s):
    """'2024-11-28T14:03:07.316Z' or '...+hh:mm' -> Unix seconds, the fraction (of any
    length) dropped; ValueError for anything else. None (never expires) stays None.
    Read in place, on its bytes, against ints: indexing a str makes a one-character str,
    which MicroPython interns as a name for good (a digit, a "T": the pool's next table),
    and a bytes constant is an object on the heap."""
    if s is None:
        return None
    if not isinstance(s, str):
        raise ValueError
    b = s.encode()
    n = len(b)
    # "-" at 4 and 7, "T", "t" or " " at 10 ("T" | 32 is "t"), ":" at 13 and 16
    if n > 19 and b[4] == b[7] == 45 and (b[10] | 32 == 116 or b[10] == 32) \
            and b[13] == b[16] == 58:
        mo = _num(b, 5, 13)
        d = _num(b, 8, 32)
        y = _num(b, 0, 100) * 100 + _num(b, 2, 100)
        e = days(y, mo, d)
        t = (e * 24 + _num(b, 11, 24)) * 3600 + _num(b, 14, 60) * 60 + _num(b, 17, 61)
        i = 19  # a leap second passes as :60
        if b[19] == 46:  # "."
            i = 20
            while i < n - 1 and 48 <= b[i] <= 57:  # digits; the zone follows, unread
                i += 1
        n -= i
        # month 0, day 0 or past the month's end (days() of month 13 is next January's),
        # a fraction without a digit
        if not mo * d or e >= days(y, mo + 1, 1) or i == 20:
            raise ValueError
        if n == 1 and b[i] | 32 == 122:  # "Z" or "z"
            return t
        if n == 6 and (b[i] == 43 or b[i] == 45) and b[i + 3] == 58:  # "+" is east: subtract
            return t + (_num(b, i + 1, 24) * 60 + _num(b, i + 4, 60)) * 60 * (b[i] - 44)
    raise ValueError


def iso(t):
    """Unix seconds -> '2026-12-01T07:40:40Z' (None: 'never')."""
    if t is None:
        return "never"
    try:
        return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t - EPOCH)[:6]
    except OverflowError:  # past a 32-bit port's gmtime (2106 on rp2): the log line stays
        return "@%d" % t


def http_date(s):
    """RFC 9110's IMF-fixdate 'Sun, 06 Nov 1994 08:49:37 GMT' -> Unix seconds, else None.
    Read in place like rfc3339: a refresh reads the answer's Date, and one slice (the
    month's name) is all it allocates. The two obsolete forms, which a recipient must
    accept too, 'Sunday, 06-Nov-94 08:49:37 GMT' and 'Sun Nov  6 08:49:37 1994', are
    rewritten to it first (only they allocate more)."""
    try:
        if len(s) != 29:
            p = s.replace("-", " ").split()
            if len(p) == 5:  # asctime's order, and GMT unsaid
                p = 0, p[2], p[1], p[4], p[3], "GMT"
            _, d, m, y, t, z = p
            y = int(y)
            if y < 100:  # RFC 850's two digits: the latest such year not 50 years on
                y += 1900 if y >= 70 else 2000
            s = "Sun, %02d %s %d %s %s" % (int(d), m, y, t, z)
        b = s.encode()
        m = "JanFebMarAprMayJunJulAugSepOctNovDec".find(s[8:11])
        if len(b) == 29 and m % 3 == 0 and b[3] == 44 and b[4] == b[7] == b[11] == b[16] \
                == b[25] == 32 and b[19] == b[22] == 58 and s.endswith("GMT"):
            m = m // 3 + 1
            d = _num(b, 5, 32)
            y = _num(b, 12, 100) * 100 + _num(b, 14, 100)
            e = days(y, m, d)
            if d and e < days(y, m + 1, 1):  # day 0, or past the month's end: no date
                return ((e * 24 + _num(b, 17, 24)) * 60 + _num(b, 20, 60)) * 60 \
                    + _num(b, 23, 61)
    except Exception:  # not a str, a field out of place or out of range
        pass
    return None


# -- schedule ---------------------------------------------------------------------------

SAFETY = 600  # refresh at the latest this long before expiry, when the lifetime allows
MARGIN = 60  # a retry ends this long before expiry: one request's time, plus clock skew
SPREAD = 300  # a fleet booting together spreads its overdue refreshes over up to 5 min


def refresh_at(issued, exp, rnd):
    """The refresh time of a token valid from `issued` until `exp`: from half its lifetime
    (rnd 0) to SAFETY before expiry, or 80 % of a lifetime too short for that (rnd 1)."""
    life = exp - issued
    early = issued + (life + 1) // 2  # rounded up: whole seconds, a 3 s token's at 2, not 1
    return early + int(((exp - SAFETY if life > 2 * SAFETY else issued + life * 4 // 5) - early)
                       * rnd)


def boot_delay(now, exp, rnd):
    """A fleet powered up together must not reach the server in one second: spread the
    overdue refresh over SPREAD, but end it a margin before expiry (half the time left,
    when less than two margins are left)."""
    left = exp - now
    return int(max(min(SPREAD, max(left - MARGIN, left // 2)), 0) * rnd)


def floor(t, rnd):
    """A wait the server set (Retry-After, or the 403 hold) plus up to half of it again:
    a fleet told the same time must not come back in the same second."""
    return t + int(t * rnd / 2)


def backoff(prev, lo, hi, rnd, retry_after=0, left=None):
    """Wait after a failure, given the previous wait (0 after a success) and the seconds
    the token has `left` (None: no expiry). Equal jitter over bands four times apart: the
    first wait is drawn from [lo, 2 lo], the next from [4 lo, 8 lo], ..., so each at
    least doubles the last without compounding; a band that passes `hi` ends at `hi`, and
    from then on every wait is `hi` (it still "at least doubles up to the cap"; the fleet
    keeps the phases it drew on the way up, so it does not fall into step).
    While the token is valid the wait ends at most half-way to expiry minus MARGIN, so
    retries get denser as expiry nears (never below `lo`); once not even `lo` fits before
    that point, the waits double again, as after expiry (a token of a minute or two is in
    its last MARGIN from its first failure: its waits double, as the contract says).
    Retry-After is a floor plus jitter."""
    f = 4 * lo if prev > 0 else lo  # lo after a success, else past the previous band
    while f <= prev:
        f *= 4  # the band above the one the previous wait came from
    # rnd 0 draws `a`; b >= a. A previous wait out of the bands (a Retry-After's) is still
    # at least doubled
    a, b = min(max(f, 2 * prev), hi), min(2 * f, hi)
    if left and left - MARGIN > lo:
        c = (left - MARGIN) // 2
        if c < b:
            a, b = c, c // 2
    # rounded: a 1 s minimum jitters too
    return max(int(a + (b - a) * rnd + 0.5), lo, retry_after and floor(retry_after, rnd))


# -- answers ----------------------------------------------------------------------------

MAX_TOKEN = 1024  # the API states no maximum; tokens seen are ~250 characters
MAX_RETRY_AFTER = 86400  # a hostile Retry-After must not park the device for years

# outcomes; the failures double as status()'s machine-readable `reason`
ROTATED = "rotated"  # 201: normal rotation, the parent is now in its grace period
RECOVERED = "recovered"  # 200: a retry after a lost answer; the unseen child was revoked
FORBIDDEN = "forbidden"  # 403
GONE = "gone"  # 410: this token can never be refreshed again
THROTTLED = "throttled"  # 412
GARBAGE = "garbage"  # a 200/201 without a valid token object
SERVER = "server"  # any other status: 5xx, 429, proxies


def valid_token(t):
    # printable ASCII, no spaces: it goes into JSON and headers. Checked on its bytes: on
    # MicroPython min()/max() of a str intern every distinct character as a name, for good
    # (up to ~90 of them, and the name pool's next doubling)
    if not isinstance(t, str) or not 0 < len(t) <= MAX_TOKEN:
        return False
    b = t.encode()
    return 32 < min(b) and max(b) < 127


def retry_after(headers, now):
    v = headers.get("retry-after", "").strip()
    if v.isdigit():
        w = int(v)
    else:  # a date is on the server's clock: counted from its Date (RFC 9110), as ours
        w = http_date(v)  # may be off by hours
        w = w - (http_date(headers.get("date")) or now) if w else 0
    return min(max(w, 0), MAX_RETRY_AFTER)


def classify(status, headers, body, now):
    """-> (outcome, token, exp, retry_after_s, why). `headers` has lower-case names; exp
    is Unix seconds or None (the token never expires)."""
    # allocates only what json.loads does and the result: the other strings are constants
    if status == 200 or status == 201:
        try:
            import json

            o = json.loads(body)
            t = o["registrationToken"]
            e = rfc3339(o.get("expirationTime"))  # only the token is required: absent is null
        except MemoryError:
            # no heap to read it: a token object may be lost, the device's failure (the
            # refresher logs it); without the key it was garbage all the same (a hostile
            # nest of 2 KB of "[" takes a board's whole heap)
            if b'"registrationToken"' in body:
                raise
            t = None
        except Exception:  # not JSON, not an object, a key missing, a bad date
            t = None
        if valid_token(t):
            if status == 200:
                return RECOVERED, t, e, 0, "200"
            return ROTATED, t, e, 0, "201"
        return GARBAGE, None, None, 0, "%d without a valid token" % status
    k = SERVER
    if status == 403:
        k = FORBIDDEN
    if status == 410:
        k = GONE
    if status == 412:
        k = THROTTLED
    return k, None, None, retry_after(headers, now), "HTTP %d" % status
