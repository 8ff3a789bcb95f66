# Self-provisioning (firmware/regtoken/selfprov.py and its seam in the refresher), on the
# shared fakes: scripted answers, a virtual clock, an in-memory flash that can lose power.
# Runs under CPython and under MicroPython (mp_runner.py).
import json

from fakes.clock import T0
from fakes.memfs import PowerLost
from fakes.net import CANCELLED, NoHeapJSON, issued, operation, problem
from regtoken import BACKOFF, HEALTHY, PROVISION, PROVISIONING, ConfigError, validate
from regtoken.store import DEAD, fingerprint

from cases.test_refresher import Rig as _Rig
from cases.test_refresher import iso
from cases.util import raises, restore_module, swap_module, tok

DAY = 86400
OP = -2  # selfprov.OP: the store's `due` of a provisioning operation
KEYS = ("api_url", "initial_token", "provisioning_token", "backoff_min_s", "backoff_max_s",
        "reprovision", "device_id")
ZERO_TOUCH = {"initial_token": None, "reprovision": True, "provisioning_token": "prov-secret",
              "device_id": "dev-0001"}


class Rig(_Rig):
    """The refresher rig with the self-provisioning keys carried over restarts."""

    def __init__(self, *answers, **cfg):
        self.states = []
        self.tokens = []
        _Rig.__init__(self, *answers, **cfg)
        self.r.on_state(lambda s, why: self.states.append(s))
        self.r.on_token(lambda t, exp: self.tokens.append(t))

    def raw(self):
        return {k: self.cfg[k] for k in KEYS}

    def restart(self, *answers):
        return Rig(*answers, fs=self.fs, clock=self.clock, rnd=self.rnd, **self.raw())

    def calls(self):
        """(method, last path segment, body) of every call."""
        return [(m, u.rsplit("/", 1)[1], json.loads(b)) for m, u, b, h in self.http.calls]

    def codes_logged(self):
        return [x for x in self.lines if "verification code: " in x]


def zero_touch(*answers, **cfg):
    c = dict(ZERO_TOUCH)
    c.update(cfg)
    return Rig(*answers, **c)


def op(n=1, life=600, now=T0):
    return operation("op-%d" % n, "CODE-%04d" % n, iso(now + life))


def test_zero_touch_first_boot_inits_polls_and_commits():
    rig = zero_touch(op(), (202, {}, b""), (202, {}, b""), issued(tok(1), iso(T0 + DAY), 200))
    assert rig.r.state == PROVISIONING and rig.r.due_in() == 0 and rig.r.token is None
    assert rig.states == [PROVISIONING]  # on_state reports the current state at once
    rig.r.step()
    method, url, body, headers = rig.http.calls[0]
    assert method == "POST" and url == "http://device-api.test/provisioning-operations/init"
    assert json.loads(body) == {"deviceId": "dev-0001"}
    assert headers == {"Content-Type": "application/json",
                       "Authorization": "DeviceToken prov-secret"}
    assert rig.codes_logged() == [x for x in rig.lines if "CODE-0001" in x]
    assert len(rig.codes_logged()) == 1 and "verification code: CODE-0001" in rig.codes_logged()[0]
    st = rig.r.status()
    assert st["state"] == PROVISIONING and st["verification_code"] == "CODE-0001"
    assert st["operation_expires"] == T0 + 600 and st["token"] is None
    assert rig.stored().due == OP  # the operation survives a restart
    assert rig.r.due_in() >= 5  # backoff_min_s after the previous provisioning call
    rig.run_until_due()
    rig.run_until_due()
    rig.run_until_due()
    assert [c[:2] for c in rig.calls()] == [("POST", "init")] + [("PUT", "complete")] * 3
    assert rig.calls()[1][2] == {"provisioningOperationId": "op-1"}
    assert rig.http.calls[3][3]["Authorization"] == "DeviceToken prov-secret"
    assert rig.r.state == HEALTHY and rig.r.token == tok(1) == rig.stored().token
    assert rig.stored().due > 0 and rig.r.expires == T0 + DAY
    assert rig.tokens == [tok(1)] and rig.states == [PROVISIONING, HEALTHY]
    assert rig.r.status()["verification_code"] is None
    assert len(rig.codes_logged()) == 1
    # then refreshed on the usual schedule, with the provisioned token
    assert DAY // 2 - 100 <= rig.r.due_in() <= DAY - 600
    rig.http.answers.append(issued(tok(2), iso(T0 + 2 * DAY)))
    rig.run_until_due()
    assert rig.http.presented() == tok(1) and rig.r.token == tok(2)


