# The simulated refresh server (/work/shared/refresh-api.md): token lineage with a grace
# period, a capacity limit, lost answers and outages. It also keeps the books the report
# needs: requests per second, and what each request was wasted on.
import json
import time

LOST = OSError("connection reset: the answer was lost")
DOWN = OSError("connection refused: server down")


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Lineage:
    """One device's tokens as the server sees them: the newest, and its parent while the
    parent is in its grace period."""

    __slots__ = ("cur", "cur_exp", "parent", "parent_exp", "grace_until", "gen")

    def __init__(self, token, exp):
        self.cur, self.cur_exp = token, exp
        self.parent, self.parent_exp, self.grace_until = None, 0, 0
        self.gen = 0


class Server:
    def __init__(self, clock, t0, duration, lifetime, grace=3600, capacity=50,
                 over="412", retry_after=30, lost=0.005, outages=(), rng=None):
        self.clock = clock
        self.t0 = t0
        self.lifetime = lifetime
        self.grace = grace
        self.capacity = capacity
        ra = {"retry-after": str(retry_after)}
        self.reject = (412, ra, b'{"status": 412}') if over == "412" else (503, {}, b"")
        self.lost = lost
        self.outages = [(t0 + a, t0 + b) for a, b in outages]
        self.rng = rng
        self.lineage = {}
        self.sec = -1
        self.load = 0
        self.per_second = [0] * (duration + 1)
        self.counts = {"rotated": 0, "down": 0, "over capacity": 0, "lost answer": 0,
                       "410 expired": 0, "410 revoked": 0}
        self.devices = None  # set by the fleet: index -> Dev, for the invariant checks
        self.stale_presented = 0  # a device presented something other than its committed token

    def provision(self, dev):
        """The token a device leaves the factory with."""
        now = self.clock.t
        token = "d%d-0" % dev
        self.lineage[dev] = Lineage(token, now + self.lifetime)
        return token, now + self.lifetime

    def accepts(self, dev, rec, now):
        """Would a refresh with this record's token succeed at `now` (the device is fresh)?"""
        ln = self.lineage[dev]
        if rec is None:
            return False
        if rec.token == ln.cur:
            return now < ln.cur_exp
        return rec.token == ln.parent and now < min(ln.grace_until, ln.parent_exp)

    def down(self, now):
        for a, b in self.outages:
            if a <= now < b:
                return True
        return False

    def handle(self, dev, body):
        now = self.clock.t
        c = self.counts
        self.per_second[now - self.t0] += 1
        if self.down(now):
            c["down"] += 1
            raise DOWN
        if self.sec != now:
            self.sec, self.load = now, 0
        self.load += 1
        if self.load > self.capacity:
            c["over capacity"] += 1
            return self.reject
        token = json.loads(body)["registrationToken"]
        held = self.devices[dev].store.rec
        if held is None or token != held.token:
            self.stale_presented += 1
        ln = self.lineage[dev]
        if token == ln.cur and now < ln.cur_exp:
            status = 201
            ln.parent, ln.parent_exp = ln.cur, ln.cur_exp  # the grandparent is revoked now
            ln.grace_until = now + self.grace
        elif token == ln.parent and now < ln.grace_until and now < ln.parent_exp:
            status = 200  # the child it never stored is revoked
        else:
            expired = token in (ln.cur, ln.parent) and now >= (
                ln.cur_exp if token == ln.cur else ln.parent_exp)
            c["410 expired" if expired else "410 revoked"] += 1
            return 410, {}, b'{"status": 410}'
        ln.gen += 1
        ln.cur, ln.cur_exp = "d%d-%d" % (dev, ln.gen), now + self.lifetime
        if self.lost and self.rng.random() < self.lost:
            c["lost answer"] += 1
            raise LOST
        c["rotated"] += 1
        out = {"registrationToken": ln.cur, "expirationTime": iso(ln.cur_exp)}
        return status, {}, json.dumps(out).encode()
