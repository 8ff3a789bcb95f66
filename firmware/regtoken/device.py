# The board edges main.py calls: Wi-Fi, NTP, status LED, sleep, RTC memory.
# On the unix port (the virtual board) each one is a no-op or a plain stand-in, so the
# same main.py runs unchanged there. Hardware modules are imported inside the functions:
# the unix port has no `network`, and a module that is never imported costs no RAM.
import sys
import time

UNIX = sys.platform == "linux"
RP2 = sys.platform == "rp2"

# state: (blink pattern, one bit per 100 ms tick over one second, colour for an RGB LED)
PATTERNS = {
    "connecting": (0b1010101010, (0, 0, 24)),  # fast blink, blue
    "healthy": (0b1000000000, (0, 24, 0)),  # one blip a second, green
    "backoff": (0b1111100000, (24, 12, 0)),  # slow blink, amber
    "forbidden": (0b1010000000, (24, 0, 24)),  # double blip, magenta: 403, long backoff
    "provision": (0b1111111111, (24, 0, 0)),  # steady, red: a person must act
    "provisioning": (0b1101100000, (0, 16, 24)),  # two quick blips, cyan: approve the code
}
STEADY = (0, 0b1111111111)
# Longest single sleep: rp2 times sleeps in 32-bit microseconds (~71 min); elsewhere a
# day keeps the milliseconds inside a 32-bit machine int. A longer wait is several naps.
RP2_MAX_MS = 3600000
MAX_MS = 86400000


def connect(wifi, log, timeout_s=20, tries=3):
    """Join the configured Wi-Fi as a station. Cheap when the link is up, so the caller
    simply calls it again before each refresh to recover a dropped link."""
    if UNIX:
        return True
    import network

    sta = network.WLAN(network.STA_IF)
    if sta.isconnected():
        return True
    if not wifi or not wifi.get("ssid"):
        log("wifi: not configured")
        return False
    sta.active(True)
    for n in range(1, tries + 1):
        try:
            sta.disconnect()  # ESP32 refuses connect() while an old attempt is pending
        except OSError:
            pass  # nothing to drop
        try:
            sta.connect(wifi["ssid"], wifi.get("password") or "")
        except OSError as e:
            log("wifi: connect %d/%d failed: %s" % (n, tries, e))
            continue
        for _ in range(int(timeout_s * 10)):
            if sta.isconnected():
                log("wifi: connected to %s as %s" % (wifi["ssid"], sta.ipconfig("addr4")[0]))
                return True
            time.sleep_ms(100)
        log("wifi: no link after %ds (try %d/%d, status %s)" % (timeout_s, n, tries, sta.status()))
    return False


def sync_clock(log, tries=2, timeout_s=3):
    """Set the RTC from NTP. False when that fails: the caller then takes the time from
    the server's Date header instead."""
    if UNIX:
        return True  # the host keeps the clock
    import ntptime

    ntptime.timeout = timeout_s  # the default of 1 s is short for a cold DNS + NTP
    for n in range(1, tries + 1):
        try:
            ntptime.settime()
            log("ntp: clock set")
            return True
        except Exception as e:  # DNS failure, timeout, short answer: all mean "no NTP"
            log("ntp: try %d/%d failed: %r" % (n, tries, e))
    return False


class Led:
    """The status LED: Led(spec).show(state). spec is board.json's "led":
    {"pin": 2 or "LED", "active_high": true, "timer": 0, "rgb": false}, or None."""

    def __init__(self, spec=None):
        self.state = None
        self.pin = None  # a plain LED: machine.Pin
        self.np = None  # an addressable RGB LED: neopixel.NeoPixel
        self.timer = None
        self.bits = 0
        self.tick = 0
        self.rgb = (0, 0, 0)
        self.on = 1
        self.timer_id = -1
        if spec is None or UNIX:
            return
        import machine

        pin = machine.Pin(spec["pin"], machine.Pin.OUT)
        if spec.get("rgb"):
            import neopixel

            self.np = neopixel.NeoPixel(pin, 1)
        else:
            self.pin = pin
        self.on = 1 if spec.get("active_high", True) else 0
        self.timer_id = spec.get("timer", -1)  # ESP32 has no virtual timer: use 0
        self._light(0)

    def show(self, state):
        if state not in PATTERNS:
            raise ValueError("led: unknown state %r" % state)
        if state == self.state:
            return  # keep the blink phase: main.py calls this on every loop
        self.state = state
        self.bits, self.rgb = PATTERNS[state]
        if self.pin is None and self.np is None:
            return
        self._stop()
        self.tick = 0
        self._light(self.bits >> 9 & 1)
        if self.bits not in STEADY:
            import machine

            self.timer = machine.Timer(self.timer_id)
            self.timer.init(period=100, mode=machine.Timer.PERIODIC, callback=self._step)

    def off(self):
        """Dark and no timer, e.g. before deep sleep."""
        self.state = None
        self._stop()
        self._light(0)

    def _stop(self):
        if self.timer is not None:
            self.timer.deinit()
            self.timer = None

    def _step(self, _timer):
        self.tick = (self.tick + 1) % 10
        self._light(self.bits >> (9 - self.tick) & 1)

    def _light(self, lit):
        if self.np is not None:
            self.np[0] = self.rgb if lit else (0, 0, 0)
            self.np.write()
        elif self.pin is not None:
            self.pin.value(self.on if lit else 1 - self.on)


def sleep(seconds, deep=False):
    """Wait between refreshes. Deep sleep does not return on a board: it reboots into
    main.py, which then continues from the token store (and rtc_load())."""
    if UNIX or seconds <= 0:
        time.sleep(max(seconds, 0))
        return
    import machine

    ms = int(seconds * 1000)
    cap = RP2_MAX_MS if RP2 else MAX_MS
    if deep:
        machine.deepsleep(min(ms, cap))  # waking early only means main.py sleeps again
        return
    while ms > 0:
        nap = min(ms, cap)
        machine.lightsleep(nap)
        ms -= nap


def woke_from_deep_sleep():
    """True after a deep-sleep wake: the RTC kept the time and RTC memory the wait in
    progress, so nothing needs Wi-Fi or NTP until a refresh is due."""
    if UNIX:
        return False
    import machine

    return machine.reset_cause() == getattr(machine, "DEEPSLEEP_RESET", -1)


def rtc_load():
    """Bytes kept in RTC memory across deep sleep, or None (none kept, or no RTC memory:
    rp2 and the unix port)."""
    mem = _rtc_memory()
    return (mem() or None) if mem else None


def rtc_save(data):
    mem = _rtc_memory()
    if mem:
        mem(data)


def _rtc_memory():
    if UNIX:
        return None
    import machine

    return getattr(machine.RTC(), "memory", None)
