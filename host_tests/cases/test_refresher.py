import json

from fakes.clock import T0, VirtualClock
from fakes.memfs import MemFS
from fakes.net import FakeHTTP, NoHeapJSON, issued, problem
from regtoken import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, Refresher, validate
from regtoken.policy import rfc3339
from regtoken.store import DEAD, Record, Store, fingerprint

from cases.util import restore_module, swap_module, tok

DAY = 86400


def iso(t):
    import time

    y, mo, d, h, mi, s = time.gmtime(t - _epoch())[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02d.000Z" % (y, mo, d, h, mi, s)


def _epoch():
    import time

    from regtoken.policy import days

    return days(time.gmtime(0)[0], 1, 1) * 86400


class Rig:
    """A refresher wired to fakes, with everything it logged."""

    def __init__(self, *answers, fs=None, clock=None, rnd=0.5, **cfg):
        c = {"api_url": "http://device-api.test", "initial_token": tok(0)}
        c.update(cfg)
        self.cfg = validate(c)
        self.http = FakeHTTP(*answers)
        self.fs = fs or MemFS()
        self.clock = clock or VirtualClock()
        self.lines = []
        self.rnd = rnd
        self.r = Refresher(self.cfg, transport=self.http, store=Store(self.fs),
                           clock=self.clock, rand=lambda: self.rnd, log=self.lines.append)

    def restart(self, *answers):
        return Rig(*answers, fs=self.fs, clock=self.clock, rnd=self.rnd, **self.raw())

    def raw(self):
        out = {}
        for k in ("api_url", "initial_token", "provisioning_token", "backoff_min_s",
                  "backoff_max_s"):
            out[k] = self.cfg[k]
        return out

    def stored(self):
        return Store(self.fs).load()

    def run_until_due(self):
        """Advance the virtual clock to the next attempt and make it."""
        wait = self.r.due_in()
        assert wait is not None
        self.clock.advance(wait)
        return self.r.step()


def test_first_boot_imports_and_rotates_at_once():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    assert rig.stored().token == tok(0)  # committed before first use
    assert rig.stored().seed == fingerprint(tok(0))
    assert rig.r.due_in() == 0  # unknown expiration: no boot delay
    rig.r.step()
    assert rig.http.presented() == tok(0)
    assert rig.stored().token == tok(1) and rig.r.token == tok(1)
    assert rig.r.state == HEALTHY and rig.r.expires == T0 + DAY


def test_request_is_the_documented_call():
    rig = Rig(issued(tok(1)), provisioning_token="prov-secret")
    rig.r.step()
    method, url, body, headers = rig.http.calls[0]
    assert method == "PUT"
    assert url == "http://device-api.test/devices/registration-tokens/refresh"
    assert json.loads(body) == {"registrationToken": tok(0)}
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "DeviceToken prov-secret"


def test_no_authorization_header_without_provisioning_token():
    rig = Rig(issued(tok(1)))
    rig.r.step()
    assert "Authorization" not in rig.http.calls[0][3]


def test_known_initial_expiration_waits_for_its_schedule():
    rig = Rig(initial_expiration=iso(T0 + DAY))
    wait = rig.r.due_in()
    assert DAY // 2 <= wait <= DAY - 600
    assert rig.http.calls == []


def test_scheduled_rotations_present_the_current_token_each_time():
    life = 3600
    answers = [issued(tok(n), iso(T0 + n * 2000 + life)) for n in range(1, 6)]
    rig = Rig(*answers)
    rig.r.step()
    for n in range(2, 6):
        rig.clock.t = T0 + (n - 1) * 2000
        issued_at = rig.clock.t
        wait = rig.r.due_in()
        # between half of the lifetime and the latest safe point
        exp = rig.r.expires
        assert exp - issued_at > 0 and wait is not None
        rig.run_until_due()
        assert rig.http.presented() == tok(n - 1)
        assert rig.r.token == tok(n) == rig.stored().token
    assert rig.r.status()["counts"]["rotations"] == 5


def test_refresh_point_between_half_life_and_latest():
    for rnd in (0.0, 0.3, 0.99):
        rig = Rig(issued(tok(1), iso(T0 + DAY)), rnd=rnd)
        rig.r.step()
        wait = rig.r.due_in()
        assert DAY // 2 <= wait <= DAY - 600
        assert rig.lines[-1].endswith(", next refresh in %d s" % wait), rig.lines[-1]


def test_null_expiration_is_never_refreshed_on_a_schedule():
    rig = Rig(issued(tok(1), None))
    assert rig.r.step() is None
    assert rig.r.due_in() is None and rig.r.expires is None
    assert rig.lines[-1].endswith("expires never, next refresh never"), rig.lines[-1]
    rig2 = rig.restart()
    assert rig2.r.due_in() is None and rig2.r.token == tok(1)


def test_restart_continues_with_the_stored_token_and_schedule():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    due = rig.r._next
    again = rig.restart(issued(tok(2), iso(T0 + 2 * DAY)))
    assert again.r.token == tok(1) and again.r._next == due
    assert again.http.calls == []  # the initial token is not imported again
    again.run_until_due()
    assert again.http.presented() == tok(1)


def test_boot_past_the_refresh_point_waits_a_bounded_random_delay():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    rig.clock.t = T0 + DAY - 1000  # off through its refresh point
    for rnd in (0.0, 0.5, 0.999):
        rig.rnd = rnd
        wait = rig.restart().r.due_in()
        assert 0 <= wait <= min(1000 - 60, 300)  # spread 5 min, ending before expiry
    rig.rnd = 0.999
    assert rig.restart().r.due_in() > 0


def test_200_after_a_lost_answer_is_logged_as_recovery():
    rig = Rig(OSError("connection reset"), issued(tok(2), iso(T0 + DAY), status=200))
    rig.r.step()
    assert rig.r.state == BACKOFF and rig.stored().token == tok(0)
    rig.run_until_due()
    assert rig.http.presented() == tok(0)
    assert rig.r.token == tok(2) and rig.r.status()["counts"]["recoveries"] == 1
    assert [x for x in rig.lines if x.startswith("recovered (200): committed")]


def test_410_stops_refreshing_and_survives_restart():
    rig = Rig(problem(410))
    rig.r.step()
    assert rig.r.state == PROVISION and rig.r.due_in() is None and rig.r.token is None
    assert rig.stored().due == DEAD
    assert rig.r.step() is None and len(rig.http.calls) == 1
    again = rig.restart()  # same config: the same initial token is not imported again
    assert again.r.state == PROVISION and again.http.calls == []


def test_after_410_a_new_initial_token_is_imported():
    rig = Rig(problem(410))
    rig.r.step()
    raw = rig.raw()
    raw["initial_token"] = tok(9)
    again = Rig(issued(tok(10)), fs=rig.fs, clock=rig.clock, **raw)
    assert again.r.state == HEALTHY and again.r.token == tok(9)
    again.r.step()
    assert again.stored().token == tok(10)


def test_a_new_initial_token_is_imported_over_an_expired_one_but_not_its_own_again():
    # device-contract.md: initial_token is imported "when the store holds no valid token"
    fs = MemFS()
    Store(fs).commit(Record(tok(1), T0 - 3600, T0 - 7200, fingerprint(tok(0))))  # expired
    same = Rig(fs=fs)  # the lineage's own initial token: long revoked, not imported again
    assert same.stored().token == tok(1) and same.r.token == tok(1)
    cold = Rig(fs=fs, clock=VirtualClock(trusted=False), initial_token=tok(9))
    assert cold.stored().token == tok(1)  # a clock it cannot trust decides nothing
    new = Rig(issued(tok(10)), fs=fs, initial_token=tok(9))
    assert new.stored().token == tok(9) and new.r.token == tok(9)
    assert new.stored().seed == fingerprint(tok(9))
    assert new.r.state == HEALTHY and new.r.due_in() == 0  # unknown expiration: at once
    new.r.step()
    assert new.http.presented() == tok(9) and new.stored().token == tok(10)
    valid = Rig(fs=fs, initial_token=tok(11))  # over a valid token: never
    assert valid.stored().token == tok(10)


def test_tls_verify_false_is_warned_at_every_boot_with_an_http_url_too():
    for url in ("http://device-api.test", "https://device-api.test"):
        lines = []
        for _ in range(2):
            cfg = validate({"api_url": url, "initial_token": tok(0), "tls_verify": False})
            Refresher(cfg, transport=FakeHTTP(), store=Store(MemFS()), clock=VirtualClock(),
                      log=lines.append)
        assert sum("WARNING: tls_verify is false" in x for x in lines) == 2, url


def test_reprovision_without_a_provisioning_token_is_warned_once_at_boot():
    # the contract provisions only with both; a config that sets one is told it does nothing
    for reprovision, token, warned in ((True, None, 1), (True, "p", 0), (False, None, 0)):
        rig = Rig(problem(410), reprovision=reprovision, provisioning_token=token)
        rig.r.step()  # a 410 boots again: no second warning
        n = sum("WARNING: reprovision" in x and "provisioning_token" in x for x in rig.lines)
        assert n == warned, (reprovision, token)


def test_a_short_token_is_never_logged_whole():
    from regtoken import redact

    assert redact(tok(1)) == tok(1)[:6] + "...(248)"
    for t in ("abc", "abcdefghijkl"):
        assert redact(t) == "...(%d)" % len(t)
    assert redact("abcdefghijklm") == "abcdef...(13)"
    assert redact(None) == "<none>"


def test_a_new_initial_token_already_in_the_config_is_imported_at_the_410():
    # the operator put a new initial_token in config.json and restarted, but the stored
    # token (revoked meanwhile) still looked valid: its 410 leaves the store with no valid
    # token, and the new one is imported then, as a boot would, not at the next restart
    fs = MemFS()
    Store(fs).commit(Record(tok(1), T0 + DAY, T0 - 60, fingerprint(tok(0))))
    rig = Rig(problem(410), issued(tok(10)), fs=fs, initial_token=tok(9))
    assert rig.r.token == tok(1)  # valid as far as the device knows: kept
    rig.run_until_due()
    assert rig.http.presented() == tok(1)
    assert rig.r.state == HEALTHY and rig.r.token == tok(9) == rig.stored().token
    assert rig.stored().seed == fingerprint(tok(9)) and rig.r.due_in() == 0
    rig.r.step()
    assert rig.http.presented() == tok(9) and rig.r.token == tok(10) == rig.stored().token
    # the same lineage's initial token: the 410 ends it (test_410_...), as before
    same = Rig(problem(410), fs=MemFS(), tls_verify=False)
    same.r.step()
    assert same.r.state == PROVISION and same.stored().due == DEAD
    assert sum("WARNING" in x for x in same.lines) == 1  # at the boot, not again at the 410


def test_empty_store_without_initial_token_needs_provisioning():
    rig = Rig(initial_token=None)
    assert rig.r.state == PROVISION and rig.r.step() is None and rig.http.calls == []


def test_403_waits_backoff_max_even_across_restart():
    rig = Rig(problem(403), issued(tok(1)), backoff_max_s=7200, rnd=0.0)
    rig.r.step()
    # whole seconds, and now() drops the current second's fraction: one more, never early
    assert rig.r.state == FORBIDDEN and rig.r.due_in() == 7201
    assert rig.r.force() is False
    again = rig.restart()
    assert again.r.due_in() == 7201
    rig.clock.advance(7200)
    assert rig.r.step() == 1 and len(rig.http.calls) == 1


def test_backoff_grows_and_caps_and_honours_retry_after():
    rig = Rig(*[problem(503)] * 12, backoff_min_s=5, backoff_max_s=600, rnd=0.0)
    rig.r.step()
    waits = [rig.r._wait]
    for _ in range(11):
        assert rig.r.due_in() == rig.r._wait + 1  # never early by a second's fraction
        rig.run_until_due()
        waits.append(rig.r._wait)
    assert waits[0] == 5
    for a, b in zip(waits, waits[1:]):
        assert b >= min(2 * a, 600)
    assert waits[-1] == 600 and max(waits) == 600
    assert rig.r.state == BACKOFF and rig.stored().token == tok(0)
    throttled = Rig(problem(412, {"retry-after": "900"}), backoff_min_s=5)
    throttled.r.step()
    assert throttled.r._wait == 900 + 900 // 4  # a floor plus jitter (rnd 0.5: a quarter)
    assert throttled.r.due_in() == throttled.r._wait + 1


def test_every_transient_failure_backs_off_and_keeps_the_token():
    failures = [OSError("timed out"), ValueError("tls"), problem(500), problem(429),
                problem(423), problem(302), (201, {}, b"not json"),
                (200, {}, b'{"registrationToken": ""}'), MemoryError(),
                None]  # a transport's nonsense: a failed attempt, not "no token"
    rig = Rig(*failures, rnd=0.0)
    rig.r.step()
    for _ in failures[1:]:
        assert rig.r.state == BACKOFF and rig.r.due_in() >= 5
        rig.run_until_due()
    assert rig.stored().token == tok(0) and rig.r.token == tok(0)
    assert rig.r.status()["counts"]["failures"] == len(failures)


def test_success_resets_backoff():
    rig = Rig(problem(503), problem(503), issued(tok(1)), problem(503), rnd=0.0)
    rig.r.step()
    rig.run_until_due()
    rig.run_until_due()
    assert rig.r.state == HEALTHY
    rig.run_until_due()
    assert rig.r._wait == 5 and rig.r.due_in() == 6


def test_full_flash_keeps_new_token_in_ram_and_retries_the_commit():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.fs.full = True
    rig.r.step()
    assert rig.r.status()["pending_commit"] and rig.r.state == BACKOFF
    assert rig.stored().token == tok(0) and rig.r.token == tok(0)
    rig.run_until_due()  # still full: no network, just the commit again
    assert len(rig.http.calls) == 1 and rig.r.status()["pending_commit"]
    rig.fs.full = False
    rig.run_until_due()
    assert rig.stored().token == tok(1) and rig.r.token == tok(1)
    assert rig.r.state == HEALTHY and len(rig.http.calls) == 1


def test_a_token_the_flash_never_takes_is_refreshed_from_ram_when_due():
    # the flash refuses every commit (full, or a store_dir that is not there): the new
    # token waits in RAM; when its own refresh is due it is presented from there, not left
    # to expire unseen (a dead device without any power cut), and once the flash takes a
    # commit again the newest token is the one on it. The plain loop and asyncio alike
    for name, drive in _drivers():
        rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + 3 * DAY)),
                  backoff_max_s=3600)
        rig.fs.full = True
        drive(rig, 1)
        due = rig.r._pending.due
        assert rig.r.token == tok(0) and rig.stored().token == tok(0), name
        assert due > T0 + DAY // 2, (name, due - T0)
        while len(rig.http.calls) == 1:  # commits tried on the backoff, no call
            del rig.lines[:]  # a Pico's heap holds no day of log lines
            st = rig.r.status()
            assert st["pending_commit"] and st["reason"] == "store", (
                name, st["pending_commit"], st["reason"], st["last_error"])
            drive(rig, 1)
            assert rig.clock.now() < T0 + DAY, name  # tok(1) presented before it expires
        assert rig.clock.now() >= due and rig.http.presented() == tok(1), name
        assert rig.r.token == tok(1) and rig.stored().token == tok(0), name
        assert rig.r.status()["pending_commit"], name  # tok(2), which waits in RAM in turn
        rig.fs.full = False
        drive(rig, 1)
        assert rig.stored().token == tok(2) == rig.r.token and rig.r.state == HEALTHY, name
        assert not rig.r.status()["pending_commit"], name
        assert len(rig.http.calls) == 2, (name, len(rig.http.calls))
        # the token in use from RAM is committed once the flash takes it, though the
        # server is down: a power cut then keeps it
        rig = Rig(issued(tok(1), iso(T0 + DAY)), problem(503), problem(503), backoff_max_s=3600)
        rig.fs.full = True
        while len(rig.http.calls) < 2:
            del rig.lines[:]
            drive(rig, 1)
        assert rig.r.token == tok(1) and rig.stored().token == tok(0), name
        rig.fs.full = False
        drive(rig, 1)
        assert len(rig.http.calls) == 3 and rig.http.presented() == tok(1), name
        assert rig.stored().token == tok(1) and not rig.r.status()["pending_commit"], name


