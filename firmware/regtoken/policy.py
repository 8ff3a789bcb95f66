# When to refresh and how long to back off. Pure arithmetic on Unix seconds: the caller
# passes `now` and a random number in [0, 1) so tests replay any schedule exactly.

SAFETY = 600  # refresh at the latest this long before expiry, when the lifetime allows


def refresh_window(issued, exp):
    """(earliest, latest) refresh time for a token valid from `issued` until `exp`."""
    life = exp - issued
    latest = exp - SAFETY if life > 5 * SAFETY else issued + life * 4 // 5
    return issued + life // 2, latest


def refresh_at(issued, exp, rnd):
    early, late = refresh_window(issued, exp)
    return early + int((late - early) * rnd)


def boot_delay(now, exp, rnd):
    # A fleet that powers up together after an outage must not hit the server in one second.
    return int(min(max(exp - now, 0) // 4, SAFETY) * rnd)


def backoff(prev, lo, hi, rnd, retry_after=0):
    """Wait after a failure, given the previous wait (0 after a success): the first is at
    least `lo`, each further one at least doubles, jittered upward, capped at `hi`.
    A server's Retry-After is a floor, even above the cap."""
    base = lo if prev <= 0 else 2 * prev
    wait = base + int((base // 2 + 1) * rnd + 0.5)  # rounded: a 1 s minimum jitters too
    return max(min(wait, hi), lo, retry_after or 0)
