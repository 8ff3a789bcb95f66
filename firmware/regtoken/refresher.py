# The refresher: one explicit state machine around the stored token.
#
#   provision --(import initial_token)--> healthy --(due)--> attempt
#   attempt --201/200, committed--> healthy        attempt --5xx/412/timeout/garbage--> backoff
#   attempt --403--> forbidden (wait backoff_max_s) attempt --410--> provision (stops)
#   backoff/forbidden --(due)--> attempt
#
# Edges (HTTP transport, store, clock, randomness, log) are passed in; `step` does what is
# due and says how long the caller may sleep, so a plain loop, asyncio or an application's
# own scheduler can drive it.
import json

from . import ConfigError, policy
from .answer import FORBIDDEN, GONE, RECOVERED, ROTATED, classify
from .clock import Clock
from .dates import http_date
from .log import log as _log
from .log import redact
from .store import DEAD, NEVER, UNKNOWN, Files, Record, Store, StoreError, fingerprint

try:
    from typing import Any, Callable  # for type checkers and IDEs; annotations cost no bytecode
except ImportError:
    pass

HEALTHY = "healthy"
BACKOFF = "backoff"
PROVISION = "provision"  # and FORBIDDEN, from answer: 403 is a state too
PROVISIONING = "provisioning"  # self-provisioning (selfprov.py) is running
PATH = "/devices/registration-tokens/refresh"


def _random():
    import random

    return random.random()


def make_transport(cfg):
    """The HTTP seam the config asks for: the own verified client, or urequests."""
    if cfg["transport"] == "urequests":
        from .ureq import Urequests

        return Urequests(cfg["timeout_s"])
    from .wire import Wire, pem_to_der

    ca = None
    if cfg["api_url"].startswith("https://") and cfg["tls_verify"]:
        try:
            with open(cfg["ca_file"], "rb") as f:
                ca = pem_to_der(f.read())
        except OSError:
            raise ConfigError("config.json: 'ca_file' %s cannot be read" % cfg["ca_file"])
        if not ca or not ca[0]:
            raise ConfigError("config.json: 'ca_file' holds no certificate")
    return Wire(cfg["timeout_s"], ca)


