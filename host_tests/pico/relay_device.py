# Board side (MicroPython): the refresher on a board with no network, its HTTP relayed by
# tools/bringup/onboard/relay_transport.py. The firmware's own code runs unchanged: regtoken.open
# with the board's real store (littlefs at /) and its real clock, untrusted at boot as on a board
# without NTP (the first answer's Date header sets it); only the transport is the test's.
#
#   relay_device.main(rotations=3), called by tools/bringup/rp2relay.py's call(); the config is
#   the board's config.json, as main.py's
#
# Runs until `rotations` new tokens were committed in this run, or the refresher needs
# provisioning (410); prints @@done@@ and its status (the token redacted) as JSON.
import json
import time

import regtoken

# tools/bringup/onboard/relay_transport.py, beside this file at the board's root
from relay_transport import RelayTransport


def main(rotations=1, max_wait=5):
    clock = regtoken.Clock(trusted=False)
    r = regtoken.open("config.json", transport=RelayTransport(), clock=clock)
    start = r.status()["counts"].get("rotations", 0)
    while True:
        wait = r.step()
        st = r.status()
        done = st["counts"].get("rotations", 0) - start >= rotations
        if done or st["state"] == regtoken.PROVISION:
            break
        time.sleep(min(wait if wait is not None else max_wait, max_wait))
    st["rtc"] = time.time()
    print("@@done@@" + json.dumps(st))
