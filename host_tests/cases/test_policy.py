from regtoken import policy

HOUR = 3600


def stream(n, seed=1):
    """n reproducible numbers in [0, 1), the same under CPython and MicroPython, one at a
    time (a list of 10,000 floats does not fit a Pico's heap)."""
    x = seed
    for _ in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        yield x / 0x80000000


def rnds(n, seed=1):
    return list(stream(n, seed))


def failing(lo, hi, rs, left0=None, retry_after=0):
    """The waits of a device that fails every attempt, its token `left0` seconds from
    expiry at the first failure: [(seconds left when scheduled, wait), ...]."""
    wait, t, out = 0, 0, []
    for r in rs:
        left = None if left0 is None else left0 - t
        wait = policy.backoff(wait, lo, hi, r, retry_after, left)
        out.append((left, wait))
        t += wait + 1  # the refresher's `_after`: never early by a second's fraction
    return out


def window(issued, exp):
    """(earliest, latest) refresh time: refresh_at is linear in its random number."""
    return policy.refresh_at(issued, exp, 0), policy.refresh_at(issued, exp, 1)


def test_window_long_lifetime_ends_ten_minutes_before_expiry():
    early, late = window(0, 24 * HOUR)
    assert early == 12 * HOUR
    assert late == 24 * HOUR - 600


