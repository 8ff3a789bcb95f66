# firmware/main.py's loop on a board: Wi-Fi and NTP first, the LED showing the state, and
# the sleep config.json asks for between steps. A deep-sleep timer wake keeps the RTC's
# time and the wait in progress: nothing needs the radio until a refresh is due.
import regtoken
from regtoken.edges import log

from board import led, sleep, wifi


def run(cfg):
    # Until an exception escapes a boot or a step (a radio's OSError, no heap for the
    # refresher yet): main.py logs it and boots again, as it does on the unix port.
    if not cfg["wifi"]:
        raise regtoken.ConfigError("config.json: 'wifi' is required on a board")
    light = led.Led(cfg["led"])
    w, mode = cfg["wifi"], cfg["sleep"]
    woke = mode == "deep" and sleep.woke_from_deep_sleep()
    if not woke:
        light.show("connecting")
        wifi.connect(w, log)
    r = regtoken.Refresher(cfg, clock=regtoken.Clock(woke or wifi.sync_clock(log)))
    if woke:
        r.resume(sleep.rtc_load())
    r.on_state(lambda state, why: light.show(state))
    while True:
        if r.due_in() == 0:
            wifi.connect(w, log)  # cheap when the link is up
            if r.state == regtoken.HEALTHY:
                wifi.sync_clock(log)  # RTCs drift, most of all through deep sleep
        wait = r.step()
        if mode == "deep":
            sleep.rtc_save(r.suspend())
        sleep.sleep(86400 if wait is None else wait, mode)