def test_a_short_token_the_flash_never_takes_is_presented_at_its_refresh_not_after():
    # full from the first commit: the token in use is the import, of unknown expiry, which
    # bounds no backoff. The commit's retries once ran past the new token's refresh (5, 35,
    # 129 s), and the wait after it came into use was the cap: a 180 s token was presented
    # a minute after it expired, a 410 and a dead device, without any power cut
    for name, drive in _drivers():
        rig = Rig(issued(tok(1), iso(T0 + 180)), issued(tok(2), iso(T0 + 400)),
                  issued(tok(3), iso(T0 + 700)))
        rig.fs.full = True
        seen = []  # (when, presented) of each call
        while len(rig.http.calls) < 3 and rig.clock.now() < T0 + 1000:
            del rig.lines[:]
            drive(rig, 1)
            if len(rig.http.calls) > len(seen):
                seen.append((rig.clock.now(), rig.http.presented()))
        assert [t for _, t in seen] == [tok(0), tok(1), tok(2)], (name, seen)
        assert seen[1][0] < T0 + 180 - 30 and seen[2][0] < T0 + 400 - 30, (name, seen)
        assert rig.stored().token == tok(0) and rig.r.status()["pending_commit"], name


def test_a_boot_that_fails_without_a_token_tries_again_not_healthy():
    # boot's catch-all (here the provisioning's import runs out of heap): not "healthy"
    # with no token, which presented None at every step; a backoff, after which the
    # provisioning is tried again
    class NoHeap:
        def __getattr__(self, name):
            raise MemoryError("memory allocation failed")

    saved = swap_module("regtoken.selfprov", NoHeap())
    try:
        rig = Rig(initial_token=None, reprovision=True, provisioning_token="prov-secret")
        assert rig.r.state == BACKOFF and rig.r.token is None
        assert rig.r.status()["reason"] == "error" and rig.r.due_in() == 0
        rig.r.step()  # the import fails again: backed off, nothing presented
        assert rig.http.calls == [] and rig.r.state == BACKOFF and rig.r.due_in() > 0
    finally:
        restore_module("regtoken.selfprov", saved)
    rig.run_until_due()  # the heap is there now: provisioning starts
    assert rig.r.state == "provisioning" and rig.r._prov is not None