def test_window_ends_ten_minutes_before_expiry_whenever_that_is_past_half_life():
    # device-contract.md: at the latest 10 minutes before expiry when the lifetime allows
    for life in (1201, 1800, 2400, 3000):
        early, late = window(0, life)
        assert (early, late) == ((life + 1) // 2, life - 600)  # half-life, rounded up
    assert window(0, 1200) == (600, 960)  # 10 minutes before is half-life: 80 % instead


def test_window_short_lifetime_ends_at_80_percent():
    early, late = window(1000, 1000 + 100)
    assert (early, late) == (1050, 1080)


def test_refresh_point_stays_in_window_for_any_jitter():
    for life in (60, 3000, 3001, 86400, 30 * 86400):
        early, late = window(0, life)
        assert 0 < early <= late < life
        for rnd in (0.0, 0.25, 0.5, 0.999999):
            t = policy.refresh_at(0, life, rnd)
            assert early <= t <= late


def test_jitter_spreads_the_fleet():
    points = set(policy.refresh_at(0, 86400, i / 10) for i in range(10))
    assert len(points) == 10


def test_boot_delay_spreads_at_most_five_minutes_and_ends_a_margin_before_expiry():
    for left in (4 * HOUR, 7 * 60, 200, 121, 100, 30, 1):
        for rnd in (0.0, 0.5, 0.999999):
            d = policy.boot_delay(1000, 1000 + left, rnd)
            assert 0 <= d <= policy.SPREAD
            assert d <= max(left - policy.MARGIN, left // 2) < left  # never past expiry
    assert policy.boot_delay(0, 4 * HOUR, 0.999) >= policy.SPREAD - 1
    assert policy.boot_delay(0, 86400, 0.0) == 0
    assert policy.boot_delay(500, 100, 0.9) == 0  # already expired: no point waiting


def test_a_fleet_booting_together_puts_at_most_one_percent_in_any_second():
    n = 10000
    for left in (4 * HOUR, 7 * 60, 4 * 60):
        per_second = {}
        for i, r in enumerate(stream(n, seed=left)):
            t = i % 5 + policy.boot_delay(0, left, r)  # powered up within 5 s
            per_second[t] = per_second.get(t, 0) + 1
        assert max(per_second.values()) <= n // 100, (left, max(per_second.values()))
        assert max(per_second) < left


def test_backoff_starts_at_min_and_at_least_doubles_up_to_max():
    for seed in (1, 2, 3):
        waits = [w for _, w in failing(5, 3600, rnds(20, seed))]
        assert 5 <= waits[0] <= 10
        for a, b in zip(waits, waits[1:]):
            assert b >= min(2 * a, 3600)  # the contract: doubles up to the cap
            assert b <= 3600
        assert waits[-10:] == [3600] * 10


def test_backoff_does_not_compound():
    # the k-th wait stays in its band whatever the earlier draws were: [lo 4^k, 2 lo 4^k]
    for seed in (4, 5):
        for k, (_, w) in enumerate(failing(5, 10**9, rnds(8, seed))):
            assert 5 * 4 ** k <= w <= 2 * 5 * 4 ** k


def test_backoff_jitters_every_wait_on_the_way_to_the_cap_and_then_holds_it():
    for k in range(3):  # 5-10, 20-40, 80-160; the next band (320-640) is past the cap
        first = failing(5, 300, [0.5] * k)
        prev = first[-1][1] if first else 0
        waits = set(policy.backoff(prev, 5, 300, r) for r in rnds(50, k + 7))
        assert len(waits) > 3, (k, waits)
    assert set(policy.backoff(300, 5, 300, r) for r in rnds(200)) == {300}
    # devices caught together keep the phases they drew on the way up
    rs = rnds(8 * 50, 3)
    ends = [sum(w + 1 for _, w in failing(5, 300, rs[i * 8:i * 8 + 8])) for i in range(50)]
    assert max(ends) - min(ends) > 60  # the bands' widths add up: 5 + 20 + 80 s at most


def test_jitter_even_at_a_one_second_minimum():
    assert len(set(policy.backoff(0, 1, 60, r / 10) for r in range(10))) > 1


def test_backoff_never_ends_past_expiry_minus_margin_while_valid():
    m = policy.MARGIN
    for left0 in (30 * 60, 3 * HOUR, 25 * HOUR):
        for seed in (1, 2):
            for left, w in failing(5, 3600, rnds(60, seed), left0=left0):
                if left - m >= 2 * 5 + 2:
                    assert w + 1 <= left - m, (left0, left, w)
                assert w >= 5  # never below backoff_min_s


def test_retries_get_denser_as_expiry_nears():
    steps = [s for s in failing(5, 3600, rnds(40, 9), left0=2 * HOUR) if s[0] > 0]
    near = [w for left, w in steps if left < 600]
    far = [w for left, w in steps[4:] if left > 3000]  # past the first fast tries
    assert near and far and max(near) < min(far)
    assert len(near) >= 4  # several tries in the last ten minutes
    # a server back at any moment before the margin meets a try before expiry - MARGIN
    times, t = [], 0
    for _, w in steps:
        t += w + 1
        times.append(t)
    for back in range(0, 2 * HOUR - policy.MARGIN - 20, 7):
        assert [x for x in times if back <= x <= 2 * HOUR - policy.MARGIN], back


def test_expiry_does_not_shorten_a_wait_below_min():
    assert policy.backoff(0, 30, 300, 0.5, left=100) == 30  # half-way to the margin: 20
    assert policy.backoff(300, 30, 300, 0.0, left=-5) == 300  # expired: plain backoff


def test_in_its_last_margin_a_token_s_waits_double_as_the_contract_says():
    # a token of a minute or two (a test's, a short-lived deployment's) is inside its last
    # MARGIN from its first failure: no wait of backoff_min_s fits before expiry - MARGIN,
    # so they grow as after expiry, not all backoff_min_s
    for left0 in (policy.MARGIN + 2, 40, 1):
        for seed in (1, 2):
            waits = [w for _, w in failing(2, 30, rnds(6, seed), left0=left0)]
            assert 2 <= waits[0] <= 4, waits
            for a, b in zip(waits, waits[1:]):
                assert b >= min(2 * a, 30), (left0, waits)
    # past that point the waits still end before it (densest: backoff_min_s)
    assert policy.backoff(0, 2, 30, 0.9, left=policy.MARGIN + 3) == 2


def test_retry_after_is_a_floor_plus_jitter():
    assert policy.backoff(0, 5, 3600, 0.0, retry_after=120) == 120
    assert policy.backoff(0, 5, 60, 0.0, retry_after=7200) == 7200  # even above the cap
    assert policy.backoff(0, 5, 3600, 0.0, retry_after=1) == 5
    waits = [policy.backoff(0, 5, 3600, r, retry_after=30) for r in rnds(100)]
    assert min(waits) >= 30 and max(waits) <= 45
    assert len(set(waits)) > 10  # a fleet told "30" does not return in one second


def test_floor_adds_up_to_half_again():
    for t in (1, 30, 300, 7200):
        got = [policy.floor(t, r) for r in rnds(50, t)]
        assert min(got) >= t and max(got) <= t + t // 2
    assert len(set(policy.floor(300, r) for r in rnds(50))) > 10


def test_a_wait_at_least_doubles_the_last_even_one_a_retry_after_set():
    # device-contract.md: the wait at least doubles with each further failure, up to the cap;
    # a Retry-After floor (plus jitter) can leave the previous wait between two bands
    for prev in range(1, 2000, 7):
        for rnd in (0.0, 0.5, 0.999):
            w = policy.backoff(prev, 5, 3600, rnd)
            assert w >= min(2 * prev, 3600), (prev, rnd, w)
