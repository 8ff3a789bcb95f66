# The wall clock in Unix seconds, whatever epoch the port counts from.
import time

from .dates import EPOCH


class Clock:
    """`trusted` once NTP or a server's Date header has set the time: a board without
    either starts near its epoch after every cold boot."""

    offset = 0  # seconds added to the port's clock (an instance's own once set)

    def __init__(self, trusted=True):
        self.trusted = trusted

    def now(self):
        return int(time.time()) + EPOCH + self.offset

    def set(self, unix, trusted=True):
        """Move to `unix`. A board's RTC is set too, so that TLS (mbedTLS reads the
        port's clock) checks certificates against it; the unix port keeps an offset."""
        self.trusted = trusted
        try:  # the unix port has no machine.RTC; CPython no machine
            import machine

            y, mo, d, h, mi, s, wd = time.gmtime(unix - EPOCH)[:7]
            machine.RTC().datetime((y, mo, d, wd, h, mi, s, 0))
        except Exception:
            pass
        self.offset += unix - self.now()
