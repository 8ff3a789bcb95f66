# Wall-clock arithmetic in Unix seconds, computed by hand so that it never depends on the
# port's epoch (1970 on unix and rp2, 2000 on older ESP32 builds) or its time.mktime.
import time


def days(y, m, d):
    # days since 1970-01-01 in the proleptic Gregorian calendar (Hinnant's algorithm, with
    # floor division doing the eras); the year starts in March so that Feb 29 comes last
    y -= m <= 2
    return y * 365 + y // 4 - y // 100 + y // 400 + (153 * ((m + 9) % 12) + 2) // 5 + d - 719469


EPOCH = days(time.gmtime(0)[0], 1, 1) * 86400  # the port's epoch in Unix seconds


def _num(s, i, top, sep):
    # the two digits at s[i] as an int below top, followed by a character of sep (when
    # given); ValueError for anything else (int() would allocate a slice, and take other
    # Unicode digits under CPython)
    v = "0123456789".index(s[i]) * 10 + "0123456789".index(s[i + 1])
    if v < top and (sep is None or s[i + 2] in sep):
        return v
    raise ValueError


def rfc3339(s):
    """'2024-11-28T14:03:07.316Z' or '...+hh:mm' -> Unix seconds, the fraction (of any
    length) dropped; ValueError for anything else. None (never expires) stays None.
    Read in place: nothing is allocated."""
    if s is None:
        return None
    n = isinstance(s, str) and len(s)
    if n > 19:
        mo = _num(s, 5, 13, "-")
        d = _num(s, 8, 32, "Tt ")
        t = (days(_num(s, 0, 100, None) * 100 + _num(s, 2, 100, "-"), mo, d) * 24
             + _num(s, 11, 24, ":")) * 3600 + _num(s, 14, 60, ":") * 60 + _num(s, 17, 61, None)
        i = 19  # a leap second passes as :60
        if s[19] == ".":
            i = 20
            while i < n - 1 and s[i] in "0123456789":  # the zone follows, unread
                i += 1
        n -= i
        if not mo * d or i == 20:  # month or day 0, a fraction without a digit
            raise ValueError
        if n == 1 and s[i] in "Zz":
            return t
        if n == 6:  # "+" is east of UTC: subtract
            return t + (_num(s, i + 1, 24, ":") * 60 + _num(s, i + 4, 60, None)) * 60 \
                * ("+-".index(s[i]) * 2 - 1)
    raise ValueError


def iso(t):
    """Unix seconds -> '2026-12-01T07:40:40Z' (None: 'never')."""
    if t is None:
        return "never"
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t - EPOCH)[:6]


def http_date(s):
    """RFC 7231 IMF-fixdate 'Sun, 06 Nov 1994 08:49:37 GMT' -> Unix seconds, else None."""
    try:  # read as the RFC 3339 date-time it stands for, '1994-11-06 08:49:37Z'
        if s[3:5] == ", " and s[16] == " ":
            return rfc3339("%s-%02d-%s%s" % (
                s[12:16], " Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec ".index(s[7:12]) // 4
                + 1, s[5:7], s[16:].replace(" GMT", "Z")))
    except Exception:  # not a str, a field out of place or out of range
        pass
    return None
