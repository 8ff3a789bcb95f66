# The refresher: one explicit state machine around the stored token.
#
#   provision --(import initial_token)--> healthy --(due)--> attempt
#   attempt --201/200, committed--> healthy        attempt --5xx/412/timeout/garbage--> backoff
#   attempt --403--> forbidden (wait backoff_max_s) attempt --410--> provision (stops)
#   backoff/forbidden --(due)--> attempt
#
# Edges (HTTP transport, store, clock, randomness, log) are passed in; `step` does what is
# due and says how long the caller may sleep, so a plain loop, asyncio or an application's
# own scheduler can drive it. Only a power cut stops it: any exception inside a step is a
# failed attempt, and one raised by a callback is logged.
import json
from random import random as _random

from . import policy
from .answer import FORBIDDEN, GONE, RECOVERED, ROTATED, classify
from .clock import Clock
from .dates import http_date, iso
from .log import log as _log
from .log import redact
from .store import DEAD, NEVER, UNKNOWN, Record, Store, fingerprint

HEALTHY = "healthy"
BACKOFF = "backoff"
PROVISION = "provision"  # and FORBIDDEN, from answer: 403 is a state too
PROVISIONING = "provisioning"  # self-provisioning (selfprov.py) is running
PATH = "/devices/registration-tokens/refresh"
RELEASED = 1796083200  # 2026-12-01: no clock running this firmware can be earlier


def _transport(cfg):
    """The HTTP seam the config asks for: the own verified client, or urequests."""
    if cfg["transport"] != "wire":
        from .ureq import Urequests

        return Urequests(cfg["timeout_s"])
    from .wire import Wire

    ca = None
    if cfg["api_url"][:6] == "https:" and cfg["tls_verify"]:
        from .pem import ca_file  # only for verified https: off the heap of http

        ca = ca_file(cfg)
    return Wire(cfg["timeout_s"], ca)


