from regtoken.policy import days, http_date, rfc3339

from cases.util import raises


def test_both_reference_forms():
    assert rfc3339("2024-11-28T14:03:07.316Z") == 1732802587
    assert rfc3339("2021-11-12T14:00:00+00:00") == 1636725600


def test_offsets_move_to_utc():
    assert rfc3339("2021-11-12T16:00:00+02:00") == 1636725600
    assert rfc3339("2021-11-12T09:30:00-04:30") == 1636725600
    assert rfc3339("2021-11-12T14:00:00-00:00") == 1636725600


def test_fractions_of_any_length_are_dropped():
    for frac in ("", ".3", ".316", ".316227", ".123456789", ".1234567890123", "." + "9" * 60):
        assert rfc3339("2024-11-28T14:03:07%sZ" % frac) == 1732802587
        assert rfc3339("2024-11-28T16:03:07%s+02:00" % frac) == 1732802587


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


def test_fields_out_of_range_are_refused():
    assert rfc3339("2024-12-31T23:59:60Z") == rfc3339("2025-01-01T00:00:00Z")  # leap second
    for s in ("2024-00-28T14:03:07Z", "2024-11-00T14:03:07Z", "2024-11-32T14:03:07Z",
              "2024-11-28T24:00:00Z", "2024-11-28T14:60:07Z", "2024-11-28T14:03:61Z",
              "2024-11-28T14:03:07+24:00", "2024-11-28T14:03:07-01:60"):
        raises(ValueError, rfc3339, s)


def test_a_day_past_its_months_end_is_refused():
    # not moved into the next month: a server that says Feb 30 says nothing
    for s in ("2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
              "2024-04-31T00:00:00Z", "2024-06-31T00:00:00Z", "2024-09-31T00:00:00Z",
              "2024-11-31T00:00:00Z"):
        raises(ValueError, rfc3339, s)
    lengths = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 2024, a leap year
    for m, n in enumerate(lengths, 1):
        last = rfc3339("2024-%02d-%02dT00:00:00Z" % (m, n))
        assert rfc3339("2024-%02d-01T00:00:00Z" % (m % 12 + 1)) - last == 86400 or m == 12
    assert rfc3339("2000-02-29T12:00:00+01:00") == 951822000
    assert rfc3339("2024-12-31T23:59:59Z") + 1 == rfc3339("2025-01-01T00:00:00Z")


def test_separators_and_digits_are_exact():
    for s in ("2024/11/28T14:03:07Z", "2024-11-28X14:03:07Z", "2024-11-28T14-03-07Z",
              "2024-11-28T14:03:07,5Z", "2024-11-28T14:03:07+01-00", "2024-11-28T14:03:07.5",
              "2024-11-28T14:03:07+01:00Z", "2024-11-28T14:03:07 Z", " 2024-11-28T14:03:07Z",
              "\uff12024-11-28T14:03:07Z", "2024-11-28T14:03:0\u0667Z", "2024-1a-28T14:03:07Z",
              "+024-11-28T14:03:07Z", "2024-11-28T14:03:07.3\u0663Z", "2024-11-28\x0014:03:07Z",
              "2024-11-28T14:03:07*01:00", "2024-11-28T14:03:07\x1a", "2024-11-28T14:03:07.5:"):
        raises(ValueError, rfc3339, s)


def test_epoch_independent_day_count():
    assert days(1970, 1, 1) == 0
    assert days(2000, 1, 1) * 86400 == 946684800  # the ESP32 epoch
    assert days(2000, 3, 1) - days(2000, 2, 28) == 2  # 2000 is a leap year
    assert days(2100, 3, 1) - days(2100, 2, 28) == 1  # 2100 is not


def test_http_date():
    assert http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777
    assert http_date("Thu, 28 Nov 2024 14:03:07 GMT") == 1732802587
    assert http_date("Sat, 01 Jan 2000 00:00:00 GMT") == 946684800
    assert http_date("Fri, 31 Dec 1999 23:59:59 GMT") == 946684799
    assert http_date("garbage") is None
    assert http_date(None) is None
    assert http_date(784111777) is None


def test_http_date_refuses_what_is_no_form_of_it():
    for s in ("Sun, 06 Nov 1994 08:49:37", "Sun, 06 Nov 1994 08:49:37 UTC",
              "Sun, 06 Nov 1994 08:49:37 GMT junk", "Sunday, 06-Nov-94 08:49:37 EST",
              "Sun, 06 Nox 1994 08:49:37 GMT", "Sun, 06 ovN 1994 08:49:37 GMT",
              "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 00 Nov 1994 08:49:37 GMT",
              "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49 GMT",
              "Sun, 06 Nov 1994 08-49-37 GMT", "Sun Nov 31 08:49:37 1994",
              "Sun Nov  6 08:49 1994", "Sun Nov  6 08:49:37 1994 GMT", "Sun Nov  6 1994",
              "Sun, 06 Nov 1994T08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37", ""):
        assert http_date(s) is None, s


def test_http_date_takes_the_obsolete_forms_too():
    # RFC 9110 5.6.7: a recipient MUST accept all three forms; a Retry-After of 400 s in
    # RFC 850's form was read as none, and a 412's fleet came back in 2 s
    for s in ("Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
              "Sun, 6 Nov 1994 08:49:37 GMT", "Sun 06 Nov 1994 08:49:37 GMT",
              "Sun, 06 Nov 94 08:49:37 GMT"):  # and what a sender's slip makes of them
        assert http_date(s) == 784111777, s
    assert http_date("Thursday, 28-Nov-24 14:03:07 GMT") == 1732802587  # 2024, not 1924
    assert http_date("Thu Nov 28 14:03:07 2024") == 1732802587
    assert http_date("Wednesday, 31-Dec-69 23:59:59 GMT") == 3155759999  # 2069
