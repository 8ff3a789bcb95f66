"""The lineage store through the HTTP API: 201 rotation with grace, the grandparent revoked
at once, 200 after a lost answer, 410 reasons, the per-lineage rate limit (412), lifetimes,
expirationTime formats, a restart on the same SQLite file."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest
import refserver
from refserver import RefServer

from refserver_tests.client import (
    as_tok,
    put,
    records,
    state_of,
)


def test_rotation_201_and_grandparent_revoked(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    r1 = put(srv, t0)
    assert r1.status == 201
    assert r1.headers["content-type"] == "application/json"
    t1 = r1.tok()
    assert 240 <= t1.length <= 260 and t1.is_base64
    assert srv.current_sha256() == t1.sha
    assert (state_of(srv, t0), state_of(srv, t1)) == ("grace", "current")

    t2 = put(srv, t1).tok()
    assert (state_of(srv, t0), state_of(srv, t1), state_of(srv, t2)) == (
        "revoked", "grace", "current")
    assert put(srv, t0).status == 410  # the grandparent went at once, not after grace
    assert put(srv, t2).status == 201


def test_lost_answer_gets_200_and_keeps_the_original_grace(srv: RefServer) -> None:
    t0 = as_tok(srv.mint())
    lost = put(srv, t0).tok()  # the device never stored this one
    deadline = [r["revoked_at"] for r in srv.lineage() if r["sha256"] == t0.sha][0]
    srv.advance(10)
    again = put(srv, t0)
    assert again.status == 200
    t1 = again.tok()
    assert t1.sha != lost.sha
    assert state_of(srv, lost) == "revoked"
    assert [r["revoked_at"] for r in srv.lineage() if r["sha256"] == t0.sha] == [deadline]
    assert put(srv, lost).status == 410
    assert srv.stats()["requests"][-1]["reason"] == "revoked-child"

    srv.advance(19)  # 29 s after the first rotation: still inside the 30 s grace
    assert put(srv, t0).status == 200
    srv.advance(2)
    assert put(srv, t0).status == 410


def test_parent_after_grace_is_gone(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(grace=5.0)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    srv.advance(5.0)
    gone = put(srv, t0)
    assert gone.status == 410
    assert gone.headers["content-type"] == "application/problem+json"
    assert put(srv, t1).status == 201


def test_unknown_and_expired_tokens_are_gone(srv: RefServer) -> None:
    unknown = put(srv, refserver.new_token())
    assert unknown.status == 410
    doc = unknown.json()
    assert set(doc) == {"type", "title", "status", "detail", "instance"}
    assert doc["status"] == 410

    t0 = as_tok(srv.mint())  # lifetime 60 s
    srv.advance(59.5)
    t1 = put(srv, t0).tok()
    srv.advance(60.0)
    assert put(srv, t1).status == 410
    assert [r["reason"] for r in records(srv)] == ["unknown", None, "expired"]


def test_device_token_is_required(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(device_token="s3cret")
    t0 = as_tok(srv.mint())
    assert put(srv, t0).status == 403
    wrong = put(srv, t0, headers={"Authorization": "DeviceToken nope"})
    assert wrong.status == 403 and wrong.json()["status"] == 403
    assert put(srv, t0, headers={"Authorization": "Bearer s3cret"}).status == 403
    assert srv.current_sha256() == t0.sha  # a 403 never touches the lineage
    assert put(srv, t0, headers={"Authorization": "DeviceToken s3cret"}).status == 201


@pytest.mark.parametrize("retry_after", [None, 7])
def test_rate_limit_412(make_server: Callable[..., RefServer], retry_after: int | None) -> None:
    srv = make_server(rate_limit=2, rate_window=60.0, retry_after_412=retry_after, lifetime=600)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    t2 = put(srv, t1).tok()
    limited = put(srv, t2)
    assert limited.status == 412
    assert limited.json()["status"] == 412
    if retry_after is None:
        assert "retry-after" not in limited.headers
    else:
        assert limited.headers["retry-after"] == "7"
    assert srv.current_sha256() == t2.sha
    other = as_tok(srv.mint())  # the limit is per lineage
    assert put(srv, other).status == 201
    srv.advance(61)
    assert put(srv, t2).status == 201


def test_lifetime_null_never_expires(make_server: Callable[..., RefServer]) -> None:
    srv = make_server(lifetime=None)
    t0 = as_tok(srv.mint())
    assert t0.expiration is None
    resp = put(srv, t0)
    assert resp.status == 201 and b'"expirationTime": null' in resp.body
    srv.advance(10 * 365 * 86400)
    assert put(srv, resp.tok()).status == 201
    assert as_tok(srv.mint(lifetime=5.0)).expiration is not None


@pytest.mark.parametrize(
    "time_format, expected",
    [
        ("z", ["2023-11-14T22:14:20.250Z"] * 3),
        ("offset", ["2023-11-14T22:14:20+00:00"] * 3),
        ("mixed", ["2023-11-14T22:14:20.250Z", "2023-11-14T22:14:20+00:00",
                   "2023-11-14T22:14:20.250Z"]),
    ],
)
def test_expiration_time_formats(
    make_server: Callable[..., RefServer], time_format: str, expected: list[str]
) -> None:
    srv = make_server(time_format=time_format, clock=lambda: 1700000000.25, lifetime=60.0)
    t0 = as_tok(srv.mint())
    t1 = put(srv, t0).tok()
    t2 = put(srv, t1).tok()
    seen = [t.expiration for t in (t0, t1, t2)]
    assert seen == expected
    for text in seen:
        parsed = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        assert parsed.timestamp() == pytest.approx(1700000060.25, abs=1.0)


def test_restart_on_the_same_sqlite_file_keeps_the_lineage(
    make_server: Callable[..., RefServer], tmp_path: Path
) -> None:
    db = str(tmp_path / "tokens.sqlite3")
    first = make_server(db=db)
    t0 = as_tok(first.mint())
    t1 = put(first, t0).tok()
    first.close()

    second = make_server(db=db)
    assert second.port != 0
    assert second.current_sha256() == t1.sha
    t2 = put(second, t1).tok()
    assert put(second, t0).status == 410
    assert [r["sha256"] for r in second.lineage()] == [t0.sha, t1.sha, t2.sha]


def test_current_sha256_needs_a_device_when_there_are_several(srv: RefServer) -> None:
    assert srv.current_sha256() is None
    first = as_tok(srv.mint())
    assert srv.current_sha256() == first.sha
    second = as_tok(srv.mint())
    with pytest.raises(ValueError):
        srv.current_sha256()
    device = [r["device"] for r in srv.lineage() if r["sha256"] == second.sha][0]
    assert srv.current_sha256(device) == second.sha