class Refresher:
    def __init__(self, cfg: dict, transport=None, store=None, clock=None, rand=None,
                 log=None) -> None:
        self.cfg = cfg
        self.log = log or _log
        self.clock = clock or Clock()
        self.rand = rand or _random
        self.http = transport or make_transport(cfg)
        self.store = store or Store(Files(cfg["store_dir"]), self.log)
        self.rec: Record | None = None  # the committed record
        self.pending = None  # a new record the flash refused; retried before anything else
        self.state = None
        self.prov: Any = None  # a selfprov.Provisioner while PROVISIONING
        self.next_at = None
        self.wait = 0  # the last backoff wait, 0 after a success
        self.error = None
        self.wake: Callable[[], object] | None = None  # set by a loop that sleeps until due
        self.counts = {"attempts": 0, "rotations": 0, "recoveries": 0, "failures": 0}
        self._token_cbs: list = []
        self._state_cbs: list = []
        if cfg["api_url"].startswith("https://") and not cfg["tls_verify"]:
            self.log("WARNING: tls_verify is false: the server is not verified, and anyone "
                     "on the path can take the token")
        self._boot()

    # -- public API ---------------------------------------------------------------------

    @property
    def token(self) -> str | None:
        """The committed token, or None when the device needs provisioning."""
        rec = self.rec
        return rec.token if rec and rec.due >= 0 else None  # < 0: refused, or an operation

    @property
    def expires(self) -> int | None:
        """Unix seconds, or None (never expires, or not known yet)."""
        rec = self.rec
        exp = rec.exp if rec and rec.due >= 0 else None
        return exp if isinstance(exp, int) else None

    def due_in(self) -> int | None:
        """Seconds until the next attempt; None when nothing is scheduled."""
        if self.next_at is None:
            return None
        return max(0, self.next_at - self.clock.now())

    def step(self) -> int | None:
        """Do whatever is due now; return how long the caller may sleep (None: until
        force() or a restart)."""
        if self.due_in() == 0:
            if self.pending:
                self._keep(self.pending, "commit retry")
            else:
                self.settle(self._call())
        return self.due_in()

    def force(self) -> bool:
        """Refresh now, e.g. after the application's own cloud call was refused. Only a
        healthy refresher obeys: backoff and forbidden keep their waits, so an
        application calling this in a loop cannot hammer the server."""
        if self.state != HEALTHY:
            return False
        self.next_at = self.clock.now()
        if self.wake:
            self.wake()
        return True

    def on_token(self, cb: Callable[[str, int | None], object]) -> None:
        """cb(token, expires) after every new token is committed."""
        self._token_cbs.append(cb)

    def on_state(self, cb: Callable[[str, str], object]) -> None:
        """cb(state, why) on every state change."""
        self._state_cbs.append(cb)

    def suspend(self) -> bytes:
        """What deep sleep would forget, for RTC memory: the wait in progress."""
        return ("%s %d %d" % (self.state, self.next_at or 0, self.wait)).encode()

    def resume(self, data) -> None:
        """After a deep-sleep wake, go on with the wait that was in progress: a backoff, a
        403 hold, or the next refresh with its jitter already drawn (a boot must not draw
        a new boot delay each time the timer wakes it). Junk or None: a no-op."""
        try:
            state, next_at, wait = data.decode().split()
            next_at, wait = int(next_at), int(wait)
        except (AttributeError, ValueError, UnicodeError):
            return
        if (state in (HEALTHY, BACKOFF, FORBIDDEN) and self.state == HEALTHY
                or state == self.state == PROVISIONING) and not self.pending:
            self.wait = wait
            self._set(state, next_at or None, "resumed after deep sleep")

    def status(self) -> dict:
        p = self.prov
        return {
            "verification_code": p and p.code,  # for the operator to approve, while PROVISIONING
            "operation_expires": p and p.exp,
            "state": self.state,
            "token": redact(self.token),
            "expires": self.expires,
            "next_attempt": self.next_at,
            "last_error": self.error,
            "pending_commit": self.pending is not None,
            "counts": dict(self.counts),
        }

    # -- the machine --------------------------------------------------------------------

    def _boot(self):
        rec = self.store.load()
        init = self.cfg["initial_token"]
        # import only into an empty store, or over a refused token from another provisioning
        if init and (rec is None or (rec.due < 0 and rec.seed != fingerprint(init))):
            rec = self._import(init)
        self.rec = rec
        now = self.clock.now()
        if rec is None:
            self._need("no token: provision this device")
        elif rec.due < 0:
            self._need("token refused (410): provision this device")
        elif rec.exp != NEVER and not self.clock.trusted:
            # no idea what time it is: the answer brings the server's Date
            self._set(HEALTHY, now, "clock unknown: refresh at once")
        elif rec.due > now:
            self._set(HEALTHY, rec.due, "scheduled")  # also a 403 hold
        elif rec.exp == UNKNOWN:
            self._set(HEALTHY, now, "imported token: rotate at once")
        elif rec.due == 0:
            self._set(HEALTHY, None, "token never expires")
        else:
            # off past its refresh point: spread a fleet that powers up together
            self._set(HEALTHY, now + policy.boot_delay(now, rec.exp, self.rand()), "overdue")

    def _import(self, init):
        exp = self.cfg.get("initial_expiration", UNKNOWN)
        rec = Record(init, NEVER if exp is None else exp, 0, fingerprint(init))
        if isinstance(exp, int):
            rec.due = self._due(self.clock.now(), exp)
        self.log("import: initial token %s from config.json" % redact(init))
        try:
            self.store.commit(rec)
        except StoreError as e:
            self.log("import: %s; using the token from config.json" % e)
        return rec

    def request(self) -> tuple:
        """(method, url, body, headers) of the refresh call."""
        h = {"Content-Type": "application/json"}
        if self.cfg["provisioning_token"]:
            h["Authorization"] = "DeviceToken " + self.cfg["provisioning_token"]
        rec = self.rec
        assert rec, "no token to present"
        body = json.dumps({"registrationToken": rec.token}).encode()
        return "PUT", self.cfg["api_url"] + PATH, body, h

    def _need(self, why):
        # no usable token: provision ourselves if allowed, else wait for a person
        if self.cfg["reprovision"] and self.cfg["provisioning_token"]:
            from .selfprov import Provisioner

            self.prov = Provisioner(self)
        else:
            self._set(PROVISION, None, why)

    def _begin(self):
        if self.prov:
            return self.prov.request()
        self.counts["attempts"] += 1
        self.log("refresh: presenting %s" % redact(self.token))
        return self.request()

    def _call(self):
        try:
            return self.http.request(*self._begin())
        except Exception as e:  # every transport failure is one failed attempt
            return e

    async def acall(self):
        try:
            return await self.http.arequest(*self._begin())
        except Exception as e:
            return e

    def settle(self, answer) -> None:
        """Act on one answer: (status, headers, body), or the exception the call raised."""
        if self.prov:
            return self.prov.settle(answer)
        if isinstance(answer, Exception):
            return self._fail("transport: %s %s" % (type(answer).__name__, answer), 0)
        cur = self.rec
        assert cur, "an answer without a request"
        status, headers, body = answer
        self._learn_time(headers)
        now = self.clock.now()
        kind, token, exp, retry, why = classify(status, headers, body, now)
        if kind == ROTATED or kind == RECOVERED:
            if kind == RECOVERED:
                self.counts["recoveries"] += 1
                self.log("recovered (200): an earlier answer was lost; the server revoked "
                         "the token we never stored")
            rec = Record(token, NEVER if exp is None else exp, self._due(now, exp), cur.seed)
            self._keep(rec, "rotated (%d)" % status)
        elif kind == GONE:
            cur.due = DEAD
            self._persist()
            self._need("410: token invalid, expired or revoked; provision this device")
        elif kind == FORBIDDEN:
            self.wait = policy.floor(max(self.cfg["backoff_max_s"], retry), self.rand())
            cur.due = self._after(self.wait)
            self._persist()
            self._set(FORBIDDEN, cur.due, "403 forbidden: next try in %ds" % self.wait)
        else:
            self._fail(why, retry)

    def _fail(self, why, retry):
        self.counts["failures"] += 1
        c = self.cfg
        exp = self.expires
        self.wait = policy.backoff(self.wait, c["backoff_min_s"], c["backoff_max_s"],
                                   self.rand(), retry, exp and exp - self.clock.now())
        self._set(BACKOFF, self._after(self.wait), "%s; retry in %ds" % (why, self.wait))

    def _after(self, wait):
        # now() drops the fraction of the current second: +1 so a wait is never shorter
        return self.clock.now() + wait + 1

    def _due(self, now, exp):
        if exp is None:
            return 0
        # a token the server sent already (nearly) expired must not make us spin
        return max(policy.refresh_at(now, exp, self.rand()), now + self.cfg["backoff_min_s"])

    def _keep(self, rec, what):
        """Commit a new record, and only then use it."""
        try:
            self.store.commit(rec)
        except StoreError as e:
            self.pending = rec
            return self._fail("%s, but %s; new token kept in RAM" % (what, e), 0)
        self.pending = None
        self.rec = rec
        self.wait = 0
        self.counts["rotations"] += 1
        exp = self.expires
        self.log("%s: committed %s, expires %s, next refresh in %s s" % (
            what, redact(rec.token), exp, rec.due - self.clock.now() if rec.due else "never"))
        for cb in self._token_cbs:
            cb(rec.token, exp)
        self._set(HEALTHY, rec.due or None, what)

    def _persist(self):
        # 403 and 410 survive a restart; if the flash refuses, RAM still obeys them
        try:
            self.store.commit(self.rec)
        except StoreError as e:
            self.log("store: %s" % e)

    def _learn_time(self, headers):
        if not self.clock.trusted:
            t = http_date(headers.get("date"))
            if t:
                self.clock.set(t)
                self.log("clock: set from the server's Date header (no NTP)")

    def _set(self, state, next_at, why):
        self.next_at = next_at
        self.error = None if state == HEALTHY else why
        if state != self.state:
            self.state = state
            self.log("state: %s (%s)" % (state, why))
            for cb in self._state_cbs:
                cb(state, why)
        elif state != HEALTHY:
            self.log("%s: %s" % (state, why))
