from regtoken import ConfigError, validate

from cases.util import raises

BASE = {"api_url": "https://api.example.com", "ca_file": "ca.der"}


def cfg(**kw):
    c = dict(BASE)
    c.update(kw)
    return c


def refused(key, **kw):
    e = raises(ConfigError, validate, cfg(**kw))
    assert "'%s'" % key in str(e), str(e)
    return str(e)


def test_defaults():
    c = validate(BASE)
    assert c["timeout_s"] == 15 and c["backoff_min_s"] == 5 and c["backoff_max_s"] == 240
    assert c["tls_verify"] is True and c["initial_token"] is None
    assert "initial_expiration" not in c  # absent means unknown: rotate at first boot


def test_backoffs_are_whole_seconds_rounded_up():
    # added to a time (~1.8e9), a float is a 32-bit port's single float, in steps of 128 s:
    # on rp2 a 403 hold of backoff_max_s 240.0 was 199 s after a restart, and a force()
    # loop with backoff_min_s 5.0 refreshed every second
    c = validate(cfg(backoff_min_s=2.5, backoff_max_s=240.0, timeout_s=2.5))
    assert (c["backoff_min_s"], c["backoff_max_s"]) == (3, 240)
    assert type(c["backoff_min_s"]) is int and type(c["backoff_max_s"]) is int
    assert c["timeout_s"] == 2.5  # milliseconds count there, and it is never added to a time
    assert validate(cfg(backoff_min_s=1, backoff_max_s=1.000001))["backoff_max_s"] == 2
    c = validate(cfg(backoff_min_s=5.5, backoff_max_s=5.7))  # each rounded, max >= min still
    assert (c["backoff_min_s"], c["backoff_max_s"]) == (6, 6)


def test_trailing_slash_dropped():
    assert validate(cfg(api_url="http://h:8080/"))["api_url"] == "http://h:8080"


def test_initial_expiration_parsed_or_null():
    assert validate(cfg(initial_expiration="2027-01-15T08:00:00Z"))["initial_expiration"] == \
        1800000000
    assert validate(cfg(initial_expiration=None))["initial_expiration"] is None


def test_each_bad_value_names_its_key():
    refused("api_url", api_url=None)
    refused("api_url", api_url="ftp://x")
    refused("api_url", api_url="https://")
    refused("api_url", api_url=42)
    refused("initial_token", initial_token="has space")
    refused("initial_token", initial_token="")
    refused("initial_token", initial_token=7)
    refused("provisioning_token", provisioning_token="a\r\nX-Evil: 1")
    refused("initial_expiration", initial_expiration="tomorrow")
    refused("tls_verify", tls_verify="false")
    refused("tls_verify", tls_verify=0)  # JSON 0/1 are numbers, not false/true
    refused("reprovision", reprovision=1)
    refused("ca_file", ca_file=3)
    refused("wifi", wifi="ssid")
    refused("wifi", wifi={"password": "x"})
    refused("timeout_s", timeout_s=0)
    refused("timeout_s", timeout_s="15")
    refused("timeout_s", timeout_s=True)
    refused("backoff_min_s", backoff_min_s=-1)
    refused("backoff_max_s", backoff_min_s=60, backoff_max_s=30)
    refused("transport", transport="curl")
    refused("sleep", sleep="hibernate")
    refused("led", led=2)
    # a board booted again for ever on these (KeyError: pin, ValueError: invalid pin)
    refused("led", led={})
    refused("led", led={"pin": 2.5})
    refused("led", led={"pin": 2, "active_high": 1})
    refused("led", led={"pin": 2, "timer": "0"})
    refused("led", led={"pin": 2, "colour": "red"})
    refused("wifi", wifi={"ssid": "", "password": "x"})  # "not configured" for ever
    refused("store_dir", store_dir=None)
    refused("bakoff_min_s", bakoff_min_s=5)


def test_https_needs_a_ca_or_an_explicit_opt_out():
    e = raises(ConfigError, validate, {"api_url": "https://api.example.com"})
    assert "'ca_file'" in str(e)
    assert validate({"api_url": "https://x", "tls_verify": False})["tls_verify"] is False
    assert validate({"api_url": "http://x"})["ca_file"] is None


def test_urequests_only_for_plain_http():
    refused("transport", transport="urequests")
    assert validate({"api_url": "http://x", "transport": "urequests"})["transport"] == "urequests"


def test_not_an_object():
    raises(ConfigError, validate, [BASE])
    raises(ConfigError, validate, None)


def test_comment_keys_allowed():
    assert validate(cfg(_comment="provisioned 2026-11-25"))