def test_polls_stay_within_60s_of_each_other_when_a_call_times_out():
    # the gap counts from the start of a call: one that hangs for timeout_s does not add
    # to it, and the next still waits backoff_min_s after it ended
    def hang(rig):
        def answer(*_):
            rig.clock.advance(15)  # timeout_s
            return OSError("timed out")
        return answer

    rig = zero_touch(op(life=DAY), backoff_min_s=20, backoff_max_s=600, rnd=0.0)
    rig.http.answers += [hang(rig)] * 4 + [(202, {}, b"")] * 2
    rig.r.step()
    starts = []
    for _ in range(6):
        wait = rig.r.due_in()
        assert wait >= 20  # after the end of the last call
        rig.clock.advance(wait)
        starts.append(rig.clock.now())
        rig.r.step()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert all(20 <= g <= 60 for g in gaps), gaps
    assert rig.r.state == PROVISIONING


def test_no_heap_to_read_the_approved_token_is_a_failed_poll_not_a_backoff():
    # MemoryError reading complete's 200: provisioning goes on by its own rules (the next
    # poll within 60 s, gives a new token), not the refresh's backoff and state
    rig = zero_touch(op(life=DAY), issued(tok(1), iso(T0 + DAY), 200),
                     issued(tok(2), iso(T0 + DAY), 200), backoff_min_s=5, backoff_max_s=3600)
    rig.r.step()  # init
    NoHeapJSON.fail = 1
    saved = swap_module("json", NoHeapJSON)
    try:
        rig.run_until_due()
    finally:
        NoHeapJSON.fail = 0
        restore_module("json", saved)
    st = rig.r.status()
    assert st["state"] == PROVISIONING and "MemoryError" in st["last_error"], st
    assert 5 <= rig.r.due_in() <= 58 and st["verification_code"] == "CODE-0001"
    assert BACKOFF not in rig.states
    rig.run_until_due()
    assert rig.r.state == HEALTHY and rig.r.token == tok(2) == rig.stored().token


def test_a_transport_returning_nonsense_while_provisioning_is_a_failed_poll():
    rig = zero_touch(op(life=DAY), (200, None, None), issued(tok(2), iso(T0 + DAY), 200))
    rig.r.step()  # init
    rig.run_until_due()  # headers None: the answer's reader raises inside settle
    assert rig.r.state == PROVISIONING and 0 < rig.r.due_in() <= 58
    rig.run_until_due()
    assert rig.r.state == HEALTHY and rig.r.token == tok(2)


def test_init_without_device_id_sends_an_empty_object():
    rig = zero_touch(op(), device_id=None)
    rig.r.step()
    assert rig.http.calls[0][2] == b"{}"


def test_polls_grow_like_backoff_but_at_most_60s_while_valid():
    rig = zero_touch(op(life=DAY), *[(202, {}, b"")] * 12, backoff_min_s=5, backoff_max_s=3600,
                     rnd=0.0)
    rig.r.step()
    waits = [rig.r.due_in()]
    for _ in range(12):
        rig.run_until_due()
        waits.append(rig.r.due_in())
    assert all(w >= 5 for w in waits) and waits[0] <= 6
    assert all(b >= a for a, b in zip(waits, waits[1:]))
    # 57 s + 1 (never early by a fraction): the next call within 60 s of the last even when
    # an answer takes 2 s to arrive
    assert max(waits) == 58 and waits[-1] == 58
    assert rig.r.state == PROVISIONING and rig.r.token is None


