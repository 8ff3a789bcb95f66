# The clock and the server's Date (README "Time"): an untrusted clock, the clock floor, a
# Date that sets the clock or moves a token's expiry onto it, tokens dead on arrival or of
# a few seconds. The refresher rig of test_refresher.py; both tiers and the emulated Pico.
from fakes.clock import T0, VirtualClock
from fakes.memfs import MemFS
from fakes.net import FakeHTTP, issued, problem
from regtoken import BACKOFF, HEALTHY, Refresher, validate
from regtoken.store import Record, Store

from cases.test_refresher import DAY, Rig, iso
from cases.util import tok


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



def test_an_untrusted_clock_years_ahead_is_set_by_a_date_by_which_the_token_is_alive():
    # an RTC run years ahead, no NTP: the Date was refused (more than a day before the
    # clock's own time), expires_in() said -63,000,000 and it rotated on the backoff for ever
    clock = VirtualClock(t=T0 + 2 * 365 * DAY, trusted=False)
    date = "Fri, 15 Jan 2027 08:00:00 GMT"  # T0
    rig = Rig(issued(tok(1), iso(T0 + DAY), headers={"date": date}), clock=clock)
    rig.r.step()
    assert clock.trusted and clock.now() == T0 and rig.r.token == tok(1)
    assert rig.r.state == HEALTHY and DAY // 2 <= rig.r.due_in() <= DAY - 600
    assert rig.r.expires_in() == DAY


def test_a_clock_edge_with_the_documented_three_takes_the_clock_floor():
    # README: a clock edge is now(), trusted and set(unix). The floor called set(t, False),
    # so such a clock, untrusted and behind the release (a board without NTP), made every
    # boot raise TypeError out of regtoken.open()
    from regtoken.policy import RELEASED

    class Rtc:
        trusted = False
        t = RELEASED - 10 * 365 * DAY  # an RTC near its epoch

        def now(self):
            return self.t

        def set(self, unix):
            self.t = unix
            self.trusted = True  # the natural reading: a clock that was set is right

    rtc = Rtc()
    cfg = validate({"api_url": "http://x", "initial_token": tok(0), "store_dir": ""})
    r = Refresher(cfg, transport=FakeHTTP(), store=Store(MemFS()), clock=rtc,
                  log=lambda line: None)
    assert rtc.t == RELEASED and not rtc.trusted  # moved forward, and still not trusted
    assert r.token == tok(0) and r.state == HEALTHY


def test_an_import_on_a_clock_near_its_epoch_is_stamped_after_the_floor():
    # the floor came after the import: its record was committed at the RTC's cold-boot
    # time (2000 on an ESP32, 2021 on rp2), and scheduled at half a "lifetime" from then
    # (2020), so a boot cut short before the first refresh was overdue at the next one
    from regtoken.policy import RELEASED

    for rtc in (946684800, 1609459200):  # 2000-01-01, 2021-01-01
        fs = MemFS()
        exp = RELEASED + 60 * DAY
        cfg = validate({"api_url": "http://x", "initial_token": tok(0),
                        "initial_expiration": iso(exp)})
        clock = VirtualClock(t=rtc, trusted=False)
        r = Refresher(cfg, transport=FakeHTTP(), store=Store(fs), clock=clock,
                      log=lambda line: None)
        assert clock.t == RELEASED and r.token == tok(0)
        rec = Store(fs).load()
        assert rec.at == RELEASED, (rtc, rec.at)
        assert RELEASED + 30 * DAY <= rec.due < exp, (rtc, rec.due - RELEASED)


def test_a_date_before_the_clock_floor_or_decades_ahead_sets_no_clock():
    # a server's clock gone wrong: 1970 is before what the device knows has passed (the
    # clock floor moved it to the release date), 9999 is no time at all; the next good
    # Date sets it, and one an hour before the floor would too (an RTC that ran fast)
    from regtoken.policy import RELEASED

    clock = VirtualClock(t=946684800, trusted=False)  # a cold ESP32 without NTP
    dates = ("Thu, 01 Jan 1970 00:00:01 GMT", "Fri, 31 Dec 9999 23:59:59 GMT",
             "Fri, 15 Jan 2027 08:00:00 GMT")
    assert RELEASED == 1796083200  # the hour before it: 2026-11-30 23:00
    early = Rig(issued(tok(1), iso(T0), headers={"date": "Mon, 30 Nov 2026 23:00:00 GMT"}),
                clock=VirtualClock(t=946684800, trusted=False))
    early.r.step()
    assert early.clock.trusted and early.clock.t == RELEASED - 3600
    rig = Rig(*[issued(tok(i + 1), iso(T0 + DAY), headers={"date": d})
                for i, d in enumerate(dates)], clock=clock)
    assert clock.t == RELEASED
    for i in range(2):
        rig.run_until_due()
        assert rig.r.token == tok(i + 1)  # the token is kept all the same
        assert not clock.trusted and RELEASED <= clock.t < RELEASED + DAY
    assert not [x for x in rig.lines if "Date header" in x]
    rig.run_until_due()
    assert clock.trusted and clock.t == T0 and rig.r.token == tok(3)


