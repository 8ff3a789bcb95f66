# When to refresh and how long to back off. Pure arithmetic on Unix seconds: the caller
# passes `now` (or the seconds a token has `left`) and a random number in [0, 1), so tests
# replay any schedule exactly and a fleet simulator can run it for 10,000 devices.

SAFETY = 600  # refresh at the latest this long before expiry, when the lifetime allows
MARGIN = 60  # a retry ends this long before expiry: one request's time, plus clock skew
SPREAD = 300  # a fleet booting together spreads its overdue refreshes over up to 5 min


def refresh_at(issued, exp, rnd):
    """The refresh time of a token valid from `issued` until `exp`: from half its lifetime
    (rnd 0) to SAFETY before expiry, or 80 % of a short lifetime (rnd 1)."""
    life = exp - issued
    early = issued + life // 2
    return early + int(((exp - SAFETY if life > 5 * SAFETY else issued + life * 4 // 5) - early)
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
    retries get denser as expiry nears (never below `lo`). Retry-After is a floor plus
    jitter."""
    f = 4 * lo if prev > 0 else lo  # lo after a success, else past the previous band
    while f <= prev:
        f *= 4  # the band above the one the previous wait came from
    a, b = min(f, hi), min(2 * f, hi)  # rnd 0 draws `a`; b >= a
    if left and left > 0:
        c = (left - MARGIN) // 2
        if c < b:
            a, b = c, c // 2
    # rounded: a 1 s minimum jitters too
    return max(int(a + (b - a) * rnd + 0.5), lo, retry_after and floor(retry_after, rnd))
