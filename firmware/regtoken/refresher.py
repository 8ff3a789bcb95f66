# The refresher: keeps the stored token alive. This file is its public API (README "Using
# it from your app"); the state machine behind it is machine.py, which it inherits.
#
# Edges (HTTP transport, store, clock, randomness, log) are passed in; `step` does what is
# due and says how long the caller may sleep, so a plain loop, asyncio or an application's
# own scheduler can drive it.
#
# The code that runs at construction (choosing a transport, importing the initial token,
# the clock floor, the first schedule), and again after a 410, is regtoken/boot.py:
# imported, run and let go each time, so that it does not stay on the heap for the years
# the device runs.
from random import random as _random

# isort: off
# the biggest modules first: a source install compiles each while the heap is emptiest
# (config's URL check imports wire before this file; boot.py's own imports follow it)
from . import boot  # noqa: F401  (let go by the first Refresher built)
from .wire import Wire  # noqa: F401
from .store import Record, Store
from .machine import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, PROVISIONING, Machine  # noqa: F401
from .edges import Clock, redact
from .edges import log as _log

# isort: on

class Refresher(Machine):
    # set by boot.py and _use (annotations only: no code, no heap)
    rec: Record  # None until a record exists
    token: str  # None when there is none
    expires: int  # None: never, or not known
    _put: tuple  # (URL, headers) of the refresh call
    # Set only when they are used: class attributes until then, so that the instance keeps
    # 17 attributes (its dict's 17 slots; an 18th grows it to 23, 368 bytes in one piece at
    # boot): _prov, a selfprov.Provisioner while provisioning; _pending, a record not yet on
    # flash; _sleeper, the asyncio tasks asleep in astep (a list); _busy, the end of the
    # asyncio call in flight, else 0 (aio.py)
    _prov = _pending = _sleeper = None  # type: ignore[assignment]
    _busy = 0

    def __init__(self, cfg, transport=None, store=None, clock=None, rand=None, log=None):
        self._cfg = cfg
        self._log = _log if log is None else log  # an empty list-like log is still one
        self._clock = clock or Clock()
        self._rand = rand or _random
        self._http = transport
        self._store = store or Store(cfg["store_dir"], self._log)
        self.state = self._next = self._why = self._reason = None
        self._wait = 0  # the last backoff wait, 0 after a success
        self._counts = {"attempts": 0, "rotations": 0, "recoveries": 0, "failures": 0}
        self._cbs: tuple = ([], [])  # on_token's, on_state's
        self._boot()

    def _boot(self):
        # boot.py, run now and after a 410 (the stored record decides again, as at a boot:
        # an initial_token of another lineage in the config is imported)
        import sys

        from . import boot  # noqa: F811  (the one imported above, or anew: a 2nd time)

        m = sys.modules
        m.pop(boot.__name__)  # let go of it: no reference is left once it has run
        delattr(m[__name__.rpartition(".")[0]], "boot")  # nor the package's attribute,
        globals().pop("boot", None)  # nor this module's
        boot.boot(self)

    # -- public API: README "Using it from your app" -------------------------------------

    def expires_in(self):
        e = self.expires
        return None if e is None else e - self._clock.now()

    def due_in(self):
        n = self._next
        return None if n is None else max(0, n - self._clock.now())

    def _todo(self):
        # what a due step does: the commit of the pending record again; the call (False);
        # or, with neither a token nor a provisioning (a boot that failed), _need again
        # (Machine: no answer a transport returns, None included, can be it). A pending
        # record in use (machine.py's _keep) is presented, its commit tried first: the
        # flash may take it while the server is down
        a = self._pending
        if a and a is self._rec:
            self._commit(a)  # on flash now, or not: the call follows either way
            a = None
        return a or (False if self.token or self._prov else Machine)

    def step(self):
        try:
            if self.due_in() == 0:
                a = self._todo()
                if a is False:
                    try:
                        m, u, b, h = self._request()  # not *args: a call through * costs heap
                        a = self._http.request(m, u, b, h)
                    except Exception as e:  # every transport failure is one failed attempt
                        a = e
                self._run(a)
            return self.due_in()
        except Exception:  # MemoryError outside an attempt (the clock's float): again soon
            return 1

    async def astep(self):
        from .aio import astep  # the asyncio code stays off the heap of a plain loop

        return await astep(self)

    def force(self):
        # only a healthy refresher obeys (backoff and forbidden keep their waits), and no
        # sooner than backoff_min_s after its last commit: a loop that forces, or an
        # on_token that does, refreshes once per backoff_min_s at most. Nor while an asyncio
        # call is in flight: it is the refresh, and a second task woken beside it would
        # present the same parent (the 200 it gets revokes the 201's token)
        n = self._clock.now()
        if self.state != HEALTHY or self._busy > n:
            return False
        r = self._rec  # its commit's time; one ahead of the clock (set back since): now
        t = max(n, min(r.at, n) + self._cfg["backoff_min_s"] if r else 0)
        x = self._next  # never later than it was: a token of a few seconds has its refresh
        if x is None or x > t:  # sooner than backoff_min_s, and after it would be a 410
            self._next = t
        s = self._sleeper  # the asyncio tasks asleep in astep (aio.py): each woken by a
        while s:  # cancel, taken off the list first (what tells it the cancel is this wake)
            s.pop().cancel()
        return True

    def on_token(self, cb):
        self._cbs[0].append(cb)

    def on_state(self, cb):
        self._cbs[1].append(cb)
        self._emit((cb,), self.state, self._why)

    def status(self):
        p = self._prov
        p = p and p.id and p  # an operation that expired or a 410 ended: no code on show
        t = self.token
        return {"verification_code": p and p.code, "operation_expires": p and p.exp,
                "state": self.state, "reason": self._reason, "token": t and redact(t),
                "expires": self.expires, "next_attempt": self._next,
                "last_error": None if self.state == HEALTHY else self._why,
                "pending_commit": self._pending is not None, "counts": dict(self._counts)}

    def suspend(self):
        return ("%s %d %d %s" % (self.state, self._next or 0, self._wait,
                                 self._reason or "-")).encode()

    def resume(self, data):
        # junk or None: a no-op; data of three fields (no reason) is an earlier version's
        try:
            s, n, w, why = (data.decode() + " -").split()[:4]
            n, w = int(n), int(w)
        except Exception:
            return
        e = self.expires
        now = self._clock.now()
        if s == FORBIDDEN:  # a 403's hold: at most 1.5 times backoff_max_s or a day's
            e = now + 2 * max(self._cfg["backoff_max_s"], 86400)  # Retry-After
        if e and e > now and not 0 < n <= e:
            return  # a schedule the live token contradicts (never, or past its expiry), or
            # a hold no 403 sets (RTC memory written over, or another app's)
        if s in (HEALTHY, BACKOFF, FORBIDDEN) and self.state == HEALTHY or \
                s == self.state == PROVISIONING:
            self._wait = w
            self._set(s, n or None, "resumed", None if why == "-" else why)