def test_a_never_expiring_token_whose_retry_came_due_boots():
    # a forced refresh of a token that never expires, refused (403): the hold is stored;
    # a restart after it ended must retry, not crash on the missing expiry (every boot did,
    # the store unchanged: a dead device)
    rig = Rig(problem(403), initial_expiration=None, backoff_max_s=600, rnd=0.0)
    assert rig.r.state == HEALTHY and rig.r.due_in() is None  # never on a schedule
    assert rig.r.force() and rig.r.due_in() == 5  # backoff_min_s after the import's commit
    rig.clock.advance(5)
    assert rig.r.step() == 601 and rig.r.state == FORBIDDEN
    rig.clock.advance(1000)
    again = Rig(issued(tok(1), None), fs=rig.fs, clock=rig.clock, initial_expiration=None,
                **rig.raw())
    assert again.r.state == HEALTHY and again.r.due_in() == 0
    assert again.r.step() is None and again.r.token == tok(1)  # and never again


def test_a_boot_that_cannot_place_its_record_refreshes_instead_of_dying():
    from regtoken import policy

    fs = MemFS()
    Store(fs).commit(Record(tok(1), T0 + DAY, T0 - 60, "-"))  # overdue: boot_delay decides

    def boom(*_):
        raise TypeError("a bug in the schedule")

    saved = policy.boot_delay
    policy.boot_delay = boom
    try:
        rig = Rig(issued(tok(2)), fs=fs)
    finally:
        policy.boot_delay = saved
    assert [x for x in rig.lines if x.startswith("boot: TypeError")]
    assert rig.r.state == HEALTHY and rig.r.due_in() == 0
    rig.r.step()
    assert rig.r.token == tok(2) and rig.stored().token == tok(2)


def test_a_403_hold_survives_a_restart_with_an_unset_clock():
    # a board whose clock NTP did not set: moved forward to the hold's start (the commit),
    # it waits the hold out, and only then asks (and learns the time from the answer)
    rig = Rig(problem(403), backoff_max_s=600, rnd=0.0)
    rig.r.step()
    assert rig.r.state == FORBIDDEN and rig.r.due_in() == 601
    cold = VirtualClock(t=946684800 + 100, trusted=False)  # a cold ESP32 without NTP
    again = Rig(issued(tok(1)), fs=rig.fs, clock=cold, **rig.raw())
    assert again.r.state == FORBIDDEN and 0 < again.r.due_in() <= 601
    assert cold.now() == rig.stored().at  # the floor: the hold's commit
    assert again.r.step() == again.r.due_in() and again.http.calls == []
    again.run_until_due()
    assert again.http.presented() == tok(0) and again.r.token == tok(1)