def test_ipv6_literals_accepted_and_broken_urls_refused():
    for url in ("http://[::1]:8080", "https://[2001:db8::1]/v1", "http://[::1]"):
        assert validate(cfg(api_url=url))["api_url"] == url
    for url in ("http://[::1:8080", "http://[::1]:80x0", "http://h:port", "http://:80",
                "http://h:99999", "http://h:65536", "http://h:0", "http://h:-1",
                "https://[::1]:70000/v1", "https://h/v1?x=1", "https://h/v1#top",
                "http://h?"):  # 99999 would reach port 34463; the call's path is appended
        refused("api_url", api_url=url)
    assert validate(cfg(api_url="http://h:65535"))["api_url"] == "http://h:65535"
    # a CR LF would write a header of its own into every request, a tab or a newline lands
    # in Host:, and int() reads "+9" and "1_0" as ports
    for url in ("https://h/v1\r\nX-Injected: 1", "https://h\tost:9", "https://h:9\n",
                "https://h:+9", "https://h:1_0", "https://h\x7f", "https://h:"):
        refused("api_url", api_url=url)
    assert validate(cfg(api_url="https://h:9/v1/x"))["api_url"] == "https://h:9/v1/x"
    # urequests cannot take an IPv6 literal: a config error, not an attempt failing forever
    e = raises(ConfigError, validate, {"api_url": "http://[::1]:8080", "transport": "urequests"})
    assert "'transport'" in str(e)


def test_errors_name_the_source():
    assert str(raises(ConfigError, validate, {"api_url": 1})).startswith("config: 'api_url'")
    assert str(raises(ConfigError, validate, {"api_url": 1}, "cfg.json")).startswith("cfg.json:")


def test_messages_say_in_few_words_what_the_value_must_be():
    # "<source>: '<key>' must be <what>": tools/bringup/provision.py reads the key and the rest
    for key, bad in (("tls_verify", 0), ("timeout_s", 0), ("sleep", "x"), ("device_id", "a b"),
                     ("bakoff_min_s", 5), ("initial_token", "a b"), ("wifi", {"ssid": 1})):
        msg = refused(key, **{key: bad})
        assert msg.startswith("config: '%s' must be " % key) and len(msg) < 80, msg
    assert refused("timeout_s", timeout_s=0).endswith("a number from 1 to 300")
    msg = refused("backoff_max_s", backoff_min_s=60, backoff_max_s=30)
    assert msg.endswith("from 60 to 604800")
    assert refused("sleep", sleep="x").endswith('"none" or "light" or "deep"')
    assert refused("reprovision", reprovision=1).endswith("true or false")
    assert "tls_verify false" in str(raises(ConfigError, validate, {"api_url": "https://x"}))


def test_only_an_https_config_keeps_the_room_wire_reserves_for_a_tls_context():
    # ~3 KB in one piece, reserved when wire is imported; boot.py frees it just before it
    # makes the TLS context. An http config has no use for it: freed by the check at once
    from regtoken import wire

    wire._room = bytearray(8)
    validate({"api_url": "https://h.example", "initial_token": "t", "tls_verify": False})
    assert wire._room is not None
    validate({"api_url": "http://h.example", "initial_token": "t"})
    assert wire._room is None


def test_a_config_file_too_big_bad_json_or_with_a_bom_is_a_config_error():
    # each read as bytes and bounded: no MemoryError on a huge file, no UnicodeError on bad
    # UTF-8, a hint for the BOM an editor may add; valid JSON of the wrong kind is named too
    # (2000 lists deep: too deep for CPython's parser, not for MicroPython's)
    import os

    from regtoken import load

    path = "regtoken-test-config-%d.json" % id(BASE)  # in the working folder: a Pico has no /tmp
    good = ('{"api_url": "http://h", "_note": "%s"}' % ("x" * 4000)).encode()
    cases = ((b"{" + b" " * 5000 + b"}", "over 4096 bytes"), (b"{\xff\xfe}", "not valid JSON"),
             (b"\xef\xbb\xbf" + good[:100] + b"}", "BOM"), (b"[" * 2000 + b"]" * 2000, "JSON"),
             (b"null", "not a JSON object"), (b"", "not valid JSON"))
    try:
        for data, why in cases:
            with open(path, "wb") as f:
                f.write(data)
            msg = str(raises(ConfigError, load, path))
            assert msg.startswith(path + ": ") and why in msg, (data[:20], msg)
        with open(path, "wb") as f:
            f.write(good)  # 4 KB of it still loads
        assert load(path)["api_url"] == "http://h"
    finally:
        os.remove(path)
    # a directory: the unix port opens it, and its length read as "over 4096 bytes"
    os.mkdir(path)
    try:
        msg = str(raises(ConfigError, load, path))
        assert msg == path + ": missing or unreadable", msg
    finally:
        os.rmdir(path)
