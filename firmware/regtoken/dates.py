# Wall-clock arithmetic in Unix seconds, computed by hand so that it never depends on the
# port's epoch (1970 on unix and rp2, 2000 on older ESP32 builds) or its time.mktime.
import time

_MONTHS = "JanFebMarAprMayJunJulAugSepOctNovDec"


def days(y, m, d):
    # days since 1970-01-01 in the proleptic Gregorian calendar (Hinnant's algorithm)
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    return era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468


EPOCH = days(time.gmtime(0)[0], 1, 1) * 86400  # the port's epoch in Unix seconds


def _unix(y, mo, d, h, mi, s):
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise ValueError("date out of range")
    return days(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def _num(s, a, b):
    # the digits s[a:b] as an int, read in place (no slice: nothing allocated)
    n = 0
    for i in range(a, b):
        c = ord(s[i]) - 48
        if not 0 <= c <= 9:
            raise ValueError("bad date-time")
        n = n * 10 + c
    return n


def rfc3339(s):
    """'2024-11-28T14:03:07.316Z' or '...+hh:mm' -> Unix seconds, fraction dropped.
    None (a token that never expires) stays None."""
    if s is None:
        return None
    if not isinstance(s, str) or not 20 <= len(s) <= 40 or s[4] != "-" or s[7] != "-" \
            or s[13] != ":" or s[16] != ":" or s[10] not in "Tt ":
        raise ValueError("bad date-time")
    t = _unix(_num(s, 0, 4), _num(s, 5, 7), _num(s, 8, 10), _num(s, 11, 13), _num(s, 14, 16),
              _num(s, 17, 19))
    i = 19
    n = len(s)
    if s[i] == ".":
        i += 1
        j = i
        while i < n and "0" <= s[i] <= "9":
            i += 1
        if i == j:
            raise ValueError("bad date-time")
    if n - i == 1 and s[i] in "Zz":
        return t
    if n - i != 6 or s[i] not in "+-" or s[i + 3] != ":":
        raise ValueError("bad date-time")
    off = _num(s, i + 1, i + 3) * 3600 + _num(s, i + 4, i + 6) * 60
    return t - off if s[i] == "+" else t + off


def iso(t):
    """Unix seconds -> '2026-12-01T07:40:40Z' (None: 'never')."""
    if t is None:
        return "never"
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % time.gmtime(t - EPOCH)[:6]


def http_date(s):
    """RFC 7231 IMF-fixdate 'Sun, 06 Nov 1994 08:49:37 GMT' -> Unix seconds, else None."""
    try:
        p = s.split()
        hms = p[4].split(":")
        return _unix(int(p[3]), _MONTHS.index(p[2]) // 3 + 1, int(p[1]),
                     int(hms[0]), int(hms[1]), int(hms[2]))
    except (AttributeError, IndexError, ValueError):
        return None