def test_a_retry_after_outlives_a_restart_and_a_plain_failure_writes_nothing():
    # a fleet throttled (412) or told to wait by a 503 and then power-cycled together must
    # not come back before the server's time: the floor is committed like a 403's hold. A
    # failure without one commits nothing (no flash wear per retry)
    rig = Rig(problem(503), problem(412, {"retry-after": "900"}), backoff_min_s=5, rnd=0.0)
    rig.r.step()
    writes = rig.fs.writes
    assert rig.r.state == BACKOFF and rig.stored().why == "-"
    rig.run_until_due()
    assert rig.fs.writes > writes and rig.r.due_in() == 901
    assert rig.stored().due == rig.r.status()["next_attempt"]
    rig.clock.advance(600)
    again = rig.restart(issued(tok(1)))  # mid-hold
    assert again.r.state == BACKOFF and again.r.status()["reason"] == "throttled"
    assert again.r.due_in() == 301 and again.r.step() == 301 and again.http.calls == []
    again.run_until_due()
    assert again.http.presented() == tok(0) and again.r.token == tok(1)
    assert again.stored().why == "-" and again.r.state == HEALTHY
    later = again.restart()  # the hold is over and the new record has none
    assert later.r.state == HEALTHY and later.r.due_in() > 0


def test_a_retry_after_hold_is_on_flash_before_on_state_is_told():
    # a callback that never returns (sys.exit(), a Ctrl-C: no Exception, so not caught)
    # stopped the hold's commit, which came after the state was told: a restart then
    # called 2,700 s before the server's time
    for stop in (SystemExit, KeyboardInterrupt):
        rig = Rig(problem(412, {"retry-after": "900"}), rnd=0.0)

        def cb(state, why, stop=stop):
            if state == BACKOFF:
                raise stop(3)

        rig.r.on_state(cb)
        try:
            rig.r.step()
            raise AssertionError("the callback's %s was swallowed" % stop.__name__)
        except stop:
            pass
        again = rig.restart()
        st = again.r.status()
        assert (st["state"], st["reason"]) == (BACKOFF, "throttled"), (stop, st)
        assert again.r.due_in() == 901, again.r.due_in()


def test_force_only_when_healthy():
    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)),
              issued(tok(3), iso(T0 + DAY)))
    rig.r.step()
    rig.clock.advance(5)
    assert rig.r.force() is True and rig.r.due_in() == 0
    rig.r.step()
    assert rig.r.token == tok(2)
    # a loop that forces refreshes once per backoff_min_s, not at every step (49 rotations
    # in 5 s once)
    for _ in range(50):
        assert rig.r.force() is True and 0 < rig.r.step() <= 5
    assert len(rig.http.calls) == 2
    rig.clock.advance(5)
    assert rig.r.force() and rig.r.step() > 5 and rig.r.token == tok(3)
    rig.r._rec.at = rig.clock.now() + 10 ** 8  # committed by a clock set back since
    assert rig.r.force() and rig.r.due_in() == 5  # not years on
    rig.r.state = BACKOFF  # backoff and forbidden keep their waits
    assert rig.r.force() is False


def test_force_never_puts_a_refresh_off():
    # a token of a few seconds is refreshed sooner than backoff_min_s after its commit:
    # force() (an on_token's, the board loop's after an NTP step) moved it to
    # backoff_min_s on, past its expiry: a 410
    rig = Rig(issued(tok(1), iso(T0 + 4)), issued(tok(2), iso(T0 + DAY)), rnd=0.0)
    rig.r.step()
    due = rig.r.due_in()
    assert 0 < due < 4 and rig.r.expires_in() == 4
    assert rig.r.force() is True and rig.r.due_in() == due  # not backoff_min_s (5)
    rig.clock.advance(due)
    rig.r.step()
    assert rig.r.token == tok(2) and rig.http.presented() == tok(1)


def test_callbacks_and_status_snapshot():
    rig = Rig(problem(503), issued(tok(1), iso(T0 + DAY)))
    tokens, states = [], []
    rig.r.on_token(lambda t, exp: tokens.append((t, exp)))
    rig.r.on_state(lambda s, why: states.append(s))
    rig.r.step()
    st = rig.r.status()
    assert st["state"] == BACKOFF and "503" in st["last_error"]
    assert st["counts"]["failures"] == 1 and st["next_attempt"] == rig.r._next
    rig.run_until_due()
    assert tokens == [(tok(1), T0 + DAY)]
    assert states == [HEALTHY, BACKOFF, HEALTHY]  # the current state at once, then changes
    assert rig.r.status()["last_error"] is None


def test_no_whole_token_is_ever_logged():
    answers = [issued(tok(1), iso(T0 + 100)), problem(503), issued(tok(2), iso(T0 + 300),
                                                                    status=200), problem(410)]
    rig = Rig(*answers, provisioning_token="prov-secret-value")
    rig.r.step()
    for _ in range(3):
        rig.run_until_due()
    text = "\n".join(rig.lines)
    assert len(rig.lines) > 5
    for secret in (tok(0), tok(1), tok(2), "prov-secret-value"):
        assert secret not in text and secret[:12] not in text
    assert str(rig.r.status()).find(tok(2)[:12]) < 0


def test_iso_helper_round_trips():
    assert rfc3339(iso(T0)) == T0


def test_backoff_survives_deep_sleep_through_suspend_and_resume():
    rig = Rig(problem(503), problem(503), rnd=0.0, backoff_min_s=5, backoff_max_s=600)
    rig.r.step()
    rig.run_until_due()
    saved, next_at = rig.r.suspend(), rig.r._next
    assert rig.r.state == BACKOFF and rig.r._wait == 20
    again = rig.restart(problem(503))  # deep sleep reboots into main.py
    assert again.r.state == HEALTHY  # the store alone would retry at once
    again.r.resume(saved)
    assert again.r.state == BACKOFF and again.r._next == next_at
    assert again.r.status()["reason"] == "server"  # machine-readable, as before the sleep
    again.run_until_due()
    assert again.r._wait == 80  # the backoff kept growing
    older = rig.restart()
    older.r.resume(b"backoff %d 20" % next_at)  # written by a version without the reason
    assert older.r.state == BACKOFF and older.r.status()["reason"] is None


def test_resume_ignores_junk():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    due = rig.r._next
    # and a schedule the live token contradicts: none at all (it expired unrefreshed), or
    # one past its expiry (stale bytes)
    for junk in (None, b"", b"garbage", b"\xff\xfe", b"healthy x 0", b"provision 5 0",
                 b"healthy 0 0 -", b"healthy %d 0 -" % (T0 + 2 * DAY),
                 b"backoff %d 0 transport" % (T0 + 10 ** 8)):
        rig.r.resume(junk)
        assert rig.r.state == HEALTHY and rig.r._next == due, junk
    rig.r.resume(b"backoff %d 20 server" % (T0 + 100))  # one it allows is taken
    assert rig.r.state == BACKOFF and rig.r._next == T0 + 100


