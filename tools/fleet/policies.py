# The policies the simulator compares. Every one runs inside the real firmware Refresher:
# a baseline only swaps the functions of regtoken.policy that the state machine calls
# (in its own worker process), so the state machine, the store and the answer handling
# are the firmware's own in every column.
from regtoken import policy

OURS = "regtoken"
PREVIOUS = "previous"
NAIVE = "naive"
NAMES = (OURS, PREVIOUS, NAIVE)

DESCRIBE = {
    OURS: "the firmware's policy (firmware/regtoken/policy.py)",
    PREVIOUS: "the policy before issue 11: backoff ×2-2.9 up to 3600 s, Retry-After "
              "exact, boot spread ≤ a quarter of the life left (≤ 10 min), no expiry bound",
    NAIVE: "fixed 30 s retries (like the Spotflow SDK), Retry-After exact, no boot spread; "
           "same refresh schedule",
}


def _previous_backoff(prev, lo, hi, rnd, retry_after=0, left=None):
    base = lo if prev <= 0 else 2 * prev
    wait = base + int((base // 2 + 1) * rnd + 0.5)
    return max(min(wait, hi), lo, retry_after or 0)


def _previous_boot_delay(now, exp, rnd):
    return int(min(max(exp - now, 0) // 4, policy.SAFETY) * rnd)


def _exact(t, rnd):
    return t


def _naive_backoff(prev, lo, hi, rnd, retry_after=0, left=None):
    return max(30, retry_after or 0)


def _no_delay(now, exp, rnd):
    return 0


SWAPS = {
    OURS: {},
    PREVIOUS: {"backoff": _previous_backoff, "boot_delay": _previous_boot_delay,
               "floor": _exact},
    NAIVE: {"backoff": _naive_backoff, "boot_delay": _no_delay, "floor": _exact},
}
# config the baseline ran with, unless the command line says otherwise
DEFAULT_CFG = {PREVIOUS: {"backoff_max_s": 3600}}

_saved = {name: getattr(policy, name) for name in ("backoff", "boot_delay", "floor")}


def use(name):
    """Make regtoken.policy behave as policy `name` (in this process)."""
    for fn, impl in _saved.items():
        setattr(policy, fn, SWAPS[name].get(fn, impl))
