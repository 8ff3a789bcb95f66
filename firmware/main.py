# The device loop: a thin user of the regtoken API. On a board, board/loop.py joins Wi-Fi,
# sets the clock, shows the state on the LED and sleeps between steps; the unix port needs
# none of that and imports nothing of board/. Stops on Ctrl-C / SIGINT; SIGTERM ends the
# process at once, which the store is built to survive.
import sys
import time

import regtoken
from regtoken.edges import log

BOARD = sys.platform != "linux"  # the unix port (the virtual board) has no radio, no RTC


def boot():
    cfg = regtoken.load("config.json")  # checked before the refresher's code is loaded
    return regtoken.Refresher(cfg)


def main():
    wait = 1
    while True:
        try:
            if BOARD:  # runs until an exception escapes a boot or a step
                t = time.time()
                from board.loop import run

                return run(regtoken.load("config.json"))
            r = boot()
            break
        except regtoken.ConfigError as e:
            log("stopped: %s" % e)
            return 2
        except Exception as e:  # no heap for the refresher yet (its import, its boot), a
            # board's radio failing: one line and a boot again, from what the store holds,
            # as a restart would; never a traceback at the REPL, where a board would sit
            # until a power cycle
            if BOARD and abs(time.time() - t) > 256:  # abs: NTP may have set the clock
                wait = 1  # it ran: a fault after a boot that worked starts the waits anew
            log("boot: %s %.48s; again in %d s" % (type(e).__name__, e, wait))
            time.sleep(wait)
            wait = min(wait * 4, 256)
    while True:
        w = r.step()
        time.sleep(86400 if w is None else w)


if __name__ == "__main__":
    try:
        rc = main()
    except KeyboardInterrupt:
        log("stopped")
        rc = None
    # a board's main.py just ends, at the REPL: a SystemExit from it soft-resets the board,
    # which runs main.py again, so a config error would loop for ever, and the raw REPL
    # that mpremote (make provision) needs to fix it would be hard to reach
    if not BOARD:  # the unix port's exit status: 2 for a config error
        sys.exit(rc)
