# Sleep between refreshes on a board, and what survives deep sleep (RTC memory).
import sys
import time

import machine

# Longest single sleep: rp2 times sleeps in 32-bit microseconds (~71 min); elsewhere a
# day keeps the milliseconds inside a 32-bit machine int. A longer wait is several naps.
MAX_MS = 3600000 if sys.platform == "rp2" else 86400000
# rp2's deepsleep is its lightsleep followed by a reset (ports/rp2/modmachine.c): the same
# sleep, but the reset loses the wait in progress (rp2 has no RTC memory) and the RTC's
# time, so each wake booted as after a power cut and drew a new boot delay, until the
# refresh came seconds before expiry. There "deep" sleeps as "light".
DEEP = sys.platform != "rp2"


def sleep(seconds, mode="none"):
    """Wait `seconds` the way config "sleep" says: "none" (time.sleep, the CPU idles),
    "light" (machine.lightsleep) or "deep" (machine.deepsleep: does not return, the board
    reboots into main.py, which continues from the token store and rtc_load(); "light"
    on rp2)."""
    ms = int(max(seconds, 0) * 1000)
    if mode == "deep":
        if DEEP and ms:
            machine.deepsleep(min(ms, MAX_MS))  # waking early only means main.py sleeps again
        mode = "light"
    while ms > 0:
        nap = min(ms, MAX_MS)
        if mode == "light":
            machine.lightsleep(nap)
        else:
            time.sleep_ms(nap)
        ms -= nap


def woke_from_deep_sleep():
    """True after a deep-sleep timer wake: the RTC kept the time and RTC memory the wait
    in progress, so nothing needs Wi-Fi or NTP until a refresh is due."""
    return machine.reset_cause() == getattr(machine, "DEEPSLEEP_RESET", -1)


def rtc_load():
    """Bytes kept in RTC memory across deep sleep, or None (none kept, or no RTC memory:
    rp2)."""
    mem = getattr(machine.RTC(), "memory", None)
    return (mem() or None) if mem else None


def rtc_save(data):
    mem = getattr(machine.RTC(), "memory", None)
    if mem:
        mem(data)
