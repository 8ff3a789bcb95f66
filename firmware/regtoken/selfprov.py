# Self-provisioning: a device with no usable token gets one through the platform's
# provisioning operation, which an operator approves by its verification code. The
# refresher imports this only when it is needed (reprovision, a provisioning_token, no
# usable token) and hands it its calls and answers while it is PROVISIONING.
#
# Power cuts: the operation is committed to the store (due OP, token "<id> <code>", exp its
# expiry, the dead lineage's seed) before its code is shown, so a restart resumes it and the
# approval is not lost. A cut after complete's 200 but before the token's commit completes
# again on restart: the server gives a new token and revokes the one never stored. A cut
# after the commit finds the token. The store's swap keeps the op or the token, never neither.
import json

from . import policy
from .policy import classify, retry_after, rfc3339, valid_token
from .refresher import PROVISION, PROVISIONING
from .store import DEAD, NEVER, Record

OP = -2  # `due` of a stored provisioning operation
DISABLED = "disabled"  # `why` of a record stored at a 423, then the hold's seconds from its
# commit, "-" and the reason there is no token: "disabled161-empty" or "disabled161-gone"


def token_object(body):
    """(token, exp) from a token object, exp Unix seconds or None (never expires);
    ValueError for anything else: not JSON, not an object, a key missing or bad."""
    _, t, e, _, _ = classify(200, None, body, 0)
    if t:
        return t, e
    raise ValueError


def _cancelled(body):
    """Whether a problem's `type` ends with provisioningOperationCancelled (not the word
    anywhere: a `detail` may quote it). Read from the bytes, not parsed: a document cut at
    the answer buffer's end still has its type, which comes first."""
    p = body[body.find(b'"type"'):].split(b'"')  # ["", "type", ":", the type, ...]
    return len(p) > 3 and p[2].strip() == b":" and p[3].endswith(b"provisioningOperationCancelled")