class Refresher:
    def __init__(self, cfg, transport=None, store=None, clock=None, rand=None, log=None):
        self.cfg = cfg
        self.log = _log if log is None else log
        self.clock = clock or Clock()
        self.rand = rand or _random
        self.http = transport or _transport(cfg)
        self.store = store or Store(cfg["store_dir"], self.log)
        self.rec: Record = None  # type: ignore[assignment]  # the committed record, or None
        self._pending = None  # a new record the flash refused; retried before anything else
        self.prov = None  # a selfprov.Provisioner while PROVISIONING
        self.state = self._next = self._why = self._reason = self._ev = None
        self._wait = 0  # the last backoff wait, 0 after a success
        self._counts = {"attempts": 0, "rotations": 0, "recoveries": 0, "failures": 0}
        self._cbs: tuple = ([], [])  # on_token's, on_state's
        # the refresh call's URL and headers never change: built once, not per call
        self._url = cfg["api_url"] + PATH
        self._h = {"Content-Type": "application/json"}
        if cfg["provisioning_token"]:
            self._h["Authorization"] = "DeviceToken " + cfg["provisioning_token"]
        if cfg["api_url"][:6] == "https:" and not cfg["tls_verify"]:
            self.log("WARNING: tls_verify is false: the server is not verified")
        self._boot()

    # -- public API ---------------------------------------------------------------------

    @property
    def token(self):
        """The committed token, or None when the device needs provisioning."""
        rec = self.rec
        return rec.token if rec and rec.due >= 0 else None  # < 0: refused, or an operation

    @property
    def expires(self):
        """Unix seconds, or None (never expires, or not known yet)."""
        rec = self.rec
        exp = rec.exp if rec and rec.due >= 0 else None
        return exp if isinstance(exp, int) else None

    def expires_in(self):
        """Seconds until the token expires (negative once it has), or None."""
        return None if self.expires is None else self.expires - self.clock.now()

    def due_in(self):
        """Seconds until the next attempt; None when nothing is scheduled."""
        return None if self._next is None else max(0, self._next - self.clock.now())

    def step(self):
        """Do whatever is due now: at most one HTTP call (bounded by timeout_s) or one
        commit. Returns how long the caller may sleep (None: until force())."""
        if self.due_in() == 0:
            self._run(self._pending or self._call())
        return self.due_in()

    async def astep(self):
        """step() for asyncio: waits until something is due (no polling; force() wakes
        it), does it with the HTTP call yielding to the loop, returns the next wait."""
        from .aio import astep  # the asyncio code stays off the heap of a plain loop

        return await astep(self)

    def force(self):
        """Refresh now, e.g. after the application's own cloud call was refused. Only a
        healthy refresher obeys: backoff and forbidden keep their waits."""
        if self.state != HEALTHY:
            return False
        self._next = self.clock.now()
        if self._ev:
            self._ev.set()
        return True

    def on_token(self, cb):
        """cb(token, expires) after every new token is committed."""
        self._cbs[0].append(cb)

    def on_state(self, cb):
        """cb(state, why) at once with the current state, then on every change."""
        self._cbs[1].append(cb)
        self._emit((cb,), self.state, self._why)

    def status(self):
        p = self.prov
        return {"verification_code": p and p.code,  # for the operator, while PROVISIONING
                "operation_expires": p and p.exp, "state": self.state, "reason": self._reason,
                "token": redact(self.token) if self.token else None,
                "expires": self.expires, "next_attempt": self._next,
                "last_error": None if self.state == HEALTHY else self._why,
                "pending_commit": self._pending is not None, "counts": dict(self._counts)}

    def suspend(self):
        """The wait in progress, as bytes for RTC memory before deep sleep."""
        return ("%s %d %d" % (self.state, self._next or 0, self._wait)).encode()

    def resume(self, data):
        """After a deep-sleep wake, go on with suspend()'s wait (a backoff, a 403 hold,
        the refresh time already drawn). Junk or None: a no-op."""
        try:
            state, nxt, wait = data.decode().split()
            nxt, wait = int(nxt), int(wait)
        except (AttributeError, ValueError, UnicodeError):
            return
        if state in (HEALTHY, BACKOFF, FORBIDDEN) and self.state == HEALTHY or \
                state == self.state == PROVISIONING:
            self._wait = wait
            self._set(state, nxt or None, "resumed", self._reason)

    # -- the machine --------------------------------------------------------------------

    def _boot(self):
        rec = self.store.load()
        init = self.cfg["initial_token"]
        # import only into an empty store, or over a refused token from another provisioning
        if init and (rec is None or (rec.due < 0 and rec.seed != fingerprint(init))):
            exp = self.cfg.get("initial_expiration", UNKNOWN)
            rec = Record(init, NEVER if exp is None else exp, 0, fingerprint(init))
            if isinstance(exp, int):
                rec.due = self._due(self.clock.now(), exp)
            self.log("import: initial token %s" % redact(init))
            self._commit(rec)
        self.rec = rec
        c = self.clock
        if not c.trusted:
            # TLS needs a plausible clock before NTP or a Date header corrects it: the
            # newest time known to have passed (the last commit, else the release)
            t = max(rec.at if rec else 0, RELEASED)
            if c.now() < t:
                c.set(t, False)
                self.log("clock: unset, moved forward to " + iso(t))
        now = c.now()
        if rec is None:
            self._need("no token", "empty")
        elif rec.due < 0:
            self._need("410: provision this device", GONE)
        elif rec.exp != NEVER and not c.trusted:
            self._set(HEALTHY, now, "clock unknown: refresh at once")  # for the Date header
        elif rec.due > now:
            if rec.why == FORBIDDEN:
                self._set(FORBIDDEN, rec.due, "403 hold", FORBIDDEN)
            else:
                self._set(HEALTHY, rec.due, "scheduled")
        elif rec.exp == UNKNOWN:
            self._set(HEALTHY, now, "imported")
        elif rec.due == 0:
            self._set(HEALTHY, None, "never expires")
        else:
            # off past its refresh point: spread a fleet that powers up together
            self._set(HEALTHY, now + policy.boot_delay(now, rec.exp, self.rand()), "overdue")

    def _need(self, why, reason):
        # no usable token: provision ourselves if allowed, else wait for a person
        if self.cfg["reprovision"] and self.cfg["provisioning_token"]:
            from .selfprov import Provisioner

            self.prov = Provisioner(self)
        else:
            self._set(PROVISION, None, why, reason)

    def _request(self):
        """(method, url, body, headers) of the refresh call (or a provisioning call)."""
        if self.prov:
            return self.prov.request()
        self._counts["attempts"] += 1
        self.log("refresh: presenting %s" % redact(self.token))
        t = self.rec.token
        # a token is printable ASCII: only '"' and '\\' would need JSON's escapes
        body = json.dumps({"registrationToken": t}) if '"' in t or "\\" in t else \
            '{"registrationToken": "%s"}' % t
        return "PUT", self._url, body.encode(), self._h

    def _call(self):
        try:
            m, u, b, h = self._request()  # not *args: a call through * costs heap
            return self.http.request(m, u, b, h)
        except Exception as e:  # every transport failure is one failed attempt
            return e

    def _run(self, answer):
        """Act on an answer (status, headers, body), the exception the call raised, or
        the record to commit again. Whatever goes wrong is a failed attempt."""
        try:
            if isinstance(answer, Record):
                self._keep(answer, "commit retry")
            elif self.prov:
                self.prov.settle(answer)
            elif isinstance(answer, Exception):
                self._fail("transport", "transport: %s %s" % (type(answer).__name__, answer))
            else:
                self._settle(answer[0], answer[1], answer[2])
        except Exception as e:  # MemoryError too
            try:
                self._fail("error", "%s %s" % (type(e).__name__, e))
            except Exception:  # not even memory for that: later, all the same
                self._next = self.clock.now() + self.cfg["backoff_max_s"]

    def _settle(self, status, headers, body):
        cur = self.rec
        if not self.clock.trusted:
            t = http_date(headers.get("date"))
            if t:
                self.clock.set(t)
                self.log("clock: set from the server's Date header")
        now = self.clock.now()
        kind, token, exp, retry, why = classify(status, headers, body, now)
        if kind == ROTATED or kind == RECOVERED:
            if kind == RECOVERED:
                self._counts["recoveries"] += 1
                self.log("recovered (200): the token of a lost answer was revoked")
            self._keep(Record(token, NEVER if exp is None else exp, self._due(now, exp),
                              cur.seed), "rotated (%d)" % status)
        elif kind == GONE:
            cur.due = DEAD
            self._commit(cur)
            self._need("410: provision this device", GONE)
        elif kind == FORBIDDEN:
            self._wait = policy.floor(max(self.cfg["backoff_max_s"], retry), self.rand())
            cur.due, cur.why = self.clock.now() + self._wait + 1, FORBIDDEN
            self._commit(cur)
            self._set(FORBIDDEN, cur.due, "403 forbidden: next try in %ds" % self._wait,
                      FORBIDDEN)
        else:
            self._fail(kind, why, retry)

    def _fail(self, reason, why, retry=0):
        self._counts["failures"] += 1
        c = self.cfg
        self._wait = policy.backoff(self._wait, c["backoff_min_s"], c["backoff_max_s"],
                                    self.rand(), retry, self.expires_in())
        # now() drops the fraction of the current second: +1 so a wait is never shorter
        self._set(BACKOFF, self.clock.now() + self._wait + 1,
                  "%s; retry in %ds" % (why, self._wait), reason)

    def _due(self, now, exp):
        if exp is None:
            return 0
        # a token the server sent already (nearly) expired must not make us spin
        return max(policy.refresh_at(now, exp, self.rand()), now + self.cfg["backoff_min_s"])

    def _commit(self, rec):
        # True once on flash. 403, 410 and an import must survive a restart; if the flash
        # refuses, RAM still obeys them.
        try:
            rec.at = self.clock.now()
            self.store.commit(rec)
            return True
        except Exception as e:  # StoreError, or MemoryError inside the commit
            self.log("store: %s" % e)

    def _keep(self, rec, what):
        """Commit a new record, and only then use it."""
        if not self._commit(rec):
            self._pending = rec
            return self._fail("store", what + ", kept in RAM")
        self._pending = None
        self.rec = rec
        self._wait = 0
        self._counts["rotations"] += 1
        self.log("%s: committed %s, expires %s, next refresh in %s s" % (
            what, redact(rec.token), iso(self.expires),
            rec.due - self.clock.now() if rec.due else "-"))
        self._emit(self._cbs[0], rec.token, self.expires)
        self._set(HEALTHY, rec.due or None, what)

    def _emit(self, cbs, a, b):
        for cb in cbs:
            try:
                cb(a, b)
            except Exception as e:  # the application's bug must not stop the refresher
                self.log("callback: %s %s" % (type(e).__name__, e))

    def _set(self, state, next_at, why, reason=None):
        self._next = next_at
        self._why = why
        self._reason = None if state == HEALTHY else reason
        if state != self.state:
            self.state = state
            self.log("state: %s (%s)" % (state, why))
            self._emit(self._cbs[1], state, why)
        elif state != HEALTHY:
            self.log("%s: %s" % (state, why))
