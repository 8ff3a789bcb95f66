# What the server's answer means. Pure: no I/O, identical under CPython and MicroPython.
# 15 globals: a 16th would grow the module's dict by 96 B of heap (json is imported where
# it is used: a built-in module, found again without allocating).
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
    # printable ASCII, no spaces: it goes into JSON and headers. Checked on its bytes: on
    # MicroPython min()/max() of a str intern every distinct character as a name, for good
    # (up to ~90 of them, and the name pool's next doubling)
    if not isinstance(t, str) or not 0 < len(t) <= MAX_TOKEN:
        return False
    b = t.encode()
    return 32 < min(b) and max(b) < 127


def token_object(body):
    """(token, exp) from a token object, exp Unix seconds or None (never expires);
    ValueError for anything else: not JSON, not an object, a key missing or bad."""
    _, t, e, _, _ = classify(200, None, body, 0)
    if t:
        return t, e
    raise ValueError


def retry_after(headers, now):
    v = headers.get("retry-after", "").strip()
    return min(max(int(v) if v.isdigit() else (http_date(v) or now) - now, 0), MAX_RETRY_AFTER)


def classify(status, headers, body, now):
    """-> (outcome, token, exp, retry_after_s, why). `headers` has lower-case names; exp
    is Unix seconds or None (the token never expires)."""
    # allocates only what json.loads does and the result: the other strings are constants
    if status == 200 or status == 201:
        try:
            import json

            o = json.loads(body)
            t = o["registrationToken"]
            e = rfc3339(o["expirationTime"])
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
