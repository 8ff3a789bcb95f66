# A virtual wall clock: tests move time, nothing sleeps.
T0 = 1800000000  # 2027-01-15T08:00:00Z


class VirtualClock:
    def __init__(self, t=T0, trusted=True):
        self.t = t
        self.trusted = trusted

    def now(self):
        return self.t

    def set(self, unix, trusted=True):
        self.t = unix
        self.trusted = trusted

    def advance(self, s):
        self.t += s
