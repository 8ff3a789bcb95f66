# The wall clock in Unix seconds, whatever epoch the port counts from.
import time

from .dates import days


class Clock:
    """`trusted` once NTP or a server's Date header has set the time: a board without
    either starts near its epoch after every cold boot."""

    def __init__(self, trusted=True):
        y = time.gmtime(0)[0]
        self.epoch = days(y, 1, 1) * 86400  # 0 on unix and rp2, 946684800 on ESP32
        self.offset = 0
        self.trusted = trusted

    def now(self):
        return int(time.time()) + self.epoch + self.offset

    def set(self, unix):
        self.offset += unix - self.now()
        self.trusted = True