def test_a_retry_after_on_a_poll_keeps_it_within_60s_while_valid():
    # the contract's "at most 60 s while the operation is valid" holds over a 202's (or a
    # 503's) Retry-After; once it has expired, the Retry-After is a floor again
    for answer in ((202, {"retry-after": "120"}, b""), problem(503, {"retry-after": "300"})):
        rig = zero_touch(op(life=DAY), answer, rnd=0.9)
        rig.r.step()
        rig.run_until_due()
        assert rig.r.state == PROVISIONING and rig.r.due_in() <= 58, answer
    rig = zero_touch(op(life=30), problem(503, {"retry-after": "300"}), rnd=0.0)
    rig.r.step()
    rig.clock.advance(31)  # expired: a new init, which the server asks to wait for
    rig.r.step()
    assert rig.r.due_in() == 301


def test_an_operation_expired_when_init_answers_is_a_failed_init():
    # not stored, not shown, and the next init after a growing backoff: not one every
    # backoff_min_s, each with a flash write and a new code
    expired = operation("op-1", "CODE-0001", iso(T0 - 1))
    rig = zero_touch(*[expired] * 4, rnd=0.0)
    waits = []
    for _ in range(4):
        rig.run_until_due()
        waits.append(rig.r.due_in())
    assert rig.stored() is None and not rig.fs.files and rig.codes_logged() == []
    assert rig.r.status()["verification_code"] is None and rig.r.state == PROVISIONING
    assert waits == sorted(waits) and waits[-1] > 4 * waits[0], waits


def test_status_says_why_a_device_provisions_and_why_it_stopped():
    rig = zero_touch(op(1), problem(401))
    assert rig.r.status()["reason"] == "empty"  # no token yet, and none stored
    rig.run_until_due()
    assert rig.r.status()["reason"] == "empty"
    rig.run_until_due()
    assert rig.r.state == PROVISION and rig.r.status()["reason"] == "unauthorized"
    rig = zero_touch(op(1), problem(410, type=CANCELLED))
    rig.run_until_due()
    rig.run_until_due()
    assert rig.r.state == PROVISION and rig.r.status()["reason"] == "cancelled"
    rig = Rig(problem(410), op(1), reprovision=True, provisioning_token="prov-secret")
    rig.r.step()
    assert rig.r.state == PROVISIONING and rig.r.status()["reason"] == "gone"
    rig.run_until_due()
    assert rig.r.status()["reason"] == "gone"


def test_the_reason_of_a_resumed_operation_is_the_one_it_began_with():
    # an empty store stays "empty" across a restart, not "gone": no 410 ever came
    rig = zero_touch(op(1))
    rig.run_until_due()
    assert rig.r.status()["reason"] == "empty" and rig.stored().due == OP
    again = rig.restart()
    assert again.r.state == PROVISIONING and again.r.status()["verification_code"] == "CODE-0001"
    assert again.r.status()["reason"] == "empty"
    rig = Rig(problem(410), op(1), reprovision=True, provisioning_token="prov-secret")
    rig.r.step()
    rig.run_until_due()
    assert rig.stored().due == OP and rig.restart().r.status()["reason"] == "gone"
    # nor does a 423's hold (on init, on complete) or an operator's cancel change it: the
    # restart's reason is the one the device began with
    for first in ((problem(423),), (op(1, life=DAY), problem(423)),
                  (op(1, life=DAY), problem(410, type=CANCELLED))):
        rig = zero_touch(*first)
        for _ in first:
            rig.run_until_due()
        assert rig.r.status()["reason"] == ("cancelled" if len(first) > 1 and
                                            first[1][0] == 410 else "empty")
        again = rig.restart()
        assert again.r.state == PROVISIONING and again.r.status()["reason"] == "empty", first
    rig = Rig(problem(410), problem(423), reprovision=True, provisioning_token="prov-secret")
    rig.r.step()
    rig.r.step()
    assert rig.r.status()["reason"] == rig.restart().r.status()["reason"] == "gone"


def test_expired_operation_reinits_then_and_not_before():
    seen = []  # (time, endpoint) of every call

    def server(method, url, body, headers):
        seen.append((rig.clock.now(), url.rsplit("/", 1)[1]))
        return op(len(seen), life=100, now=rig.clock.now()) if method == "POST" else (202, {}, b"")

    rig = zero_touch(*[server] * 40, rnd=0.0)
    while len(seen) < 40:
        rig.run_until_due()
    inits = [t for t, what in seen if what == "init"]
    assert len(inits) >= 3
    for first, second in zip(inits, inits[1:]):
        # once expired, and not before: the second after it, not at the next poll, up to
        # a minute later, with the dead code still on show
        assert first + 100 < second <= first + 102
        polls = [t for t, what in seen if what == "complete" and first < t < second]
        assert polls and all(t < first + 100 for t in polls)
    assert [x for x in rig.lines if "expired" in x]
    assert len(rig.codes_logged()) == len(inits)


