# MicroPython probe for `make bench` (tools/bench/ copies it into a board directory):
# how often a program's loop wakes up between two token refreshes.
#
#   cd <board dir> && micropython idle.py firmware|baseline unix|light|deep HORIZON_S
#
# Runs the program's real loop (firmware: main.main() from main.py; baseline:
# naive_baseline.main()) on a virtual clock: `time` is replaced by a module whose sleep()
# returns at once and moves the clock on, and so does the reference server's clock (its
# control API), so tokens age as they would. "light" and "deep" take main.py's board path,
# board.sleep (machine.lightsleep / machine.deepsleep, faked the same way; a
# deep-sleep wake is a reboot on a board). Every wake prints "[idle] wake after N s";
# the log's "rotated (" lines mark the refreshes. Stops once HORIZON_S virtual seconds have
# passed, then prints RESULT {"modules": [every module loaded]}.
import json
import sys
import time as real_time

import requests  # frozen into the unix build; sets the server's clock


class Horizon(BaseException):
    """The probe is over: a BaseException, so no `except Exception` in a loop catches it."""


class Reboot(BaseException):
    """machine.deepsleep() does not return on a board: it reboots into main.py."""


class FastForwardTime:
    """Stands in for the `time` module: the clock runs at real speed plus all the time
    the program has slept."""

    def __init__(self, horizon, control_url):
        self.offset = 0
        self.horizon = horizon
        self.control_url = control_url

    def time(self):
        return real_time.time() + self.offset

    def sleep(self, seconds):
        self.nap(seconds * 1000)

    def sleep_ms(self, ms):
        self.nap(ms)

    def nap(self, ms):
        if self.offset >= self.horizon:
            raise Horizon()
        self.offset += ms / 1000
        r = requests.post(self.control_url, json={"advance": ms / 1000})
        r.close()
        print("[idle] wake after %d s" % (ms // 1000))

    def __getattr__(self, name):  # ticks_ms, gmtime, mktime...: the real ones
        return getattr(real_time, name)


class BoardModules:
    """One object standing in for the machine, network and ntptime modules as a board has
    them, sleeping on the FastForwardTime clock."""

    def __init__(self, clock):
        self.clock = clock
        self.STA_IF = 0
        self.rtc = b""
        self.DEEPSLEEP_RESET = 4
        self.cause = 1  # power on

    def reset_cause(self):
        return self.cause

    def lightsleep(self, ms):
        self.clock.nap(ms)

    def deepsleep(self, ms):
        self.clock.nap(ms)
        self.cause = self.DEEPSLEEP_RESET
        raise Reboot()  # into main.py, which resumes from the store and RTC memory

    def WLAN(self, _mode):
        return self

    def isconnected(self):
        return True

    def settime(self):
        pass

    def RTC(self):
        return self

    def memory(self, data=None):
        if data is None:
            return self.rtc
        self.rtc = bytes(data)


def run(who, mode):
    if who == "baseline":
        import naive_baseline

        return naive_baseline.main()
    import main

    if not hasattr(main, "BOARD"):
        raise AttributeError("idle probe: main.py has no BOARD switch (update the probe)")
    main.BOARD = mode != "unix"  # light / deep: the board path (firmware/board/)
    while True:
        try:
            return main.main()
        except Reboot:
            print("[idle] reboot")


def start(who, mode, horizon):
    with open("config.json") as f:
        url = json.load(f)["api_url"] + "/_control/clock"
    clock = FastForwardTime(horizon, url)
    board = BoardModules(clock)
    sys.modules["time"] = clock  # type: ignore[assignment]  # a stand-in, duck-typed
    for name in ("machine", "network", "ntptime"):
        sys.modules[name] = board  # type: ignore[assignment]
    try:
        run(who, mode)
    except Horizon:
        pass
    print("RESULT " + json.dumps({"modules": sorted(sys.modules)}))


if __name__ == "__main__":
    start(sys.argv[1], sys.argv[2], float(sys.argv[3]))
