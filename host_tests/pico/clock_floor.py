# Board side (MicroPython): what the refresher does to a real port's RTC at boot, with an
# untrusted clock (no NTP, no server answer yet) as main.py starts on a board without
# NTP. The firmware's own Refresher, store and Clock; the relay transport is never used
# (no request is made before step()).
#
#   clock_floor.main(preset=None or Unix seconds), by tools/bringup/rp2relay.py's call(); the
#   config is the board's config.json
#
# preset first sets the RTC there, as a board whose clock is already ahead. Prints
# @@done@@ {"before": RTC seconds before, "after": RTC seconds after the refresher's
# boot} (time.time(): the rp2 port counts from 1970).
import json
import time

import regtoken
from relay_transport import RelayTransport


def main(preset=None):
    if preset is not None:
        import machine  # type: ignore[import-not-found]

        t = time.gmtime(preset)
        machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
    before = time.time()
    regtoken.open("config.json", transport=RelayTransport(), clock=regtoken.Clock(trusted=False))
    print("@@done@@" + json.dumps({"before": before, "after": time.time()}))
