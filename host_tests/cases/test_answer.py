import json

from fakes.net import NoHeapJSON
from regtoken import policy
from regtoken.policy import classify

from cases.util import raises, restore_module, swap_module, tok

NOW = 1800000000


def body(**kw):
    return json.dumps(kw).encode()


def test_201_is_rotation_with_expiry():
    t = tok(1)
    k, token, exp, _, _ = classify(201, {}, body(registrationToken=t,
                                                 expirationTime="2027-01-15T08:00:00Z"), NOW)
    assert (k, token, exp) == (policy.ROTATED, t, 1800000000)


def test_200_is_recovery_and_null_never_expires():
    k, token, exp, _, _ = classify(200, {}, body(registrationToken=tok(2), expirationTime=None),
                                   NOW)
    assert (k, token, exp) == (policy.RECOVERED, tok(2), None)


def test_an_absent_expiration_time_is_null_as_only_the_token_is_required():
    # refresh-api.md marks only registrationToken required: a server that leaves the
    # expiration out must not have its rotation thrown away (the parent's grace then ends)
    for status, kind in ((201, policy.ROTATED), (200, policy.RECOVERED)):
        k, token, exp, _, _ = classify(status, {}, body(registrationToken=tok(3)), NOW)
        assert (k, token, exp) == (kind, tok(3), None)


def test_refusals():
    assert classify(403, {}, b"{}", NOW)[0] == policy.FORBIDDEN
    assert classify(410, {}, b"", NOW)[0] == policy.GONE
    k, _, _, wait, _ = classify(412, {"retry-after": "120"}, b"", NOW)
    assert (k, wait) == (policy.THROTTLED, 120)
    assert classify(412, {}, b"", NOW)[3] == 0


def test_everything_else_is_transient():
    for status in (100, 204, 301, 302, 307, 400, 401, 404, 423, 429, 500, 502, 503, 504, 999):
        assert classify(status, {}, b"", NOW)[0] == policy.SERVER


def test_retry_after_forms_and_bounds():
    assert policy.retry_after({"retry-after": "Thu, 15 Jan 2027 08:01:00 GMT"}, NOW) == 60
    assert policy.retry_after({"retry-after": "Thu, 15 Jan 2027 07:00:00 GMT"}, NOW) == 0
    assert policy.retry_after({"retry-after": "99999999999"}, NOW) == policy.MAX_RETRY_AFTER
    assert policy.retry_after({"retry-after": "soon"}, NOW) == 0
    assert policy.retry_after({"retry-after": " 120 "}, NOW) == 120
    assert policy.retry_after({"retry-after": "-5"}, NOW) == 0
    assert policy.retry_after({"retry-after": "Fri, 15 Jan 2077 08:00:00 GMT"}, NOW) == 86400
    assert policy.retry_after({}, NOW) == 0
    # a date on the server's clock counts from its Date, not from ours (an hour off here)
    srv = {"retry-after": "Thu, 15 Jan 2027 08:00:10 GMT", "date": "Thu, 15 Jan 2027 08:00:00 GMT"}
    assert policy.retry_after(srv, NOW - 3600) == policy.retry_after(srv, NOW + 3600) == 10
    srv["date"] = "garbage"  # no usable Date: our clock it is
    assert policy.retry_after(srv, NOW) == 10


def test_garbage_bodies_are_failed_attempts_never_tokens():
    bad = [b"", b"not json", b"[]", b"null", b"\xff\xfe", body(expirationTime=None),
           body(registrationToken=123, expirationTime=None),
           body(registrationToken="", expirationTime=None),
           body(registrationToken="abc\x01def", expirationTime=None),
           body(registrationToken="with space", expirationTime=None),
           body(registrationToken="tok\u00e9n", expirationTime=None),
           body(registrationToken="x" * 1025, expirationTime=None),
           body(registrationToken=tok(3), expirationTime="yesterday"),
           body(registrationToken=tok(3), expirationTime=12345),
           b'{"registrationToken": "' + b"A" * 20000 + b'"}']
    for status in (200, 201):
        for b in bad:
            k, token, _, _, why = classify(status, {}, b, NOW)
            assert k == policy.GARBAGE and token is None, b[:40]
            assert str(status) in why


def test_token_object():
    from regtoken.selfprov import token_object  # the provisioning answer's reader

    t = tok(5)
    assert token_object(body(registrationToken=t, expirationTime=None)) == (t, None)
    assert token_object(body(expirationTime="2027-01-15T08:00:00Z",
                             registrationToken=t, extra=[1])) == (t, 1800000000)
    for b in (b"", b"{}", body(registrationToken="", expirationTime=None)):
        raises(ValueError, token_object, b)


def test_token_bounds():
    assert policy.valid_token("A" * 1024)
    assert not policy.valid_token("A" * 1025)
    assert policy.valid_token(tok(4))


def test_no_heap_to_read_a_201_is_not_garbage():
    # the answer may be a good one: classify must not call it the server's garbage
    b = body(registrationToken=tok(1), expirationTime="2027-01-15T08:00:00Z")
    assert classify(201, {}, b, NOW)[0] == policy.ROTATED
    NoHeapJSON.fail = 3
    saved = swap_module("json", NoHeapJSON)
    try:
        for status in (200, 201):
            raises(MemoryError, classify, status, {}, b, NOW)
        # no key: the server's garbage, however much heap parsing it would take
        assert classify(201, {}, b"[" * 2048, NOW)[0] == policy.GARBAGE
    finally:
        NoHeapJSON.fail = 0
        restore_module("json", saved)
