from regtoken.dates import days, http_date, rfc3339

from cases.util import raises


def test_both_reference_forms():
    assert rfc3339("2024-11-28T14:03:07.316Z") == 1732802587
    assert rfc3339("2021-11-12T14:00:00+00:00") == 1636725600


def test_offsets_move_to_utc():
    assert rfc3339("2021-11-12T16:00:00+02:00") == 1636725600
    assert rfc3339("2021-11-12T09:30:00-04:30") == 1636725600
    assert rfc3339("2021-11-12T14:00:00-00:00") == 1636725600


def test_fractions_of_any_length_are_dropped():
    for frac in ("", ".3", ".316", ".316227", ".123456789", ".1234567890123"):
        assert rfc3339("2024-11-28T14:03:07%sZ" % frac) == 1732802587


def test_lower_case_and_space_separator():
    assert rfc3339("2024-11-28t14:03:07z") == 1732802587
    assert rfc3339("2024-11-28 14:03:07Z") == 1732802587


def test_null_is_never():
    assert rfc3339(None) is None


def test_malformed_is_refused():
    bad = ["", "yesterday", "2024-11-28", "2024-11-28T14:03:07", "2024-13-28T14:03:07Z",
           "2024-11-28T25:03:07Z", "2024-11-28T14:03:07.Z", "2024-11-28T14:03:07+0100",
           "2024-11-28T14:03:07+01", "2024-11-28T14:03:07ZZ", "20x4-11-28T14:03:07Z",
           "2024-11-28T14:03:07.316Zjunk", 1732802587, ["2024"]]
    for s in bad:
        raises(ValueError, rfc3339, s)


def test_epoch_independent_day_count():
    assert days(1970, 1, 1) == 0
    assert days(2000, 1, 1) * 86400 == 946684800  # the ESP32 epoch
    assert days(2000, 3, 1) - days(2000, 2, 28) == 2  # 2000 is a leap year
    assert days(2100, 3, 1) - days(2100, 2, 28) == 1  # 2100 is not


def test_http_date():
    assert http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert http_date("Thu, 28 Nov 2024 14:03:07 GMT") == 1732802587
    assert http_date("garbage") is None
    assert http_date(None) is None
