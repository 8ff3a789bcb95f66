# The device loop: a thin user of the regtoken API. Boards join Wi-Fi and set the clock
# first; the unix port skips both and imports none of the board edges. Stops on Ctrl-C /
# SIGINT; SIGTERM ends the process at once, which the store is built to survive.
import sys
import time

import regtoken
from regtoken.log import log

BOARD = sys.platform != "linux"  # the unix port (the virtual board) has no radio, no RTC


def boot():
    cfg = regtoken.load("config.json")
    if not BOARD:
        return cfg, None, regtoken.Refresher(cfg)
    from board import led, sleep, wifi

    if not cfg["wifi"]:
        raise regtoken.ConfigError("config.json: 'wifi' is required on a board")
    light = led.Led(cfg["led"])
    # A deep-sleep timer wake keeps the RTC's time and the wait in progress: nothing needs
    # the radio until a refresh is due.
    woke = cfg["sleep"] == "deep" and sleep.woke_from_deep_sleep()
    if not woke:
        light.show("connecting")
        wifi.connect(cfg["wifi"], log)
    r = regtoken.Refresher(cfg, clock=regtoken.Clock(woke or wifi.sync_clock(log)))
    if woke:
        r.resume(sleep.rtc_load())
    r.on_state(lambda state, why: light.show(state))
    return cfg, wifi, r


def main():
    try:
        cfg, wifi, r = boot()
    except regtoken.ConfigError as e:
        log("stopped: %s" % e)
        return 2
    mode = cfg["sleep"]
    while True:
        if wifi and r.due_in() == 0:
            wifi.connect(cfg["wifi"], log)  # cheap when the link is up
            if r.state == regtoken.HEALTHY:
                wifi.sync_clock(log)  # RTCs drift, most of all through deep sleep
        wait = r.step()
        if not wifi:
            time.sleep(86400 if wait is None else wait)
            continue
        from board import sleep

        if mode == "deep":
            sleep.rtc_save(r.suspend())
        sleep.sleep(86400 if wait is None else wait, mode)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("stopped")