class Provisioner:
    def __init__(self, r, reason):
        self.r = r
        self.reason = reason  # why there is no token (status()'s reason): empty or gone
        rec = r._rec  # None, refused (DEAD) or a stored operation (OP)
        self.seed = rec.seed if rec else "-"
        self.id = self.code = self.exp = None
        at = self.t0 = r._clock.now()  # t0: when the last call started
        if rec and rec.why.endswith("empty"):  # it began on an empty store (the record's
            self.reason = reason = "empty"  # why): no 410 came, whatever a restart says
        if rec and rec.due == OP and rec.exp >= at:  # not one expired since
            self.id, self.code = rec.token.split()
            self.exp = rec.exp
            at += r._cfg["backoff_min_s"]  # the previous call may have been just before the cut
        if rec and rec.why.startswith(DISABLED):  # a 423's hold, across a restart: the
            # seconds it held from its commit ("disabled161-empty"; backoff_max_s in a
            # record of an earlier version, "disabled-empty"); the clock floor moved an
            # unset clock to at least that time
            h = rec.why[8:].split("-")[0]
            at = max(at, rec.at + int(h or r._cfg["backoff_max_s"]) + 1)
        r._wait = 0
        r._set(PROVISIONING, at, "resumed, code %s" % self.code if self.id else "no token",
               reason)

    def request(self):
        r = self.r
        c = r._cfg
        t = self.t0 = r._clock.now()
        # exp dropped the fraction of its second: only past that second has it surely passed
        if self.id and t > self.exp:
            self.id = None
            r._log("provisioning: expired")
        d = c["device_id"]
        m, p, d = ("PUT", "complete", {"provisioningOperationId": self.id}) if self.id else (
            "POST", "init", {"deviceId": d} if d else {})
        return m, c["api_url"] + "/provisioning-operations/" + p, json.dumps(d).encode(), r._put[1]

    def settle(self, a):
        r = self.r
        c = r._cfg
        lo, hi = c["backoff_min_s"], c["backoff_max_s"]
        now = r._clock.now()
        retry = 0
        rec = None  # to commit: the new operation, or the cancelled one
        if isinstance(a, Exception):
            why = repr(a)
        else:
            st, h, body = a
            why = "HTTP %d" % st
            try:
                retry = retry_after(h, now)
                # the server's clock onto ours, by its Date (more than the Date's second
                # and the answer's time apart): its expiries are on its clock, and ours
                # may be hours off (an unset RTC run fast, a wrong NTP)
                t = policy.http_date(h.get("date")) or 0
                d = now - t if policy.RELEASED <= t and abs(t - now) > 2 else 0
                if st // 100 == 2:
                    if not self.id:  # init's answer: a new operation
                        o = json.loads(body)
                        i, code = o["provisioningOperationId"], o["verificationCode"]
                        exp = rfc3339(o["expirationTime"])
                        if exp:
                            exp += d
                        # expired already: an init again, at the next backoff, not every
                        # backoff_min_s with a commit and a new code each time
                        if not (valid_token(i) and valid_token(code) and exp and exp > now):
                            raise ValueError
                        rec = Record(i + " " + code, exp, OP, self.seed,  # stored before
                                     why=self.reason)  # shown, with why there is no token
                        self.id, self.code, self.exp = i, code, exp
                        why = "approve it"
                    elif st == 202:
                        why = "not approved"
                    else:
                        tok, exp = token_object(body)
                        if exp and policy.RELEASED <= t >= exp and (
                                exp <= now or not r._clock.trusted and t < now + 631152000):
                            raise ValueError  # dead by its Date and ours (an unset clock:
                            # by a Date it could take, as machine.py's): complete again
                        r._prov = None
                        if exp and r._clock.trusted and t < exp:  # its expiry on our
                            exp += d  # clock, as machine.py's
                        # without NTP `now` is wrong: refresh at once, which sets the clock
                        # (a token that never expires: never)
                        due = r._due(now, exp) if r._clock.trusted or exp is None else now
                        return r._keep(Record(tok, NEVER if exp is None else exp, due,
                                              self.seed), "provisioned (%d)" % st)
                elif st == 401 or st == 410 and _cancelled(body):
                    r._prov = None
                    why = "401: fix provisioning_token in config.json"
                    if st == 410:
                        why = "cancelled by an operator: restart"
                        if self.id:  # a restart must not resume it; its init anew keeps
                            rec = Record(self.id, self.exp, DEAD, self.seed,  # the reason
                                         why=self.reason)
                        self.reason = "cancelled"
                    else:
                        self.reason = "unauthorized"
                    hi = None  # stop
                elif st == 410:  # the operation is gone: an init anew, also after a
                    # restart, which must not resume it (nor show its code again)
                    r._commit(Record("-", NEVER, DEAD, self.seed, why=self.reason))
                    self.id = None
                    r._wait = 0
                    why = "410: new init"
                elif st == 423:  # workspace disabled: a hold kept across a restart (the
                    lo = policy.floor(max(retry, hi), r._rand())  # operation, or a record
                    # with no token, marked); lo: the 60 s cap below does not shorten it
                    d = "%s%d-%s" % (DISABLED, lo, self.reason)  # the hold, kept
                    hi, retry = lo, 0  # and lo is all of it, live as after a restart
                    r._commit(Record("%s %s" % (self.id, self.code), self.exp, OP, self.seed,
                                     why=d) if self.id else Record("-", NEVER, DEAD, self.seed,
                                                                    why=d))
            except Exception as e:  # a malformed answer, or no heap to read it: a failed
                why += " MemoryError" if isinstance(e, MemoryError) else " bad"  # call
        if rec:
            r._commit(rec)
        if hi is None:
            return r._set(PROVISION, None, why, self.reason)
        if rec:
            r._log("provisioning: verification code: %s (until %s)" % (self.code,
                                                                     o["expirationTime"]))
            r._wait = 0
        # counted from the start of this call, so that a slow or timed-out one does not
        # stretch the gap between two calls (57, +1 as now() drops a fraction: within 60 s
        # of each other, a Retry-After's wait too, as the contract says), and no sooner
        # than `lo` after its end
        w = policy.backoff(r._wait, lo, hi, r._rand(), retry)
        w = r._wait = min(w, 57) if self.id and now < self.exp else w
        due = max(self.t0 + w, now + lo) + 1
        if self.id:  # if it expires first, the new init then: not up to a minute later
            due = min(due, max(self.exp, now + lo) + 1)  # with a dead code on show
        r._set(PROVISIONING, due, "%s; next in %ds" % (why, due - now), self.reason)
