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
    # RTC memory: b"T" (the clock was trusted) or b"-", then the refresher's wait
    kept = woke and sleep.rtc_load() or b""
    if not woke:
        light.show("connecting")
        wifi.connect(w, log)
    # a timer wake trusts the RTC only if NTP or a server's Date had set it before the
    # sleep; else the next answer's Date still may
    c = regtoken.Clock(kept[:1] == b"T" if woke else wifi.sync_clock(log))
    # NTP set the clock in this boot. A clock trusted otherwise (a server's Date, or the
    # RTC as before a sleep) asks NTP again at every attempt until it has: a server's clock
    # days fast, taken from its Date, can put its own certificate past its expiry, and
    # then no answer (no Date) comes to correct it
    ntp = not woke and c.trusted
    r = regtoken.Refresher(cfg, clock=c)
    if woke:
        r.resume(kept[1:])
    r.on_state(lambda state, why: light.show(state))
    while True:
        if r.due_in() == 0:
            wifi.connect(w, log)  # cheap when the link is up
            # RTCs drift, most of all through deep sleep; and NTP that failed at boot may
            # work now: a clock it sets is trusted
            t = c.now()
            if (r.state == regtoken.HEALTHY or not ntp) and wifi.sync_clock(log):
                c.trusted = ntp = True
                if abs(c.now() - t) > 2:  # stepped: what was due still is (stepped back
                    # from a server's wrong Date, the schedule would be hours on, past the
                    # token's expiry by the server's clock); the answer's Date re-bases it
                    r.force()
        wait = r.step()
        if mode != "none":  # dark while the board sleeps: its blink timer stops, and a
            light.off()  # lit LED (an RGB one latches its colour) would stay lit
        if mode == "deep":
            sleep.rtc_save((b"T" if c.trusted else b"-") + r.suspend())
        sleep.sleep(86400 if wait is None else wait, mode)
        light.show(r.state)  # awake again (light sleep; rp2's deep)