def test_resume_ignores_a_hold_no_403_sets():
    # a 403's hold may outlast the token, but not 1.5 times a day's Retry-After or
    # backoff_max_s: RTC memory written over (another app's) read "forbidden 99999999999"
    # and parked a healthy device for ever
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    due = rig.r._next
    for junk in (b"forbidden 99999999999 0 forbidden", b"forbidden 0 0 forbidden",
                 b"forbidden %d 0 forbidden" % (T0 + 3 * DAY)):
        rig.r.resume(junk)
        assert rig.r.state == HEALTHY and rig.r._next == due, junk
    rig.r.resume(b"forbidden %d 240 forbidden" % (T0 + DAY + 7200))  # past expiry: kept
    assert rig.r.state == FORBIDDEN and rig.r._next == T0 + DAY + 7200


def test_timer_wake_keeps_the_boot_delay_already_drawn():
    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + 2 * DAY)))
    rig.r.step()
    rig.clock.t = T0 + DAY - 1000  # off through the refresh point: a boot delay is drawn
    rig.rnd = 0.9
    first = rig.restart()
    saved, wake_at = first.r.suspend(), first.r._next
    assert wake_at > rig.clock.t
    rig.clock.t = wake_at  # the deep-sleep timer fires
    rig.rnd = 0.99
    woken = rig.restart()
    assert woken.r.due_in() > 0  # on its own it would draw a new delay, again and again
    woken.r.resume(saved)
    assert woken.r.due_in() == 0


def test_backoff_ends_before_the_token_expires_and_403_is_jittered():
    rig = Rig(issued(tok(1), iso(T0 + 1000)), *[problem(503)] * 8, backoff_max_s=3600,
              rnd=0.99)
    rig.r.step()
    rig.clock.t = rig.r._next  # the scheduled refresh, 10-ish minutes before expiry
    for _ in range(8):
        rig.r.step()
        assert rig.r.state == BACKOFF
        left = T0 + 1000 - rig.clock.now()
        if left > 60 + 12:
            assert rig.r._next <= T0 + 1000 - 60  # the expiry margin, not the 3600 cap
        rig.clock.t = rig.r._next
    held = Rig(problem(403), backoff_max_s=600, rnd=0.5)
    held.r.step()
    assert held.r.state == FORBIDDEN and held.r.due_in() == 600 + 150 + 1


# -- never dies: the refresher survives everything but a power cut --


class MemoryErrorFS(MemFS):
    """Flash whose next `fail` writes raise MemoryError (the heap ran out in a commit)."""

    def __init__(self):
        MemFS.__init__(self)
        self.fail = 0

    def write(self, name, data):
        if self.fail:
            self.fail -= 1
            raise MemoryError("memory allocation failed")
        MemFS.write(self, name, data)


def _run_async(coro):
    import asyncio

    return asyncio.run(coro)


def _astep_until(r, n):
    """n attempts through astep(), the asyncio driver: what aio.run does, bounded."""
    import asyncio

    async def go():
        for _ in range(n):
            await asyncio.wait_for(r.astep(), 5)

    _run_async(go())


def _drivers():
    def plain(rig, n):
        for _ in range(n):
            rig.run_until_due()

    def aio(rig, n):
        for _ in range(n):  # virtual time: make it due, then let astep() act at once
            rig.clock.advance(rig.r.due_in() or 0)
            _astep_until(rig.r, 1)

    return (("plain", plain), ("asyncio", aio))


def test_raising_callbacks_are_logged_and_do_not_stop_it():
    for name, drive in _drivers():
        rig = Rig(issued(tok(1), iso(T0 + DAY)), problem(503), issued(tok(2), iso(T0 + DAY)))

        def bad_token(token, exp):
            raise ValueError("app bug")

        def bad_state(state, why):
            raise KeyError("app bug")

        rig.r.on_token(bad_token)
        rig.r.on_state(bad_state)  # raises at once, with the current state: logged too
        rig.r.step()
        assert rig.r.token == tok(1) and rig.r.state == HEALTHY, name
        rig.r.force()
        drive(rig, 2)
        assert rig.r.token == tok(2) and rig.r.state == HEALTHY, name
        assert len([x for x in rig.lines if x.startswith("callback: ")]) >= 4, name



def test_a_callback_that_quotes_the_token_is_logged_by_its_type_only():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))

    def quoting(token, exp):
        raise RuntimeError("tok " + token)  # an application's message, with the token

    rig.r.on_token(quoting)
    rig.r.step()
    said = [x for x in rig.lines if x.startswith("callback: ")]
    # its text once went in 48 characters: a whole token of 40
    assert said == ["callback: RuntimeError"], said


def test_a_410_is_final_even_when_booting_again_runs_out_of_heap():
    # after a 410 the refresher goes on as a boot would (boot.py imported again): with no
    # heap for that, it still never presents the refused token again
    rig = Rig(issued(tok(1), iso(T0 + DAY)), problem(410), issued(tok(2), iso(T0 + DAY)))
    rig.r.step()

    def no_heap():
        raise MemoryError("memory allocation failed, allocating 272 bytes")

    rig.r._store.load = no_heap  # the first thing a boot reads
    rig.clock.advance(5)
    rig.r.force()
    rig.r.step()
    assert rig.stored().due == DEAD and rig.r.token is None
    st = rig.r.status()
    assert st["state"] == PROVISION and st["reason"] == "gone" and rig.r.due_in() is None
    for _ in range(3):
        rig.clock.advance(3600)
        rig.r.step()
    assert len(rig.http.calls) == 2, rig.http.calls
    assert [x for x in rig.lines if x.startswith("410: " + tok(1)[:6])]
    assert [x for x in rig.lines if x.startswith("MemoryError: ")]


def test_inside_on_token_the_state_is_whole_and_force_is_obeyed():
    # after a failure, then the rotation: the callback sees healthy, the new schedule, and
    # a force() it makes is the next attempt (it was overwritten by the schedule)
    rig = Rig(problem(500), issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)))
    seen = []

    def cb(token, exp):
        st = rig.r.status()
        seen.append((st["state"], st["reason"], st["last_error"], st["next_attempt"]))
        if token == tok(1):
            seen.append(rig.r.force())

    rig.r.on_token(cb)
    rig.r.step()
    rig.run_until_due()
    assert seen[0][:3] == (HEALTHY, None, None) and seen[0][3] > rig.clock.now()
    # forced: due backoff_min_s after the commit (a callback that forces at each token
    # would rotate without end), not at the schedule
    assert seen[1] is True and rig.r.due_in() == 5
    rig.clock.advance(5)
    rig.r.step()
    assert rig.r.token == tok(2)

