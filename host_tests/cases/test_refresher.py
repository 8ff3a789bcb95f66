import json

from fakes.clock import T0, VirtualClock
from fakes.memfs import MemFS
from fakes.net import FakeHTTP, issued, problem
from regtoken import BACKOFF, FORBIDDEN, HEALTHY, PROVISION, Refresher, validate
from regtoken.dates import rfc3339
from regtoken.store import DEAD, Record, Store, fingerprint

from cases.util import tok

DAY = 86400


def iso(t):
    import time

    y, mo, d, h, mi, s = time.gmtime(t - _epoch())[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02d.000Z" % (y, mo, d, h, mi, s)


def _epoch():
    import time

    from regtoken.dates import days

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
    assert rig.r.counts["rotations"] == 5


def test_refresh_point_between_half_life_and_latest():
    for rnd in (0.0, 0.3, 0.99):
        rig = Rig(issued(tok(1), iso(T0 + DAY)), rnd=rnd)
        rig.r.step()
        wait = rig.r.due_in()
        assert DAY // 2 <= wait <= DAY - 600


def test_null_expiration_is_never_refreshed_on_a_schedule():
    rig = Rig(issued(tok(1), None))
    assert rig.r.step() is None
    assert rig.r.due_in() is None and rig.r.expires is None
    rig2 = rig.restart()
    assert rig2.r.due_in() is None and rig2.r.token == tok(1)


def test_restart_continues_with_the_stored_token_and_schedule():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    due = rig.r.next_at
    again = rig.restart(issued(tok(2), iso(T0 + 2 * DAY)))
    assert again.r.token == tok(1) and again.r.next_at == due
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
    assert rig.r.token == tok(2) and rig.r.counts["recoveries"] == 1
    assert [x for x in rig.lines if x.startswith("recovered (200)")]


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
    waits = [rig.r.wait]
    for _ in range(11):
        assert rig.r.due_in() == rig.r.wait + 1  # never early by a second's fraction
        rig.run_until_due()
        waits.append(rig.r.wait)
    assert waits[0] == 5
    for a, b in zip(waits, waits[1:]):
        assert b >= min(2 * a, 600)
    assert waits[-1] == 600 and max(waits) == 600
    assert rig.r.state == BACKOFF and rig.stored().token == tok(0)
    throttled = Rig(problem(412, {"retry-after": "900"}), backoff_min_s=5)
    throttled.r.step()
    assert throttled.r.wait == 900 + 900 // 4  # a floor plus jitter (rnd 0.5: a quarter)
    assert throttled.r.due_in() == throttled.r.wait + 1


def test_every_transient_failure_backs_off_and_keeps_the_token():
    failures = [OSError("timed out"), ValueError("tls"), problem(500), problem(429),
                problem(423), problem(302), (201, {}, b"not json"),
                (200, {}, b'{"registrationToken": ""}'), MemoryError()]
    rig = Rig(*failures, rnd=0.0)
    rig.r.step()
    for _ in failures[1:]:
        assert rig.r.state == BACKOFF and rig.r.due_in() >= 5
        rig.run_until_due()
    assert rig.stored().token == tok(0) and rig.r.token == tok(0)
    assert rig.r.counts["failures"] == len(failures)


def test_success_resets_backoff():
    rig = Rig(problem(503), problem(503), issued(tok(1)), problem(503), rnd=0.0)
    rig.r.step()
    rig.run_until_due()
    rig.run_until_due()
    assert rig.r.state == HEALTHY
    rig.run_until_due()
    assert rig.r.wait == 5 and rig.r.due_in() == 6


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


def test_untrusted_clock_refreshes_and_learns_time_from_date_header():
    clock = VirtualClock(t=946684800 + 100, trusted=False)  # a cold ESP32 without NTP
    fs = MemFS()
    Store(fs).commit(Record(tok(1), T0 + DAY, T0 + DAY // 2, "-"))
    rig = Rig(issued(tok(2), iso(T0 + 2 * DAY), headers={"date": "Fri, 15 Jan 2027 08:00:00 GMT"}),
              fs=fs, clock=clock)
    assert rig.r.due_in() == 0
    rig.r.step()
    assert clock.trusted and clock.now() == T0
    assert [x for x in rig.lines if "Date header" in x]
    assert DAY <= rig.r.due_in() <= 2 * DAY - 600  # scheduled on the server's time


def test_force_only_when_healthy():
    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + DAY)))
    rig.r.step()
    woken = []
    rig.r.wake = lambda: woken.append(1)
    assert rig.r.force() is True and rig.r.due_in() == 0 and woken
    rig.r.step()
    assert rig.r.token == tok(2)


def test_callbacks_and_status_snapshot():
    rig = Rig(problem(503), issued(tok(1), iso(T0 + DAY)))
    tokens, states = [], []
    rig.r.on_token(lambda t, exp: tokens.append((t, exp)))
    rig.r.on_state(lambda s, why: states.append(s))
    rig.r.step()
    st = rig.r.status()
    assert st["state"] == BACKOFF and "503" in st["last_error"]
    assert st["counts"]["failures"] == 1 and st["next_attempt"] == rig.r.next_at
    rig.run_until_due()
    assert tokens == [(tok(1), T0 + DAY)]
    assert states == [BACKOFF, HEALTHY]
    assert rig.r.status()["last_error"] is None


def test_server_sending_an_expired_token_does_not_spin():
    rig = Rig(issued(tok(1), iso(T0 - 10)), backoff_min_s=30)
    rig.r.step()
    assert rig.r.due_in() >= 30


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
    saved, next_at = rig.r.suspend(), rig.r.next_at
    assert rig.r.state == BACKOFF and rig.r.wait == 20
    again = rig.restart(problem(503))  # deep sleep reboots into main.py
    assert again.r.state == HEALTHY  # the store alone would retry at once
    again.r.resume(saved)
    assert again.r.state == BACKOFF and again.r.next_at == next_at
    again.run_until_due()
    assert again.r.wait == 80  # the backoff kept growing


def test_resume_ignores_junk():
    rig = Rig(issued(tok(1), iso(T0 + DAY)))
    rig.r.step()
    due = rig.r.next_at
    for junk in (None, b"", b"garbage", b"\xff\xfe", b"healthy x 0", b"provision 5 0"):
        rig.r.resume(junk)
        assert rig.r.state == HEALTHY and rig.r.next_at == due


def test_timer_wake_keeps_the_boot_delay_already_drawn():
    rig = Rig(issued(tok(1), iso(T0 + DAY)), issued(tok(2), iso(T0 + 2 * DAY)))
    rig.r.step()
    rig.clock.t = T0 + DAY - 1000  # off through the refresh point: a boot delay is drawn
    rig.rnd = 0.9
    first = rig.restart()
    saved, wake_at = first.r.suspend(), first.r.next_at
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
    rig.clock.t = rig.r.next_at  # the scheduled refresh, 10-ish minutes before expiry
    for _ in range(8):
        rig.r.step()
        assert rig.r.state == BACKOFF
        left = T0 + 1000 - rig.clock.now()
        if left > 60 + 12:
            assert rig.r.next_at <= T0 + 1000 - 60  # the expiry margin, not the 3600 cap
        rig.clock.t = rig.r.next_at
    held = Rig(problem(403), backoff_max_s=600, rnd=0.5)
    held.r.step()
    assert held.r.state == FORBIDDEN and held.r.due_in() == 600 + 150 + 1
