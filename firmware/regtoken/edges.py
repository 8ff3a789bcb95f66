# The default edges a Refresher gets when it is given none: the log and the wall clock.
# A log is any callable taking one str; tokens are never logged whole.
import time

from .policy import EPOCH


def redact(token):
    # %.6s: no slice; a token of 12 characters or fewer shows none of them
    return "%.6s...(%d)" % (token if len(token) > 12 else "", len(token)) if token else "<none>"


def log(msg):
    print("[regtoken]", msg)  # two pieces: no line built


class Clock:
    """`trusted` once NTP or a server's Date header has set the time: a board without
    either starts near its epoch after every cold boot."""

    offset = 0  # seconds added to the port's clock (an instance's own once set)

    def __init__(self, trusted=True):
        self.trusted = trusted

    def now(self):
        return int(time.time()) + EPOCH + self.offset

    def set(self, unix):
        """Move to `unix`, and trust it. A board's RTC is set too, so that TLS (mbedTLS
        reads the port's clock) checks certificates against it; the unix port keeps an
        offset."""
        self.trusted = True
        try:  # the unix port has no machine.RTC; CPython no machine
            import machine

            y, mo, d, h, mi, s, wd = time.gmtime(unix - EPOCH)[:7]
            machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))
        except Exception:
            pass
        self.offset += unix - self.now()
