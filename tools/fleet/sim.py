# The event loop: N devices, each the real firmware Refresher wired to the in-memory
# edges, on one virtual clock. A heap holds each device's next due time; popping an entry
# moves the clock there and calls the device's Refresher.step(), exactly as a board's loop
# would after sleeping. Power cycles drop a device's Refresher and boot a new one on the
# same store. Everything a report needs is counted here.
import heapq
import random
from array import array

from regtoken import BACKOFF, PROVISION, Refresher, policy, validate

from fleet import policies
from fleet.edges import Link, MemStore, SimClock
from fleet.server import Server

T0 = 1800000000  # 2027-01-15T08:00:00Z: any real date works
BOOT_SPREAD = 5  # a fleet "booting together" powers up within these seconds


def _quiet(msg):
    pass


class Dev:
    __slots__ = ("i", "store", "link", "r", "ver", "need", "dead", "caught")

    def __init__(self, i, server):
        self.i = i
        self.store = MemStore()
        self.link = Link(server, i)
        self.r = None
        self.ver = 0  # bumps at each power cycle: heap entries of an older boot are stale
        self.need = False  # failed (backing off) or booted overdue, and not fresh since
        self.dead = False
        self.caught = False  # needed a refresh it could not get, during the event


class Fleet:
    def __init__(self, sc, pol=policies.OURS, n=10000, cfg=None, seed=1, capacity=50,
                 over="412", retry_after=30, lost=0.005, grace=3600):
        self.sc = sc
        self.pol = pol
        self.n = n
        raw = {"api_url": "http://device-api.fleet.test"}
        raw.update(policies.DEFAULT_CFG.get(pol, {}))
        raw.update(sc.get("cfg", {}))
        raw.update(cfg or {})
        self.cfg = validate(raw)
        self.rng = random.Random(seed)
        self.clock = SimClock(T0)
        self.server = Server(self.clock, T0, sc["duration"], sc["lifetime"], grace, capacity,
                             over, retry_after, lost, sc.get("outages", ()),
                             random.Random(seed + 1))
        self.devs = [Dev(i, self.server) for i in range(n)]
        self.server.devices = self.devs
        self.heap = []
        self.seq = 0
        self.needing = 0
        ev = sc.get("event")
        self.settle = T0 + ev[1] + BOOT_SPREAD if ev else None
        self.window = (T0 + ev[0], T0 + ev[1] + BOOT_SPREAD) if ev else (0, -1)
        self.caught = 0
        self.recovered_at = None
        self.rotations = 0
        self.past_expiry = 0  # backoff waits scheduled past expiry - MARGIN while valid
        self.examples = []  # a few such waits, for the report

    def push(self, t, i, ver):
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, i, ver))

    def _need(self, dev, on):
        if on != dev.need:
            dev.need = on
            self.needing += 1 if on else -1
            if on and not dev.caught and self.window[0] <= self.clock.t <= self.window[1]:
                dev.caught = True
                self.caught += 1

    def boot(self, dev, provision=False):
        now = self.clock.t
        cfg = self.cfg
        if provision:
            token, exp = self.server.provision(dev.i)
            cfg = dict(cfg, initial_token=token, initial_expiration=exp)
        rec = dev.store.rec
        if rec and isinstance(rec.exp, int) and 0 < rec.due <= now:
            self._need(dev, True)  # off past its refresh point
        r = Refresher(cfg, transport=dev.link, store=dev.store, clock=self.clock,
                      rand=self.rng.random, log=_quiet)
        r.on_token(lambda token, exp, dev=dev: self._fresh(dev))
        dev.r = r
        dev.ver += 1
        wait = r.due_in()  # the public API only: the next attempt, never in the past
        if wait is not None:
            self.push(now + wait, dev.i, dev.ver)

    def _fresh(self, dev):
        self.rotations += 1
        self._need(dev, False)

    def power(self, off, on):
        """Every device off at `off`, back within BOOT_SPREAD seconds of `on`."""
        self.run_until(off)
        for dev in self.devs:
            dev.r = None
            dev.ver += 1
        self.run_until(on)  # the heap empties of stale entries
        for dev in self.devs:
            self.push(on + self.rng.randrange(BOOT_SPREAD), dev.i, -1)

    def run_until(self, end):
        heap, devs, clock = self.heap, self.devs, self.clock
        lo = self.cfg["backoff_min_s"]
        while heap and heap[0][0] < end:
            t, _, i, ver = heapq.heappop(heap)
            dev = devs[i]
            clock.t = t
            if ver == -1:
                self.boot(dev, provision=dev.store.rec is None)
                continue
            if ver != dev.ver:
                continue
            r = dev.r
            wait = r.step()
            if r.state == BACKOFF:
                self._need(dev, True)
                self._check_bound(r, t, lo)
            elif r.state == PROVISION:
                dev.dead = True
                self._need(dev, False)
            if wait is not None:
                self.push(t + wait, i, ver)
            if self.settle and self.recovered_at is None and self.needing == 0 \
                    and t >= self.settle:
                self.recovered_at = t
        clock.t = end

    def _check_bound(self, r, now, lo):
        exp, st = r.expires, r.status()
        if exp is None or st["pending_commit"]:
            return
        margin, next_at = exp - policy.MARGIN, st["next_attempt"]
        if margin - now >= 2 * lo + 4 and next_at > margin and not self._told(st):
            self.past_expiry += 1
            if len(self.examples) < 3:
                self.examples.append((now - T0, next_at - T0, exp - T0))

    def _told(self, st):
        # a wait the server set (Retry-After on a 412) is honoured even past expiry
        return self.server.reject[0] == 412 and st["reason"] == "throttled"

    def run(self):
        sc = self.sc
        for dev in self.devs:  # provisioned together: out of the factory within seconds
            self.push(T0 + self.rng.randrange(BOOT_SPREAD), dev.i, -1)
        if sc.get("power"):
            off, on = sc["power"]
            self.power(T0 + off, T0 + on)
        self.run_until(T0 + sc["duration"])
        return self.result()

    def result(self):
        sc, n, srv = self.sc, self.n, self.server
        per = srv.per_second
        ten = sum(per[:10])
        peak10 = ten
        for k in range(10, len(per)):
            ten += per[k] - per[k - 10]
            if ten > peak10:
                peak10 = ten
        attempts = sum(per)
        end = T0 + sc["duration"]
        ev = sc.get("event")
        during = after = 0
        for dev in self.devs:
            rec = dev.store.rec
            if rec is None or not isinstance(rec.exp, int) or rec.exp > end:
                continue
            if ev and rec.exp >= T0 + ev[1]:
                after += 1
            else:
                during += 1
        stale = sum(1 for d in self.devs if d.dead or not srv.accepts(d.i, d.store.rec, end))
        return {
            "scenario": sc["name"], "policy": self.pol, "n": n,
            "cfg": {k: self.cfg[k] for k in ("backoff_min_s", "backoff_max_s")},
            "peak1": max(per) * 100.0 / n, "peak10": peak10 * 100.0 / n,
            "attempts": attempts, "wasted": attempts - self.rotations, "caught": self.caught,
            "recovery_s": (self.recovered_at - T0 - ev[1]) if ev and self.recovered_at
            else None,
            "expired_during": during, "expired_after": after,
            "not_fresh_at_end": stale, "dead": sum(1 for d in self.devs if d.dead),
            "past_expiry": self.past_expiry, "examples": self.examples,
            "stale_presented": srv.stale_presented, "server": dict(srv.counts),
            "series": array("H", [min(x, 65535) for x in per]).tobytes(),
        }


def simulate(sc, pol=policies.OURS, **kw):
    """Run one scenario under one policy (swapping regtoken.policy in this process)."""
    policies.use(pol)
    try:
        return Fleet(sc, pol, **kw).run()
    finally:
        policies.use(policies.OURS)