def test_memory_error_in_the_commit_is_a_failed_attempt():
    for name, drive in _drivers():
        fs = MemoryErrorFS()
        rig = Rig(issued(tok(1), iso(T0 + DAY)), fs=fs, rnd=0.0)
        fs.fail = 1
        rig.r.step()
        st = rig.r.status()
        assert st["state"] == BACKOFF and st["reason"] == "store" and st["pending_commit"]
        assert rig.stored().token == tok(0) and rig.r.token == tok(0)
        assert rig.r.due_in() == 6, name
        drive(rig, 1)  # the commit again, no network
        assert rig.r.token == tok(1) == rig.stored().token and len(rig.http.calls) == 1, name
        assert rig.r.state == HEALTHY and rig.r.status()["reason"] is None


def test_memory_error_and_type_error_in_the_transport_back_off():
    for name, drive in _drivers():
        rig = Rig(MemoryError("memory allocation failed"), TypeError("can't convert"),
                  issued(tok(1), iso(T0 + DAY)), rnd=0.0)
        rig.r.step()
        st = rig.r.status()
        assert st["state"] == BACKOFF and st["reason"] == "transport", name
        assert "MemoryError" in st["last_error"] and rig.r.due_in() == 6
        drive(rig, 1)
        assert "TypeError" in rig.r.status()["last_error"] and rig.r.due_in() == 21, name
        drive(rig, 1)
        assert rig.r.token == tok(1) and rig.r.state == HEALTHY, name


def test_no_heap_to_read_a_201_is_a_failed_attempt_not_garbage():
    # the 201 may have been good: the log must say memory, not blame the server, and the
    # parent (still valid in its grace period) is presented again; its 200 is used
    for name, drive in _drivers():
        rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY), status=200),
                  rnd=0.0)
        NoHeapJSON.fail = 1
        saved = swap_module("json", NoHeapJSON)
        try:
            rig.r.step()
            del rig.lines[:]  # a Pico's heap holds no day of log lines
            st = rig.r.status()
            assert st["state"] == BACKOFF and st["reason"] == "error", (name, st)
            assert "MemoryError" in st["last_error"] and "valid token" not in st["last_error"]
            assert rig.r.token == tok(0) == rig.stored().token
            drive(rig, 1)
        finally:
            NoHeapJSON.fail = 0
            restore_module("json", saved)
        assert rig.http.calls[1][2] == rig.http.calls[0][2]  # the parent again
        assert rig.r.token == tok(2) and rig.r.state == HEALTHY, name
        assert rig.r.status()["counts"]["recoveries"] == 1


def test_an_unexpected_error_inside_a_step_is_a_failed_attempt():
    for name, drive in _drivers():
        rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)), rnd=0.0)

        def broken(*args):
            raise MemoryError()  # e.g. while parsing, between transport and commit

        import regtoken.machine as mod

        real = mod.classify
        mod.classify = broken
        try:
            rig.r.step()
            del rig.lines[:]  # a Pico's heap holds no day of log lines
            st = rig.r.status()
            assert st["state"] == BACKOFF and st["reason"] == "error", (name, st)
            assert rig.r.due_in() == 6
        finally:
            mod.classify = real
        drive(rig, 1)
        assert rig.r.token == tok(2) and rig.r.state == HEALTHY, name


def test_the_asyncio_task_keeps_going_after_failures():
    import asyncio

    from regtoken import aio

    rig = Rig(MemoryError(), TypeError("x"), issued(tok(1), iso(T0 + DAY)), rnd=0.0,
              backoff_min_s=1)

    async def main():
        task = asyncio.create_task(aio.run(rig.r))
        for _ in range(200):  # real time, small waits: 1 s, then 2-3 s of backoff
            await asyncio.sleep(0.05)
            rig.clock.advance(1)
            if rig.r.token == tok(1):
                break
        task.cancel()

    _run_async(main())
    assert rig.r.token == tok(1) and rig.r.state == HEALTHY
    assert rig.r.status()["counts"]["failures"] == 2


async def _until(done, n=500):
    import asyncio

    for _ in range(n):  # real time, small waits
        if done():
            return True
        await asyncio.sleep(0.01)
    return False


async def _two_tasks(rig, settle):
    """Two aio.run tasks on rig.r until its first new token (tok(1)) and `settle` s more,
    then both cancelled: whether that ended both."""
    import asyncio

    from regtoken import aio

    tasks = [asyncio.create_task(aio.run(rig.r)) for _ in range(2)]
    await _until(lambda: rig.r.token == tok(1))
    await asyncio.sleep(settle)
    for t in tasks:
        t.cancel()
    await asyncio.sleep(0.05)
    ended = all(t.done() for t in tasks)
    for _ in range(5):  # a cancel one of them swallowed (taken for force()'s): again, so
        for t in tasks:  # that the test ends
            t.cancel()
        await asyncio.sleep(0.05)
    return ended


def test_two_asyncio_tasks_on_one_refresher_make_one_call_per_attempt():
    # two aio.run tasks (started twice by mistake, or one left by an earlier asyncio.run)
    # presented the same parent side by side: the second answer, a 200, revoked the token
    # the first committed, and the device ended in provision with no fault at all
    import asyncio


    class Slow(FakeHTTP):  # an answer that takes a while: the other task runs meanwhile
        async def arequest(self, method, url, body, headers):
            await asyncio.sleep(0.05)
            return self.request(method, url, body, headers)

    rig = Rig()
    slow = rig.r._http = Slow(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)))

    ended = _run_async(_two_tasks(rig, 0.2))  # 0.2 s: the second task's chance to call
    n = len(slow.calls)  # not the list: its bodies hold whole tokens
    assert n == 1, n
    assert rig.r.token == tok(1) and rig.stored().token == tok(1)
    assert ended is True  # the application's cancel ends both


def test_force_during_an_asyncio_call_wakes_no_second_call():
    # the application forces while a call is in flight: that call is the refresh. Taken
    # as a new one, it made the other task present the same parent beside it
    import asyncio


    forced = []

    class Slow(FakeHTTP):
        async def arequest(self, method, url, body, headers):
            if not forced:
                rig.clock.advance(6)  # past backoff_min_s (5) since the import's commit
                forced.append(rig.r.force())
            await asyncio.sleep(0.1)  # the other task runs meanwhile
            return self.request(method, url, body, headers)

    rig = Rig()
    slow = rig.r._http = Slow(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)))

    assert _run_async(_two_tasks(rig, 0.3)) is True  # 0.3 s: a second call's chance
    assert forced == [False]  # refused: a refresh is in flight
    n = len(slow.calls)  # not the list: its bodies hold whole tokens
    assert n == 1, n
    assert rig.r.token == tok(1) and rig.stored().token == tok(1)
    assert not rig.r._busy  # over with the call
    assert rig.r.force() is True and rig.r.due_in() == 5  # obeyed again: backoff_min_s
    # after the commit


