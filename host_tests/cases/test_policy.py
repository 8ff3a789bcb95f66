from regtoken import policy

HOUR = 3600


def test_window_long_lifetime_ends_ten_minutes_before_expiry():
    early, late = policy.refresh_window(0, 24 * HOUR)
    assert early == 12 * HOUR
    assert late == 24 * HOUR - 600


def test_window_short_lifetime_ends_at_80_percent():
    early, late = policy.refresh_window(1000, 1000 + 100)
    assert (early, late) == (1050, 1080)


def test_refresh_point_stays_in_window_for_any_jitter():
    for life in (60, 3000, 3001, 86400, 30 * 86400):
        early, late = policy.refresh_window(0, life)
        assert 0 < early <= late < life
        for rnd in (0.0, 0.25, 0.5, 0.999999):
            t = policy.refresh_at(0, life, rnd)
            assert early <= t <= late


def test_jitter_spreads_the_fleet():
    points = set(policy.refresh_at(0, 86400, i / 10) for i in range(10))
    assert len(points) == 10


def test_boot_delay_at_most_quarter_of_remaining_and_ten_minutes():
    assert policy.boot_delay(0, 100, 0.999) <= 25
    assert policy.boot_delay(0, 86400, 0.999) <= 600
    assert policy.boot_delay(0, 86400, 0.0) == 0
    assert policy.boot_delay(500, 100, 0.9) == 0  # already expired: no point waiting


def test_backoff_starts_at_min_and_at_least_doubles_up_to_max():
    for rnd in (0.0, 0.5, 0.99):
        wait, waits = 0, []
        for _ in range(20):
            wait = policy.backoff(wait, 5, 3600, rnd)
            waits.append(wait)
        assert 5 <= waits[0] <= 8
        for a, b in zip(waits, waits[1:]):
            assert b >= min(2 * a, 3600)
            assert b <= 3600
        assert waits[-1] == 3600


def test_jitter_even_at_a_one_second_minimum():
    assert len(set(policy.backoff(0, 1, 60, r / 10) for r in range(10))) > 1


def test_retry_after_is_a_floor():
    assert policy.backoff(0, 5, 3600, 0.0, retry_after=120) == 120
    assert policy.backoff(0, 5, 60, 0.0, retry_after=7200) == 7200
    assert policy.backoff(0, 5, 3600, 0.0, retry_after=1) == 5