def test_plain_410_on_complete_reinits():
    rig = zero_touch(op(1), problem(410), op(2), issued(tok(1), iso(T0 + DAY), 200))
    for _ in range(4):
        rig.run_until_due()
    assert [c[1] for c in rig.calls()] == ["init", "complete", "init", "complete"]
    assert rig.calls()[3][2] == {"provisioningOperationId": "op-2"}
    assert len(rig.codes_logged()) == 2 and rig.r.token == tok(1)


def test_an_operation_a_410_or_its_expiry_ended_is_not_resumed_by_a_restart():
    # the record kept the operation: a restart showed its dead code again and polled it
    for ended in ("410", "expired"):
        rig = zero_touch(op(1, life=60), problem(410), (500, {}, b""))
        rig.r.step()  # init: the operation, stored
        if ended == "410":
            rig.run_until_due()  # complete: 410
        else:
            rig.clock.advance(61)
        again = rig.restart(op(2))
        assert again.r.status()["verification_code"] is None, ended
        assert again.r.state == PROVISIONING and again.r.status()["reason"] == "empty"
        again.run_until_due()
        assert [c[1] for c in again.calls()] == ["init"], ended
        assert again.r.status()["verification_code"] == "CODE-0002"


def test_cancelled_operation_stops_until_restart_which_inits_anew():
    rig = zero_touch(op(1), problem(410, type=CANCELLED))
    rig.r.step()
    rig.run_until_due()
    assert rig.r.state == PROVISION and rig.r.due_in() is None and rig.r.step() is None
    assert len(rig.http.calls) == 2
    assert [x for x in rig.lines if "cancelled" in x and "restart" in x]
    assert rig.stored().due == DEAD  # a restart does not resume the cancelled operation
    again = rig.restart(op(2))
    assert again.r.state == PROVISIONING
    again.r.step()
    assert again.calls()[0][:2] == ("POST", "init")
    odd = zero_touch(problem(410, type=CANCELLED))  # to init: stops, and writes nothing
    odd.r.step()
    assert odd.r.state == PROVISION and odd.stored() is None and not odd.fs.files
    # the problem's type decides, not the word quoted anywhere (here in its detail); a
    # document cut at the buffer's end still has its type, which comes first
    quoted = b'{"type": "about:blank", "detail": "%s"}' % CANCELLED.encode()
    long_doc = (b'{"type": "%s", "detail": "' % CANCELLED.encode() + b"d" * 3000)[:2048]
    for body, stops in ((quoted, False), (long_doc, True)):
        rig = zero_touch(op(1), (410, {}, body), op(2))
        rig.r.step()
        rig.run_until_due()
        assert (rig.r.state == PROVISION) is stops, body[:40]


def test_401_stops_with_a_message_that_says_what_to_do():
    for answers in ((problem(401),), (op(1), problem(401))):
        rig = zero_touch(*answers)
        for _ in answers:
            rig.run_until_due()
        assert rig.r.state == PROVISION and rig.r.due_in() is None and rig.r.step() is None
        assert len(rig.http.calls) == len(answers)
        assert [x for x in rig.lines if "provisioning_token" in x and "config.json" in x]
        assert rig.restart().r.state == PROVISIONING  # tries again after a restart


def test_423_waits_backoff_max_and_other_failures_back_off():
    rig = zero_touch(problem(423), backoff_max_s=7200)
    rig.r.step()
    assert rig.r.state == PROVISIONING and rig.r.due_in() >= 7200
    for failure in (problem(503), OSError("timed out"), (201, {}, b"<html>"),
                    operation("op-1", "BAD CODE", iso(T0 + 600)),
                    operation("op-1", "CODE", None), problem(412, {"retry-after": "900"})):
        rig = zero_touch(failure, rnd=0.0)
        rig.r.step()
        assert rig.r.state == PROVISIONING and rig.r.due_in() >= 6
        assert rig.stored() is None and rig.r.status()["verification_code"] is None
    assert rig.r.due_in() == 901  # Retry-After is a floor
    rig = zero_touch(op(1), problem(423), backoff_max_s=7200)
    rig.r.step()
    rig.run_until_due()
    assert rig.r.due_in() >= 7200  # even while the operation is valid