def test_the_mark_of_a_call_in_flight_is_a_whole_second_after_its_timeout():
    # timeout_s may be a float, and added to a time a float is a 32-bit port's single
    # float, in steps of 128 s: the mark (and the next attempt) is an int
    from regtoken import aio

    marks = []

    class Slow(FakeHTTP):
        async def arequest(self, method, url, body, headers):
            marks.append(rig.r._busy)
            return self.request(method, url, body, headers)

    rig = Rig(timeout_s=2.5)
    rig.r._http = Slow(issued(tok(1), iso(T0 + DAY)))
    _run_async(aio.astep(rig.r))
    assert marks == [T0 + 4] and type(marks[0]) is int, marks  # 3 s, then 1 s more
    assert rig.r.token == tok(1) and not rig.r._busy


def test_with_two_tasks_asleep_force_wakes_the_one_a_cancel_left():
    # only the task that slept last was kept for force() to wake: cancelled, it took the
    # other's wake with it, and force() said True with nothing woken (the next refresh
    # at the old schedule's time, or a day later)
    import asyncio

    from regtoken import aio

    async def main(rig, victim):
        tasks = [asyncio.create_task(aio.run(rig.r)) for _ in range(2)]
        assert await _until(lambda: rig.r.token == tok(1))
        await asyncio.sleep(0.05)  # both asleep (the one that called, since it did)
        tasks[victim].cancel()
        assert await _until(tasks[victim].done)
        rig.clock.advance(5)  # backoff_min_s after the commit
        assert rig.r.force()
        woken = await _until(lambda: rig.r.token == tok(2))
        tasks[1 - victim].cancel()
        await _until(tasks[1 - victim].done)
        return woken

    for victim in (0, 1):
        rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + 2 * DAY)))
        assert _run_async(main(rig, victim)) is True, victim
        assert len(rig.http.calls) == 2, victim


def test_a_loop_left_mid_call_does_not_stop_force_for_good():
    # an application's loop ended by a Ctrl-C (or its own exception) while the refresher's
    # call was in flight never ends that call: force() refuses only until it would have
    # timed out
    import asyncio

    from regtoken import aio

    class Hang(FakeHTTP):
        async def arequest(self, method, url, body, headers):
            await asyncio.sleep(3600)

    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()  # the imported token rotated: healthy, scheduled
    rig.r._http = Hang()
    rig.clock.advance(5)
    assert rig.r.force()

    async def main():
        asyncio.create_task(aio.run(rig.r))
        await _until(lambda: rig.r._busy)  # the call in flight
        raise KeyboardInterrupt  # the loop ends with the call suspended inside it

    try:
        _run_async(main())
    except KeyboardInterrupt:
        pass
    asyncio.new_event_loop()  # what an application does after a Ctrl-C
    import sys

    if sys.implementation.name == "micropython":  # its asyncio.run leaves the task where
        assert rig.r.force() is False  # it was (CPython's cancels it): maybe in flight
    rig.clock.advance(rig.cfg["timeout_s"] + 1)
    assert rig.r.force() is True and rig.r.due_in() == 0


def test_status_reason_is_machine_readable_and_survives_a_restart():
    cases = (((problem(410),), PROVISION, "gone"), ((problem(403),), FORBIDDEN, "forbidden"),
             ((problem(412),), BACKOFF, "throttled"), ((problem(503),), BACKOFF, "server"),
             (((201, {}, b"{}"),), BACKOFF, "garbage"), ((OSError("reset"),), BACKOFF,
                                                         "transport"))
    for answers, state, reason in cases:
        rig = Rig(*answers)
        rig.r.step()
        st = rig.r.status()
        assert (st["state"], st["reason"]) == (state, reason), (st, reason)
        if reason in ("gone", "forbidden"):  # kept in the store: the same after a restart
            again = rig.restart().r.status()
            assert (again["state"], again["reason"]) == (state, reason), again
    empty = Rig(initial_token=None).r.status()
    assert empty["token"] is None and empty["reason"] == "empty"
    ok = Rig(issued(tok(1), iso(T0 + DAY)))
    ok.r.step()
    st = ok.r.status()
    assert st["reason"] is None and st["token"].startswith(tok(1)[:6]) and tok(1) not in st["token"]


def test_expires_in_is_seconds_and_logs_show_rfc3339():
    rig = Rig(issued(tok(1), "2027-01-16T08:00:00Z"))
    assert rig.r.expires_in() is None  # imported without an expiration
    rig.r.step()
    assert rig.r.expires_in() == DAY
    line = [x for x in rig.lines if x.startswith("rotated (201)")][0]
    assert "expires 2027-01-16T08:00:00Z" in line and str(T0 + DAY) not in line


def test_on_state_reports_the_current_state_when_registered():
    rig = Rig(problem(410))
    rig.r.step()
    seen = []
    rig.r.on_state(lambda state, why: seen.append((state, why)))
    assert seen and seen[0][0] == PROVISION and "410" in seen[0][1]


def test_a_refresher_with_another_transport_lets_wire_s_spare_buffer_go():
    # the 2 KiB wire keeps from import for its first client must not stay on the heap for
    # years when the client is urequests or the application's own transport
    from regtoken import wire

    wire._spare = bytearray(wire.BODY)
    Rig(issued(tok(1)))
    assert wire._spare is None


def test_an_https_refresher_makes_its_tls_context_at_construction():
    # made while the heap is emptiest (it needs ~3 KB in one piece), not at the first call
    import sys

    from cases.test_wire import Tls

    fake = Tls()
    saved = swap_module("tls", fake)
    try:
        cfg = validate({"api_url": "https://device-api.test", "initial_token": tok(0),
                        "tls_verify": False})
        from regtoken import wire

        wire._room = bytearray(8)  # as the config check leaves it for https
        r = Refresher(cfg, store=Store(MemFS()), clock=VirtualClock(), log=[].append)
        assert len(fake.made) == 1 and r._http.ctx is fake.made[0]
        assert fake.made[0].verify_mode == Tls.CERT_NONE and not fake.wrapped
        assert "regtoken.pem" not in sys.modules  # let go: the context is all it needs
        assert wire._room is None  # the piece kept for the context is free again
    finally:
        restore_module("tls", saved)


def test_force_wakes_the_asyncio_task_and_a_cancel_still_stops_it():
    # force() wakes the task asleep until the next refresh; the application's own cancel is
    # not taken for a wake-up: it ends the task
    import asyncio

    from regtoken import aio

    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + 2 * DAY)))

    async def until(done):
        for _ in range(500):  # real time, small waits; the refresher never waits here
            if done():
                return True
            await asyncio.sleep(0.01)
        return False

    async def main():
        task = asyncio.create_task(aio.run(rig.r))
        assert await until(lambda: rig.r.token == tok(1))  # the imported token, at once
        assert rig.r.due_in() > 3600  # asleep for hours now
        rig.clock.advance(5)  # backoff_min_s after the commit
        assert rig.r.force()
        assert await until(lambda: rig.r.token == tok(2))
        task.cancel()
        ended = await until(task.done)
        if not ended:  # the cancel was swallowed: end the task another way, not hang
            rig.r.astep = _stop  # type: ignore[method-assign]
            rig.r.force()
            await until(task.done)
        return ended

    assert _run_async(main()) is True
    assert len(rig.http.calls) == 2


