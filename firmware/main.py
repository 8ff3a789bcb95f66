# The device loop: a thin user of the regtoken API. Boards join Wi-Fi and set the clock
# first; the unix port skips both. Stops on Ctrl-C / SIGINT; SIGTERM ends the process at
# once, which the store is built to survive at any instant.
import sys

import regtoken
from regtoken import device
from regtoken.log import log


def boot():
    cfg = regtoken.load("config.json")
    if not device.UNIX and not cfg["wifi"]:
        raise regtoken.ConfigError("config.json: 'wifi' is required on a board")
    led = device.Led(cfg["led"])
    deep = cfg["sleep"] == "deep"
    # A deep-sleep timer wake keeps the RTC's time and the wait in progress: nothing needs
    # the radio until a refresh is due.
    woke = deep and device.woke_from_deep_sleep()
    if not woke:
        led.show("connecting")
        device.connect(cfg["wifi"], log)
    trusted = woke or device.sync_clock(log)
    r = regtoken.Refresher(cfg, clock=regtoken.Clock(trusted=trusted))
    if woke:
        r.resume(device.rtc_load())
    return cfg, led, r


def main():
    try:
        cfg, led, r = boot()
    except regtoken.ConfigError as e:
        log("stopped: %s" % e)
        return 2
    r.on_state(lambda state, why: led.show(state))
    led.show(r.state)
    deep = cfg["sleep"] == "deep"
    while True:
        if r.due_in() == 0 and not r.pending:
            device.connect(cfg["wifi"], log)  # cheap when the link is up
            if r.state == regtoken.HEALTHY:
                device.sync_clock(log)  # RTCs drift, most of all through deep sleep
        wait = r.step()
        if deep and wait is not None:
            device.rtc_save(r.suspend())
        device.sleep(86400 if wait is None else wait, deep and wait is not None)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("stopped")
