# The status LED: Led(spec).show(state). spec is board.json's "led":
# {"pin": 2 or "LED", "active_high": true, "timer": 0, "rgb": false}, or None.
import machine

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


class Led:
    def __init__(self, spec=None):
        self.state = self.pin = self.np = self.timer = None  # np: an RGB LED (neopixel)
        self.bits = self.tick = 0
        self.rgb = (0, 0, 0)
        self.on = 1
        self.timer_id = -1
        if spec is None:
            return
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