def test_without_a_clock_the_next_refresh_is_a_growing_wait_not_the_schedule():
    # no NTP and no Date: now is only the clock floor, maybe days behind, and a schedule
    # placed on it could fall after the token's real expiry: a wait like a backoff instead
    clock = VirtualClock(t=946684800, trusted=False)
    rig = Rig(*[issued(tok(i + 1), iso(T0 + DAY)) for i in range(6)], clock=clock,
              backoff_min_s=5, backoff_max_s=240, rnd=0.0)
    waits = []
    for _ in range(6):
        rig.run_until_due()
        assert rig.r.state == HEALTHY and rig.r.expires == T0 + DAY
        waits.append(rig.r.due_in())
    assert waits == [6, 21, 81, 241, 241, 241], waits  # at least doubles, to the cap
    assert rig.stored().token == tok(6)


def test_a_token_dead_on_arrival_does_not_make_the_device_spin():
    # the server's clock and a trusted one disagree: each new token has expired already.
    # Kept (the server rotated: the parent is in its grace period), and the next refresh
    # waits like a backoff, not backoff_min_s every time
    dead = [issued(tok(i + 1), iso(T0 - 3600)) for i in range(5)]
    rig = Rig(*dead, issued(tok(9), iso(T0 + 3 * DAY)), backoff_min_s=5, backoff_max_s=240,
              rnd=0.0)
    waits = []
    for _ in range(5):
        rig.run_until_due()
        assert rig.r.state == HEALTHY
        waits.append(rig.r.due_in())
    assert waits == [6, 21, 81, 241, 241], waits
    assert rig.stored().token == tok(5)
    rig.clock.advance(241)
    rig.r.step()  # a token with a life again: its schedule, and the waits start over
    assert rig.r.token == tok(9) and DAY <= rig.r.due_in() and rig.r._wait == 0


def test_a_clock_by_which_new_tokens_are_dead_takes_the_servers_date():
    # a clock set years ahead (a Date gone wrong was taken, or NTP lied): each new token is
    # dead on arrival by it. The server's clock decides its tokens: its Date sets ours when
    # by it the token is alive, and the schedule follows. A Date before this release, or
    # one by which the token is dead too, sets nothing (the waits grow instead)
    ahead = VirtualClock(t=T0 + 5 * 365 * DAY)
    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    rig = Rig(issued(tok(1), iso(T0 + DAY), headers=date), clock=ahead, rnd=0.0)
    rig.r.step()
    assert ahead.t == T0 and rig.r.token == tok(1)
    assert DAY // 2 <= rig.r.due_in() < DAY  # its schedule, not a backoff wait
    assert [x for x in rig.lines if "Date header" in x]
    for d in ("Thu, 01 Jan 1970 00:00:01 GMT", "Sat, 16 Jan 2027 08:00:00 GMT"):
        wrong = Rig(issued(tok(1), iso(T0 + 3600), headers={"date": d}),
                    clock=VirtualClock(t=T0 + 7200), rnd=0.0, backoff_min_s=5)
        wrong.r.step()
        assert wrong.clock.t == T0 + 7200 and wrong.r.due_in() == 6, d

def test_a_trusted_clock_off_from_the_servers_takes_the_tokens_expiry_onto_its_own():
    # NTP set the clock, but it disagrees with the server's, which decides its tokens: a
    # clock two hours behind would refresh an hour-long token an hour after it expired (a
    # dead device), one 20 min ahead before half its lifetime. By the answer's Date the
    # expiry is moved onto our clock: the schedule, expires_in() and the record (a restart
    # keeps it) all say the time the token has; our clock is not moved. Without a Date,
    # with one by which the token is dead, or a second or two apart (the Date's resolution,
    # the answer's time), ours decides
    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    for off in (-7200, 1200, 0, -3):
        rig = Rig(issued(tok(1), iso(T0 + 3600), headers=date), clock=VirtualClock(t=T0 + off),
                  rnd=0.0)
        rig.r.step()
        assert rig.r.due_in() == 1800, off  # half the lifetime, by the server's clock
        assert rig.r.expires_in() == 3600 and rig.r.expires == T0 + off + 3600, off
        assert rig.http.presented() == tok(0) and rig.stored().due == T0 + off + 1800
        assert rig.stored().exp == rig.r.expires and rig.restart().r.due_in() == 1800
        assert rig.clock.t == T0 + off and rig.clock.trusted
        assert not [x for x in rig.lines if "Date header" in x]
    for off in (-2, 1, 2):  # a second or two apart: the server's expiry as it is
        rig = Rig(issued(tok(1), iso(T0 + 3600), headers=date), clock=VirtualClock(t=T0 + off))
        rig.r.step()
        assert rig.r.expires == T0 + 3600, off
    for headers in ({}, {"date": "Sat, 16 Jan 2027 08:00:00 GMT"}):  # none; T0 + DAY
        rig = Rig(issued(tok(1), iso(T0 + 3600), headers=headers),
                  clock=VirtualClock(t=T0 - 7200), rnd=0.0)
        rig.r.step()
        assert rig.r.due_in() == 5400 and rig.clock.t == T0 - 7200, headers  # ours
        assert rig.r.expires == T0 + 3600


