# The edges a firmware Refresher is wired to in the simulator: one virtual clock shared by
# the whole fleet, a store that keeps the committed record in memory, and a transport that
# hands each request to the simulated server. Nothing sleeps, nothing opens a socket.
from regtoken.store import Record


class SimClock:
    """The fleet's one clock; the event loop moves it. Always trusted (NTP worked)."""

    trusted = True

    def __init__(self, t=0):
        self.t = t

    def now(self):
        return self.t

    def set(self, unix):  # a Date header never moves the fleet's clock
        pass


def _copy(rec):
    return Record(rec.token, rec.exp, rec.due, rec.seed, rec.gen)


class MemStore:
    """What the flash holds: a copy of the last committed record, which survives a
    power cycle (a new Refresher on the same store)."""

    def __init__(self):
        self.rec = None

    def load(self):
        return _copy(self.rec) if self.rec else None

    def commit(self, rec):
        self.rec = _copy(rec)


class Link:
    """One device's transport: `request` is the firmware's HTTP seam."""

    __slots__ = ("server", "dev")

    def __init__(self, server, dev):
        self.server = server
        self.dev = dev

    def request(self, method, url, body, headers):
        return self.server.handle(self.dev, body)

    async def arequest(self, method, url, body, headers):
        return self.request(method, url, body, headers)