def test_a_423_hold_is_kept_across_a_restart():
    # on init (an empty store), and on complete (the operation is resumed, its code the
    # same): a restart during the hold calls no sooner than backoff_max_s after the 423
    for with_op in (False, True):
        first = (op(1, life=DAY), problem(423)) if with_op else (problem(423),)
        rig = zero_touch(*first, backoff_max_s=7200)
        rig.r.step()
        if with_op:
            rig.run_until_due()
        held = rig.clock.now()  # the 423's time
        assert rig.r.due_in() >= 7200
        rig.clock.advance(3600)
        again = rig.restart(op(2))  # mid-hold
        assert again.r.state == PROVISIONING and again.r.token is None
        assert again.r.due_in() >= held + 7200 - again.clock.now(), with_op
        again.r.step()
        assert again.http.calls == []  # nothing called before the hold's end
        again.run_until_due()
        assert again.clock.now() >= held + 7200 and len(again.http.calls) == 1
        call = again.calls()[0][1]
        assert call == ("complete" if with_op else "init"), call
        if with_op:
            assert again.r.status()["verification_code"] == "CODE-0001"  # resumed
        later = again.restart()  # the hold is over: no wait for it again
        assert later.r.due_in() <= 5


def test_a_423_hold_longer_than_backoff_max_keeps_its_length_across_a_restart():
    # a Retry-After past backoff_max_s sets the hold (plus its jitter): a restart read
    # backoff_max_s from config.json instead, and called at its end (21 s, not 161); a
    # config with another backoff_max_s since moved it too
    for with_op in (False, True):
        hold = problem(423, headers={"retry-after": "120"})
        first = (op(1, life=DAY), hold) if with_op else (hold,)
        rig = zero_touch(*first, backoff_max_s=20, rnd=0.5)
        if with_op:
            rig.r.step()
        # the hold's jitter drawn low, the next draw (a backoff's, which also took the
        # Retry-After as a floor, with its own jitter) high: the live wait was the longer
        rig.r._rand = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0].pop  # from the end: 0.0, 1.0, ...
        rig.run_until_due() if with_op else rig.r.step()
        held = rig.clock.now()
        live = rig.r.due_in()
        assert live >= 120, live
        rig.clock.advance(10)
        for bmax in (20, 5):  # the same end as live (the record once kept less of it)
            again = Rig(op(2), fs=rig.fs, clock=rig.clock, rnd=rig.rnd,
                        **dict(rig.raw(), backoff_max_s=bmax))
            assert again.r.state == PROVISIONING, with_op
            assert again.clock.now() + again.r.due_in() == held + live, (with_op, bmax)
        # and a record of the earlier form ("disabled-empty") still holds backoff_max_s
        rec = rig.stored()
        rec.why = rec.why[:8] + rec.why[rec.why.index("-"):]
        from regtoken.store import Store

        Store(rig.fs).commit(rec)
        again = rig.restart()
        assert again.clock.now() + again.r.due_in() == held + 20 + 1, with_op


def test_an_operation_begun_on_an_empty_store_is_no_410_with_reprovision_off():
    # its record has no token (due below 0, as a refused one): the boot said
    # "410: provision this device", reason gone, though no 410 ever came
    rig = zero_touch(op(1))
    rig.r.step()
    cfg = dict(rig.raw(), reprovision=False)
    again = Rig(fs=rig.fs, clock=rig.clock, **cfg)
    st = again.r.status()
    assert (st["state"], st["reason"]) == (PROVISION, "empty"), st
    assert "410" not in st["last_error"] and again.http.calls == []