async def _stop():
    import asyncio

    raise asyncio.CancelledError  # no Exception: out of aio.run's loop, the task ends


def test_a_memory_error_outside_an_attempt_neither_raises_nor_ends_the_task():
    # the clock's now() (a float on the unix port) out of heap: step() raised, and the
    # asyncio task died in astep's first due_in(), status() still "healthy" for ever
    import asyncio

    from regtoken import aio

    class Starved(VirtualClock):
        fail = 0

        def now(self):
            if self.fail:
                self.fail -= 1
                raise MemoryError("memory allocation failed, allocating 32 bytes")
            return VirtualClock.now(self)

    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)), clock=Starved())
    rig.clock.fail = 1
    assert rig.r.step() == 1 and rig.r.token == tok(0)  # again soon
    rig.r.step()
    assert rig.r.token == tok(1)
    rig.clock.advance(5)
    rig.r.force()

    async def main():
        rig.clock.fail = 1
        task = asyncio.create_task(aio.run(rig.r))
        for _ in range(1000):  # real time: the task waits 1 s after the failure
            if rig.r.token == tok(2) or task.done():
                break
            await asyncio.sleep(0.01)
        done = task.done()
        task.cancel()
        return done

    assert _run_async(main()) is False and rig.r.token == tok(2)

    # the failed astep() yields while it waits: returned at once, aio.run would spin and
    # never let the other tasks run (one may hold the heap it needs)
    async def others_run_meanwhile():
        ran = []

        async def other():
            ran.append(1)

        asyncio.create_task(other())  # runs at this task's first yield
        rig.clock.fail = 1
        return await rig.r.astep(), len(ran)  # how many had run when it returned

    assert _run_async(others_run_meanwhile()) == (1, 1)


def test_no_heap_for_a_log_line_still_tells_the_callbacks():
    # the "committed" line out of heap: the token was in use, but on_token never heard
    # of it, the state went to backoff ("error") and a needless rotation followed
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    told, states = [], []
    rig.r.on_token(lambda t, e: told.append(t))
    rig.r.on_state(lambda st, why: states.append(st))

    def log(msg):
        if "committed" in msg or msg.startswith("state: "):
            raise MemoryError("memory allocation failed, allocating 96 bytes")

    rig.r._log = log
    rig.r.step()
    assert told == [tok(1)] and rig.r.state == HEALTHY and rig.r.token == tok(1)
    assert states == [HEALTHY] and rig.r.status()["reason"] is None
    assert rig.r.due_in() > DAY // 4 and len(rig.http.calls) == 1


def test_no_heap_for_the_recovery_line_still_commits_the_200s_token():
    # the "recovered (200)" line was logged before the commit, unguarded: with no heap
    # for it the answer became a failed attempt, the new token was lost, and the parent's
    # retry got another 200 (another revoked child)
    rig = Rig(OSError("connection reset"), issued(tok(2), iso(T0 + DAY), status=200))
    rig.r.step()
    lines = []

    def log(msg):
        if msg.startswith("recovered"):
            raise MemoryError("memory allocation failed, allocating 96 bytes")
        lines.append(msg)

    rig.r._log = log
    rig.run_until_due()
    assert rig.r.token == tok(2) and rig.stored().token == tok(2)
    assert rig.r.state == HEALTHY and rig.r.status()["counts"]["recoveries"] == 1
    assert len(rig.http.calls) == 2 and not [x for x in lines if "error" in x]


def test_a_step_from_on_state_in_a_412s_backoff_leaves_the_new_token_on_flash():
    # README: do not call step() from a callback. One that did (after waiting out the
    # backoff) rotated inside the 412's; the 412 then committed its hold on the parent
    # over the new token: flash held the parent, RAM the new token, until the next commit
    rig = Rig(problem(412, {"retry-after": "30"}), issued(tok(1), iso(T0 + DAY)))

    def on_state(state, why):
        if state == BACKOFF:
            rig.clock.advance(rig.r.due_in())
            rig.r.step()

    rig.r.on_state(on_state)
    rig.r.step()
    assert rig.r.token == tok(1) and rig.r.state == HEALTHY
    assert rig.stored().token == tok(1) and rig.restart().r.token == tok(1)


def test_no_heap_for_the_clock_line_still_commits_the_answers_token():
    # the "clock: set" line came before the commit, unguarded: with no heap for it the
    # 201 became a failed attempt and its token was lost (the server had rotated)
    rig = Rig(issued(tok(1), iso(T0 + DAY), headers={"date": "Fri, 15 Jan 2027 08:00:00 GMT"}),
              clock=VirtualClock(T0 - 3600, trusted=False))  # the Date: T0

    def log(msg):
        if msg.startswith("clock: set"):
            raise MemoryError("memory allocation failed, allocating 96 bytes")

    rig.r._log = log
    rig.r.step()
    assert rig.r.token == tok(1) and rig.stored().token == tok(1) and rig.clock.trusted
    assert rig.r.state == HEALTHY and len(rig.http.calls) == 1


def test_a_callback_that_registers_one_waits_for_the_next_event():
    # a "once" pattern with no unregister: each callback registering the next one looped
    # for ever inside one commit (the live list iterated)
    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)))
    calls = []

    def cb(t, e):
        calls.append(t)
        rig.r.on_token(cb)

    rig.r.on_token(cb)
    rig.r.step()
    assert calls == [tok(1)]
    rig.clock.advance(5)
    rig.r.force()
    rig.r.step()
    assert calls == [tok(1), tok(2), tok(2)]


def test_a_store_dir_that_is_not_a_directory_is_said_at_boot():
    # a card not mounted, a typo: one line names it (every commit would fail, each with a
    # bare errno); the device goes on, nothing is made in its place
    for d, said in (("/no-such-dir-for-regtoken", True), ("/", False)):
        lines = []
        cfg = validate({"api_url": "http://device-api.test", "store_dir": d})
        r = Refresher(cfg, transport=FakeHTTP(), clock=VirtualClock(), log=lines.append)
        warned = [x for x in lines if "WARNING: store_dir " + d + " is not a directory" in x]
        assert len(warned) == said, lines
        assert r.state == PROVISION  # nothing stored, no initial token: it goes on
    # with an initial token: not imported, not presented. The store is unknown, not empty:
    # its lineage may have rotated past the initial token already (on a card not mounted),
    # and a 200 for it would revoke the live token
    cfg = validate({"api_url": "http://device-api.test", "initial_token": tok(0),
                    "store_dir": "/no-such-dir-for-regtoken", "reprovision": True,
                    "provisioning_token": "prov-secret"})
    http = FakeHTTP(issued(tok(1)))
    lines = []
    r = Refresher(cfg, transport=http, clock=VirtualClock(), log=lines.append)
    assert r.step() is None and r.token is None and http.calls == []
    st = r.status()
    assert (st["state"], st["reason"]) == (PROVISION, "store"), st
    assert "is not a directory" in st["last_error"]
    assert not [x for x in lines if x.startswith("import:")], lines
