# What the server's answer means. Pure: no I/O, identical under CPython and MicroPython.
import json

from .dates import http_date, rfc3339

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
    if not isinstance(t, str) or not 0 < len(t) <= MAX_TOKEN:
        return False
    for c in t:
        if not "!" <= c <= "~":  # printable ASCII, no spaces: it goes into JSON and headers
            return False
    return True


def token_object(body):
    """(token, exp) from a token object; exp is Unix seconds or None (never expires)."""
    try:
        obj = json.loads(body)
    except (ValueError, TypeError, UnicodeError):
        raise ValueError("not JSON")
    if not isinstance(obj, dict) or not valid_token(obj.get("registrationToken")) or \
            "expirationTime" not in obj:
        raise ValueError("no valid token object")
    return obj["registrationToken"], rfc3339(obj["expirationTime"])


def retry_after(headers, now):
    v = (headers.get("retry-after") or "").strip()
    if not v:
        return 0
    s = int(v) if v.isdigit() else (http_date(v) or now) - now
    return min(max(s, 0), MAX_RETRY_AFTER)


def classify(status, headers, body, now):
    """-> (outcome, token, exp, retry_after_s, why). `headers` has lower-case names."""
    if status in (200, 201):
        try:
            token, exp = token_object(body)
        except ValueError as e:
            return GARBAGE, None, None, 0, "%d with %s" % (status, e)
        return (ROTATED if status == 201 else RECOVERED), token, exp, 0, str(status)
    kind = {403: FORBIDDEN, 410: GONE, 412: THROTTLED}.get(status, SERVER)
    return kind, None, None, retry_after(headers, now), "HTTP %d" % status