def test_a_423_after_a_410_keeps_the_refused_token_out_of_use_across_a_restart():
    rig = Rig(problem(410), problem(423), reprovision=True, provisioning_token="prov-secret",
              backoff_max_s=7200)
    rig.r.step()
    rig.r.step()
    held = rig.stored()
    assert held.due == DEAD and held.seed == fingerprint(tok(0))  # the lineage is kept
    again = rig.restart()
    assert again.r.token is None and again.r.state == PROVISIONING
    assert again.r.due_in() >= 7200 - 1


def test_410_on_refresh_reprovisions_and_keeps_the_lineage_seed():
    rig = Rig(problem(410), op(1), issued(tok(1), iso(T0 + DAY), 200), reprovision=True,
              provisioning_token="prov-secret")
    rig.r.step()
    assert rig.r.state == PROVISIONING and rig.stored().due == DEAD
    assert rig.r.due_in() == 0
    rig.r.step()
    assert rig.stored().due == OP and rig.stored().seed == fingerprint(tok(0))
    rig.run_until_due()
    assert rig.r.state == HEALTHY and rig.stored().token == tok(1)
    assert rig.stored().seed == fingerprint(tok(0))
    assert [c[1] for c in rig.calls()] == ["refresh", "init", "complete"]
    again = rig.restart()  # the old initial_token in config.json is not imported again
    assert again.r.token == tok(1) and again.r.state == HEALTHY
    assert not [x for x in again.lines if "import" in x]


def test_a_provisioned_tokens_expiry_is_taken_onto_the_devices_clock():
    # as a refresh's (test_refresher.py): two hours behind the server, a token of an hour
    # is refreshed half an hour on, by the server's clock, not when it has long expired
    from fakes.clock import VirtualClock

    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    rig = zero_touch(op(1, life=DAY), issued(tok(1), iso(T0 + 3600), 200, headers=date),
                     clock=VirtualClock(t=T0 - 7200), rnd=0.0)
    rig.r.step()
    rig.run_until_due()
    assert rig.r.token == tok(1) and rig.r.state == HEALTHY
    assert rig.r.expires_in() == 3600 and rig.r.due_in() == 1800, rig.r.due_in()


def test_a_provisioned_token_dead_by_the_servers_date_and_ours_is_completed_again():
    # as a refresh's (test_refresher.py): committed, it would be presented and refused for
    # good (on an unset clock, a board at its clock floor days behind: refreshed at once,
    # refused, and a new init needed a new approval). A failed poll instead: complete
    # again gives a new token. An unset clock judges by the Date it would take
    from fakes.clock import VirtualClock

    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    for clock in (VirtualClock(t=T0), VirtualClock(t=T0 - 3 * DAY, trusted=False)):
        rig = zero_touch(op(1, life=10 * DAY, now=clock.t),
                         issued(tok(1), iso(T0 - 60), 200, headers=date),
                         issued(tok(2), iso(T0 + DAY), 200, headers=date), clock=clock)
        rig.r.step()
        rig.run_until_due()
        assert rig.r.state == PROVISIONING and rig.r.token is None and rig.tokens == []
        assert rig.stored().due == OP  # the operation, not the dead token
        rig.run_until_due()
        assert [c[:2] for c in rig.calls()] == [("POST", "init")] + [("PUT", "complete")] * 2
        assert rig.r.state == HEALTHY and rig.r.token == tok(2) and rig.tokens == [tok(2)]
        assert rig.stored().token == tok(2)


def test_a_dead_operation_s_code_is_not_on_show():
    # once it expired, or a plain 410 ended it, status() showed its code (and an expiry
    # still ahead, for the 410) for as long as the new init failed: an operator would
    # approve a code the server has let go
    def server(method, url, body, headers):
        return op(1, life=30, now=T0) if len(rig.http.calls) == 1 else (202, {}, b"")

    rig = zero_touch(*[server] * 8, rnd=0.0)
    rig.http.answers += [(500, {}, b"")] * 2
    rig.r.step()
    assert rig.r.status()["verification_code"] == "CODE-0001"
    while rig.clock.now() <= T0 + 30:
        rig.run_until_due()  # polls until it expires, then an init that fails
    st = rig.r.status()
    assert st["state"] == PROVISIONING and [x for x in rig.lines if "expired" in x]
    assert st["verification_code"] is None and st["operation_expires"] is None, st
    rig = zero_touch(op(1), problem(410), (503, {}, b""))
    rig.r.step()
    rig.run_until_due()  # the 410: a new init next
    assert rig.r.status()["verification_code"] is None
    rig.run_until_due()  # which fails
    st = rig.r.status()
    assert st["verification_code"] is None and st["operation_expires"] is None, st


