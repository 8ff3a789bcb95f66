# The device loop: a thin user of the regtoken API. Boards connect Wi-Fi and set the clock
# first; the unix port (sys.platform == "linux") skips both. Stops on Ctrl-C / SIGINT;
# SIGTERM ends the process at once, which the store is built to survive at any instant.
import sys

import regtoken
from regtoken import device
from regtoken.log import log


def main():
    try:
        cfg = regtoken.load("config.json")
        if sys.platform != "linux" and not cfg["wifi"]:
            raise regtoken.ConfigError("config.json: 'wifi' is required on a board")
        led = device.Led(cfg.get("led"))
        led.show("connecting")
        device.connect(cfg["wifi"], log)
        r = regtoken.Refresher(cfg, clock=regtoken.Clock(trusted=device.sync_clock(log)))
    except regtoken.ConfigError as e:
        log("stopped: %s" % e)
        return 2
    deep = cfg["sleep"] == "deep"
    if deep:
        r.resume(device.rtc_load())  # a backoff that deep sleep interrupted goes on
    r.on_state(lambda state, why: led.show(state))
    led.show(r.state)
    while True:
        if r.due_in() == 0 and not r.pending:
            device.connect(cfg["wifi"], log)  # cheap when the link is up
        wait = r.step()
        if deep and wait is not None:
            device.rtc_save(r.suspend())
        device.sleep(86400 if wait is None else wait, deep and wait is not None)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("stopped")