def test_a_backoff_ends_before_the_expiry_the_servers_date_gave():
    # two hours behind the server, a 20-min token refreshed at 80 % of its life, then
    # refused (503) again and again: by the server's clock a few minutes are left, not two
    # hours, so the waits end half-way to its expiry minus a minute, as they would with
    # the clocks agreeing, and the last attempts still come before it
    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0
    rig = Rig(issued(tok(1), iso(T0 + 1200), headers=date), *[problem(503)] * 4,
              clock=VirtualClock(t=T0 - 7200), rnd=0.75, backoff_min_s=5)
    rig.r.step()
    assert rig.r.expires_in() == 1200
    bound = []
    for _ in range(4):
        rig.run_until_due()
        left = T0 + 1200 - (rig.clock.t + 7200)  # by the server's clock
        assert rig.r.state == BACKOFF and rig.r.expires_in() == left
        w = rig.r.due_in() - 1  # +1 for the second now() drops
        if w > 5:
            bound.append(w <= (left - 60) // 2)
        assert rig.clock.t + 7200 + w < T0 + 1200
    assert bound[-2:] == [True, True], bound  # the bound took hold


def test_server_sending_an_expired_token_does_not_spin():
    rig = Rig(issued(tok(1), iso(T0 - 10)), backoff_min_s=30)
    rig.r.step()
    assert rig.r.due_in() >= 30


def test_a_token_dead_by_the_servers_date_and_ours_is_refused_and_the_parent_recovers():
    # both clocks agree the new token has expired (a server's bug): presented, it would
    # get a 410, a dead device. Not committed: the parent, in its grace period, is
    # presented again and its 200 brings a live token
    date = {"date": "Fri, 15 Jan 2027 08:00:00 GMT"}  # T0, the virtual clock's time too
    for status in (201, 200):
        rig = Rig(issued(tok(1), iso(T0 - 60), status, date),
                  issued(tok(2), iso(T0 + DAY), 200, date), rnd=0.0)
        rig.r.step()
        assert rig.r.state == BACKOFF and rig.r.status()["reason"] == "garbage", status
        assert rig.r.token == tok(0) and rig.stored().token == tok(0)
        assert [x for x in rig.lines if "%d: token expired already" % status in x]
        rig.run_until_due()
        assert rig.http.presented() == tok(0) and rig.r.token == tok(2)
        assert rig.r.state == HEALTHY and rig.stored().token == tok(2)


def test_a_token_of_a_few_seconds_is_refreshed_before_it_expires():
    # the contract: after half its lifetime, at 80 % at the latest. backoff_min_s (5 by
    # default) is no floor for a schedule: a 5 s token refreshed 5 s on got a 410
    for life in (2, 3, 5, 8):
        for rnd in (0.0, 0.99):
            rig = Rig(issued(tok(1), iso(T0 + life)), rnd=rnd)
            rig.r.step()
            assert rig.r.state == HEALTHY and rig.r.token == tok(1)
            # half its life in whole seconds rounded up: a 3 s token at 2 s, not at 1
            assert (life + 1) // 2 <= rig.r.due_in() <= max(1, life * 4 // 5), (life, rnd)


def test_a_token_expiring_past_the_ports_gmtime_keeps_its_log_line():
    # rp2's gmtime takes 32 bits: an expiry from 2106 on raised OverflowError inside the
    # rotation's log line, which went unsaid (and no state line either: still healthy)
    from regtoken import policy

    class Gmtime32:
        def gmtime(self, t):
            raise OverflowError("overflow converting long int to machine word")

    saved = policy.time
    policy.time = Gmtime32()
    try:
        rig = Rig(issued(tok(1), "9999-12-31T23:59:59Z"))
        rig.r.step()
    finally:
        policy.time = saved
    assert rig.r.token == tok(1) and rig.r.expires == 253402300799
    assert [x for x in rig.lines if "committed" in x and "expires @253402300799" in x]