def test_an_operation_s_expiry_is_taken_onto_the_devices_clock():
    # a clock an hour ahead of the server's (an unset RTC run fast, or a wrong NTP): the
    # operation of 10 min was expired on arrival, by our clock, at every init, for ever
    from fakes.clock import VirtualClock

    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    for trusted in (False, True):
        init = op(1, life=600)
        rig = zero_touch((init[0], date, init[2]), (202, date, b""),
                         issued(tok(1), iso(T0 + DAY), 200, headers=date),
                         clock=VirtualClock(t=T0 + 3600, trusted=trusted), rnd=0.0)
        rig.r.step()
        st = rig.r.status()
        assert st["verification_code"] == "CODE-0001", (trusted, rig.lines[-1])
        assert st["operation_expires"] == T0 + 3600 + 600  # on our clock
        rig.run_until_due()
        rig.run_until_due()
        assert rig.r.token == tok(1) and rig.r.state == HEALTHY, trusted
        assert [c[1] for c in rig.calls()] == ["init", "complete", "complete"]


def test_a_provisioned_token_that_never_expires_is_not_rotated_without_a_clock():
    # without a trusted clock a provisioned token is refreshed at once (which sets the
    # clock), but one that never expires has no schedule to place: no rotation
    from fakes.clock import VirtualClock

    rig = zero_touch(op(1), issued(tok(1), None, 200), clock=VirtualClock(trusted=False))
    rig.r.step()
    rig.run_until_due()
    assert rig.r.token == tok(1) and rig.r.state == HEALTHY
    assert rig.r.due_in() is None and rig.r.expires is None
    assert len(rig.http.calls) == 2


def test_power_cut_after_completes_200_before_the_commit_completes_again():
    rig = zero_touch(op(1), issued(tok(1), iso(T0 + DAY), 200))
    rig.r.step()
    rig.clock.advance(rig.r.due_in())
    rig.fs.cut_after = 0  # the power goes during the token's commit: it never lands
    raises(PowerLost, rig.r.step)
    rig.fs.cut_after = None
    again = rig.restart(issued(tok(2), iso(T0 + DAY), 200))
    assert again.r.state == PROVISIONING and again.r.token is None
    assert again.r.status()["verification_code"] == "CODE-0001"  # resumed, not a new init
    assert again.r.due_in() >= 5
    assert not again.codes_logged()  # no new code: the approval stands
    again.run_until_due()
    assert again.calls() == [("PUT", "complete", {"provisioningOperationId": "op-1"})]
    assert again.r.token == tok(2) == again.stored().token and again.r.state == HEALTHY


def test_power_cut_after_the_commit_keeps_the_token():
    rig = zero_touch(op(1), issued(tok(1), iso(T0 + DAY), 200))
    rig.r.step()
    rig.run_until_due()
    again = rig.restart()
    assert again.r.state == HEALTHY and again.r.token == tok(1) and again.http.calls == []


class Platform:
    """A scripted platform for any order of calls: init opens an operation (approved at
    once), complete gives a new token and revokes the earlier ones, refresh rotates a valid
    token and answers 410 to any other. `bad` counts revoked tokens presented."""

    def __init__(self):
        self.n = 10
        self.valid = set()
        self.revoked = set()
        self.bad = 0

    def __call__(self, method, url, body, headers):
        self.n += 1
        what = url.rsplit("/", 1)[1]
        if what == "init":
            return op(self.n)
        new = tok(self.n)
        if what == "complete":
            self.revoked |= self.valid
            self.valid = {new}
            return issued(new, iso(T0 + DAY), 200)
        presented = json.loads(body)["registrationToken"]
        self.bad += presented in self.revoked
        if presented not in self.valid:
            return problem(410)
        self.valid.add(new)  # the parent stays valid through its grace period
        return issued(new, iso(T0 + DAY))


