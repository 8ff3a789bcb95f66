# mypy: disable-error-code="attr-defined, operator, union-attr, has-type"
# (a mixin: its state is set by the Refresher that inherits it, refresher.py's __init__)
# The state machine behind regtoken.Refresher (refresher.py holds the public API):
#
#   provision --(import initial_token)--> healthy --(due)--> attempt
#   attempt --201/200, committed--> healthy        attempt --5xx/412/timeout/garbage--> backoff
#   attempt --403--> forbidden (wait backoff_max_s) attempt --410--> provision (stops)
#   backoff/forbidden --(due)--> attempt
#
# What each answer does, the commit before a new token is used, the backoff, the state
# changes and their callbacks. Only a power cut stops it: any exception inside a step is a
# failed attempt, and one raised by a callback is logged.
#
# 16 globals: the module's dict fits 17 slots (an 18th grows it to 23: 96 B more, and a
# 368 B piece at boot), so rarer names are read through policy.
from . import policy
from .edges import redact
from .policy import FORBIDDEN, GONE, RECOVERED, classify
from .store import DEAD, NEVER, Record

HEALTHY = "healthy"
BACKOFF = "backoff"
PROVISION = "provision"  # and FORBIDDEN, from policy: 403 is a state too
PROVISIONING = "provisioning"  # self-provisioning (selfprov.py) is running


