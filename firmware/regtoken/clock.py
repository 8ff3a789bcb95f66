# The wall clock in Unix seconds, whatever epoch the port counts from.
import time

from .dates import EPOCH


class Clock:
    """`trusted` once NTP or a server's Date header has set the time: a board without
    either starts near its epoch after every cold boot."""

    def __init__(self, trusted=True):
        self.offset = 0
        self.trusted = trusted

    def now(self):
        return int(time.time()) + EPOCH + self.offset

    def set(self, unix, trusted=True):
        """Move to `unix`. A board's RTC is set too, so that TLS (mbedTLS reads the
        port's clock) checks certificates against it; the unix port keeps an offset."""
        self.trusted = trusted
        try:
            import machine

            t = time.gmtime(unix - EPOCH)
            machine.RTC().datetime((t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0))
        except (ImportError, AttributeError):
            pass
        self.offset += unix - self.now()
