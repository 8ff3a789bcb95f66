# Time from the Date header (test_hostile.py): a clock far in the past, not trusted, is
# set from the server's answer to one refresh, which the refresher logs.
#
#   micropython host_tests/probes/untrusted_clock.py CONFIG.json
#
# Prints BEFORE <now>, then AFTER <now> <trusted> <state> <wait>.
import json
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

import regtoken  # noqa: E402
from regtoken.edges import Clock  # noqa: E402


def main(path):
    with open(path) as f:
        cfg = regtoken.validate(json.load(f))
    clock = Clock(trusted=False)
    clock.offset = -20 * 365 * 86400
    print("BEFORE", clock.now())
    r = regtoken.Refresher(cfg, clock=clock)
    wait = r.step()
    print("AFTER", clock.now(), clock.trusted, r.state, wait)


if __name__ == "__main__":
    main(sys.argv[1])