class Machine:
    # its state lives in the Refresher that inherits it (refresher.py's __init__)

    def _use(self, rec):
        # the committed record; a token only while the server has not refused it (due < 0:
        # refused, or a provisioning operation)
        self._rec = rec
        ok = rec and rec.due >= 0
        self.token = ok and rec.token or None
        e = ok and rec.exp
        self.expires = e if type(e) is int else None

    def _request(self):
        # (method, url, body, headers) of the refresh call, or of a provisioning call
        if self._prov:
            return self._prov.request()
        self._counts["attempts"] += 1
        t = self.token
        self._log("refresh: presenting " + redact(t))
        # a token is printable ASCII: only '"' and '\\' would need JSON's escapes
        if '"' in t or "\\" in t:
            import json

            b = json.dumps({"registrationToken": t})
        else:
            b = '{"registrationToken": "%s"}' % t
        u, h = self._put
        return "PUT", u, b.encode(), h

    def _run(self, a):
        # act on an answer (status, headers, body), the exception the call raised, or the
        # record to commit again; whatever goes wrong is a failed attempt
        try:
            if a is Machine:  # no token, no provisioning (refresher.py's _todo): boot's,
                # or a 410's, went wrong
                self._need("no token", GONE if self._rec else "empty")
            elif isinstance(a, Record):
                self._keep(a, "commit retry")
            elif self._prov:
                self._prov.settle(a)
            elif isinstance(a, Exception):
                self._fail("transport", "transport: %s %s" % (type(a).__name__, a))
            else:
                c = self._clock
                now = c.now()
                kind, tok, exp, retry, why = classify(a[0], a[1], a[2], now)
                t = policy.http_date(a[1].get("date")) or 0  # the server's clock; 0: unknown
                # An unset clock takes it: not a day before what is known to have passed (the
                # clock floor, boot.py: a day for an RTC that ran fast before its last
                # commit), nor 20 years on: a server's clock gone wrong must not set ours. A
                # set one (by NTP, or a Date gone wrong) by which the new token is dead takes
                # it when by it the token is alive: the server's clock decides its tokens (a
                # clock gone years ahead would fail every handshake too). So does an unset
                # one run ahead (an RTC years on): the day's bound is from its own time
                if not c.trusted and now - 86400 < t < now + 631152000 or (
                        exp and policy.RELEASED <= t < exp <= now):  # trusted or not
                    c.set(t)
                    now = t
                    try:  # no heap for the line: the answer is acted on all the same
                        self._log("clock: set from the server's Date header")
                    except Exception:
                        pass
                cur = self._rec
                if tok and exp and exp <= now and policy.RELEASED <= t >= exp:  # dead by
                    # the server's Date and by our clock too (set from that Date, or not
                    # moved since by it the token is dead): presented, a 410; the parent,
                    # in its grace period, gets a 200
                    kind, tok = policy.GARBAGE, None
                    why += ": token expired already"
                if tok:  # rotated (201) or recovered (200)
                    if kind == RECOVERED:  # the unseen token was revoked; said in the
                        # committed line, whose log is guarded (a line before the commit
                        # with no heap cost the new token)
                        self._counts["recoveries"] += 1
                    if exp and c.trusted and policy.RELEASED <= t < exp and abs(t - now) > 2:
                        # the server's clock decides its tokens: by a Date by which the token
                        # is alive, its expiry on ours (more than the Date's second and the
                        # answer's time apart), so that a clock off from the server's neither
                        # refreshes past expiry nor before half the lifetime, nor backs off
                        # past it, and expires_in() says the time it has
                        exp += now - t
                    due = self._due(now, exp)
                    w = 0
                    if due and (not c.trusted or exp <= due):  # due 0: never expires
                        # no clock to place the schedule on (no NTP, no usable Date), or a
                        # token dead already by the server's: not the schedule, nor a spin,
                        # but the next refresh after a wait that grows like a backoff
                        w = policy.backoff(self._wait, self._cfg["backoff_min_s"],
                                           self._cfg["backoff_max_s"], self._rand())
                        due = now + w + 1
                    self._keep(Record(tok, NEVER if exp is None else exp, due, cur.seed),
                               "recovered (200)" if kind == RECOVERED else "rotated (201)", w)
                elif kind == GONE:
                    self._log("410: %s refused for good" % redact(cur.token))
                    cur.due = DEAD
                    self._use(cur)  # never presented again, whatever fails below
                    if self._commit(cur):  # on as a boot goes on (refresher.py's _boot)
                        try:
                            return self._boot()
                        except Exception as e:  # no heap to import boot.py again: as
                            self._log("%s: %s" % (type(e).__name__, e))  # below
                    self._need("410: provision this device", GONE)
                elif kind == FORBIDDEN:
                    w = self._wait = policy.floor(max(self._cfg["backoff_max_s"], retry),
                                                  self._rand())
                    cur.due, cur.why = now + w + 1, FORBIDDEN
                    self._commit(cur)
                    self._set(FORBIDDEN, cur.due, "403 forbidden: next try in %ds" % w,
                              FORBIDDEN)
                else:
                    self._fail(kind, why, retry)
        except Exception as e:  # MemoryError too
            try:
                if self._prov:  # a failed provisioning call: polled again by its own rules
                    return self._prov.settle(e)
                self._fail("error", "%s: %s" % (type(e).__name__, e))
            except Exception:  # not even memory for that: later, all the same
                self._next = self._clock.now() + self._cfg["backoff_max_s"]

    def _need(self, why, reason):
        # no usable token: provision ourselves if allowed, else wait for a person
        if self._cfg["reprovision"] and self._cfg["provisioning_token"]:
            from .selfprov import Provisioner

            self._prov = Provisioner(self, reason)
        else:
            self._set(PROVISION, None, why, reason)

    def _fail(self, reason, why, wait=0, end=0):
        # wait: the server's Retry-After, a floor; end: a time the next attempt may not
        # pass (0: none)
        self._counts["failures"] += 1
        c = self._cfg
        now = self._clock.now()
        e = self.expires  # the seconds it has left, as expires_in() says
        w = self._wait = policy.backoff(self._wait, c["backoff_min_s"], c["backoff_max_s"],
                                        self._rand(), wait, None if e is None else e - now)
        if end and now + w >= end:
            w = max(end - now - 1, 0)
        # now() drops the fraction of the current second: +1 so a wait is never shorter
        w = now + w + 1
        r = self._rec
        if wait and r:  # the server's floor (Retry-After) outlives a restart, as a 403's
            # hold: committed before the state is told (a callback may not return: a
            # SystemExit, a Ctrl-C)
            r.due, r.why = w, reason
            self._commit(r)
        self._set(BACKOFF, w, "%s; retry in %ds" % (why, w - now - 1), reason)

    def _due(self, now, exp):
        # 0: never; at least a second on (the clock's resolution): a token of a few seconds
        # is refreshed on its schedule, not past its expiry; one (nearly) expired already
        # gets a wait like a backoff instead (_run: its due is not before its expiry)
        return 0 if exp is None else max(policy.refresh_at(now, exp, self._rand()), now + 1)

    def _commit(self, rec):
        # True once on flash. 403, 410 and an import must survive a restart; if the flash
        # refuses, RAM still obeys them.
        try:
            rec.at = self._clock.now()
            self._store.commit(rec)
            if self._pending is rec:  # the pending record in use, committed with a hold
                self._pending = None
            return True
        except Exception as e:  # StoreError, or MemoryError inside the commit
            self._log("%s: %s" % ("store", e))  # "store: ...", in names it has

    def _keep(self, rec, why, wait=0):
        # commit a new record, and only then use it; `wait`: the backoff wait that set its
        # due, which the next one grows from (0: its schedule)
        if not self._commit(rec):
            self._pending = rec
            d = rec.due
            if d and d <= self._clock.now():
                # its own refresh is due and the flash still refuses it: it is the token
                # now, presented from RAM (refresher.py's _todo), or it expires unseen and
                # the device is dead even without a power cut; the token on flash is its
                # parent, revoked once the server rotates it (a cut then needs provisioning)
                self._use(rec)
            # the commit's retries end at its refresh (the token in use, an import of
            # unknown expiry, bounds nothing), which is then presented at once
            return self._fail("store", why + ", kept in RAM", 0, d)
        if self._pending:  # only then: an instance attribute (refresher.py)
            self._pending = None
        self._use(rec)
        self._wait = wait
        self._counts["rotations"] += 1
        try:  # no heap for the line: the token is in use all the same, and is told of
            self._log("%s: committed %s, expires %s, next refresh %s" % (
                why, redact(rec.token), policy.iso(self.expires),
                "in %d s" % (rec.due - self._clock.now()) if rec.due else "never"))
        except Exception:
            pass
        # the state first: a callback sees it whole (status(), or force() from inside)
        self._set(HEALTHY, rec.due or None, why)
        self._emit(self._cbs[0], rec.token, self.expires)

    def _emit(self, cbs, a, b):
        # the callbacks registered before: one registered by a callback waits for the
        # next event (iterating the list itself, a callback that registers one never ends)
        for i in range(len(cbs)):
            try:
                cbs[i](a, b)
            except Exception as e:  # the application's bug must not stop the refresher;
                # its type only: its text may quote the token it was given
                self._log("callback: " + type(e).__name__)

    def _set(self, state, due, why, reason=None):
        self._next = due  # the next attempt (None: none)
        self._why = why
        self._reason = None if state == HEALTHY else reason
        c = state != self.state
        self.state = state
        try:  # no heap for the line: the state is set all the same, and told of
            if c:
                self._log("state: %s (%s)" % (state, why))
            elif state != HEALTHY:
                self._log("%s: %s" % (state, why))
        except Exception:
            pass
        if c:
            self._emit(self._cbs[1], state, why)