def test_power_cut_at_every_write_never_loses_or_presents_a_revoked_token():
    # tok(0) is imported and refused (410); then an operation, the token, its first refresh
    cut = 0
    while True:
        platform = Platform()
        rig = Rig(*[platform] * 20, reprovision=True, provisioning_token="prov-secret")
        rig.fs.cut_after = cut
        lost = False
        try:
            while rig.r.status()["counts"]["rotations"] < 2:
                rig.run_until_due()
        except PowerLost:
            lost = True
        rig.fs.cut_after = None
        again = rig.restart(*[platform] * 20)
        while again.r.status()["counts"]["rotations"] < 2 - (not lost) * 2 or \
                again.r.state != HEALTHY:
            again.run_until_due()
        assert again.r.token in platform.valid and again.stored().token == again.r.token, cut
        assert platform.bad == 0, cut
        if not lost:
            break
        cut += 1
    assert cut >= 4  # the 410 mark, the operation, the token, the refreshed token


def test_deep_sleep_keeps_the_poll_wait():
    rig = zero_touch(op(1), (202, {}, b""), (202, {}, b""), rnd=0.0)
    rig.r.step()
    rig.run_until_due()
    saved, next_at, wait = rig.r.suspend(), rig.r._next, rig.r._wait
    woken = rig.restart((202, {}, b""))
    woken.r.resume(saved)
    assert woken.r.state == PROVISIONING and woken.r._next == next_at and woken.r._wait == wait
    woken.run_until_due()
    assert woken.r._wait > wait


def test_full_flash_keeps_the_provisioned_token_in_ram_and_retries():
    rig = zero_touch(op(1), issued(tok(1), iso(T0 + DAY), 200))
    rig.r.step()
    rig.fs.full = True
    rig.run_until_due()
    assert rig.r.status()["pending_commit"] and rig.r.token is None
    rig.fs.full = False
    rig.run_until_due()
    assert rig.r.token == tok(1) == rig.stored().token and len(rig.http.calls) == 2


def test_reprovision_false_keeps_todays_behaviour():
    for cfg in ({"reprovision": False}, {"provisioning_token": None}):
        rig = zero_touch(**cfg)
        assert rig.r.state == PROVISION and rig.r.step() is None and rig.http.calls == []
    rig = Rig(problem(410), provisioning_token="prov-secret")
    rig.r.step()
    assert rig.r.state == PROVISION and rig.r.step() is None and len(rig.http.calls) == 1


def test_no_token_or_operation_id_is_logged():
    rig = zero_touch(operation("op-" + tok(7)[:40], "CODE-1", iso(T0 + 600)), (202, {}, b""),
                     issued(tok(1), iso(T0 + 100), 200), issued(tok(2), iso(T0 + DAY)))
    for _ in range(4):
        rig.run_until_due()
    text = "\n".join(rig.lines) + str(rig.r.status())
    for secret in (tok(1), tok(2), tok(7)[:40], "prov-secret"):
        assert secret[:12] not in text
    assert "verification code: CODE-1" in text


def test_config_keys_are_validated():
    assert validate({"api_url": "http://x"})["reprovision"] is False
    assert validate({"api_url": "http://x"})["device_id"] is None
    for good in ("abcd", "A-b_c.9", "x" * 90):
        assert validate({"api_url": "http://x", "device_id": good})["device_id"] == good
    for bad in ("abc", "x" * 91, "bad id", "caf\u00e9-1", "a/b:c", 1234, ""):
        e = raises(ConfigError, validate, {"api_url": "http://x", "device_id": bad})
        assert "'device_id'" in str(e), e
    for bad in ("yes", "true", None):
        e = raises(ConfigError, validate, {"api_url": "http://x", "reprovision": bad})
        assert "'reprovision'" in str(e)


def test_selfprov_is_imported_only_when_provisioning_is_needed():
    import sys

    sys.modules.pop("regtoken.selfprov", None)
    rig = Rig(issued(tok(1), iso(T0 + DAY)), reprovision=True, provisioning_token="prov-secret")
    rig.r.step()
    assert rig.r.token == tok(1) and "regtoken.selfprov" not in sys.modules
    zero_touch()
    assert "regtoken.selfprov" in sys.modules
