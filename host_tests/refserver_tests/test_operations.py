"""The reference server's provisioning operations (tools/refserver/operations.py): init,
complete, and the operator's approve / cancel by code or id (API, control API and CLI).
Tokens are compared by digest; nothing here prints a whole token."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import refserver
from refserver import RefServer

from refserver_tests.client import Resp, Tok, control, put, request, run_cli

SECRET = "prov-secret"
INIT = refserver.INIT_PATH
COMPLETE = refserver.COMPLETE_PATH


def call(srv: RefServer, path: str, doc: Any, secret: str | None = SECRET,
         ctype: str = "application/json") -> Resp:
    headers = {"Content-Type": ctype}
    if secret is not None:
        headers["Authorization"] = "DeviceToken " + secret
    return request(srv, "POST" if path == INIT else "PUT", path, json.dumps(doc).encode(),
                   headers)


def init(srv: RefServer, device_id: str | None = "dev-0001") -> dict[str, Any]:
    resp = call(srv, INIT, {"deviceId": device_id} if device_id else {})
    assert resp.status == 201, resp
    doc: dict[str, Any] = resp.json()
    assert set(doc) == {"provisioningOperationId", "verificationCode", "expirationTime"}
    return doc


def complete(srv: RefServer, op: dict[str, Any]) -> Resp:
    return call(srv, COMPLETE, {"provisioningOperationId": op["provisioningOperationId"]})


@pytest.fixture
def psrv(make_server: Callable[..., RefServer]) -> RefServer:
    return make_server(device_token=SECRET, op_lifetime=100)


def test_pending_then_approved_gives_a_token_that_refreshes(psrv: RefServer) -> None:
    op = init(psrv)
    expires = datetime.datetime.fromisoformat(op["expirationTime"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (psrv.now() + 100)) < 5
    assert complete(psrv, op).status == 202
    assert psrv.approve(op["verificationCode"].lower().replace("-", " "))["state"] == "approved"
    resp = complete(psrv, op)
    assert resp.status == 200 and resp.headers["content-type"] == "application/json"
    tok = resp.tok()
    assert len(tok.value) == 248 and tok.expiration is not None
    assert [r["state"] for r in psrv.lineage("dev-0001")] == ["current"]
    assert put(psrv, tok, headers={"Authorization": "DeviceToken " + SECRET}).status == 201


def test_completing_again_gives_a_new_token_and_revokes_the_earlier_ones(psrv: RefServer) -> None:
    op = init(psrv)
    psrv.approve(op["provisioningOperationId"])  # by id works too
    first = complete(psrv, op).tok()
    rotated = put(psrv, first, headers={"Authorization": "DeviceToken " + SECRET}).tok()
    second = complete(psrv, op).tok()
    assert len({first.sha, rotated.sha, second.sha}) == 3
    states = {r["sha256"]: r["state"] for r in psrv.lineage("dev-0001")}
    assert states == {first.sha: "revoked", rotated.sha: "revoked", second.sha: "current"}
    assert put(psrv, first, headers={"Authorization": "DeviceToken " + SECRET}).status == 410


def test_wrong_or_missing_provisioning_token_is_401(psrv: RefServer) -> None:
    for secret in ("wrong", None):
        assert call(psrv, INIT, {}, secret=secret).status == 401
    op = init(psrv)
    psrv.approve(op["verificationCode"])
    resp = call(psrv, COMPLETE, {"provisioningOperationId": op["provisioningOperationId"]},
                secret="wrong")
    assert resp.status == 401 and resp.headers["content-type"] == "application/problem+json"


def test_expired_operation_is_a_plain_410(psrv: RefServer) -> None:
    op = init(psrv)
    psrv.approve(op["verificationCode"])
    psrv.advance(101)
    resp = complete(psrv, op)
    assert resp.status == 410 and not str(resp.json()["type"]).endswith("Cancelled")
    with pytest.raises(refserver.OperationError, match="expired"):
        psrv.approve(op["verificationCode"])


def test_cancelled_operation_is_410_with_the_cancelled_type(psrv: RefServer) -> None:
    op = init(psrv)
    psrv.cancel(op["verificationCode"])
    resp = complete(psrv, op)
    assert resp.status == 410
    assert resp.json()["type"].endswith("provisioningOperationCancelled")
    with pytest.raises(refserver.OperationError, match="cancelled"):
        psrv.approve(op["verificationCode"])
    with pytest.raises(refserver.OperationError, match="no provisioning operation"):
        psrv.approve("ZZZZ-ZZZZ")


def test_423_and_other_faults_are_injectable_per_endpoint(psrv: RefServer) -> None:
    psrv.fault("status", status=423, endpoint="init")
    psrv.fault("status", status=423, endpoint="complete")
    assert call(psrv, INIT, {}).status == 423
    op = init(psrv)
    assert complete(psrv, op).status == 423
    assert complete(psrv, op).status == 202
    with pytest.raises(ValueError, match="endpoint"):
        psrv.fault("status", status=423, endpoint="nowhere")


def test_bad_requests(psrv: RefServer) -> None:
    for bad in ("abc", "x" * 91, "has space", 12):
        assert call(psrv, INIT, {"deviceId": bad}).status == 400
    assert call(psrv, INIT, {}, ctype="text/plain").status == 415
    assert call(psrv, COMPLETE, {"provisioningOperationId": 5}).status == 400
    assert call(psrv, COMPLETE, {"provisioningOperationId": "nope"}).status == 410
    assert request(psrv, "GET", INIT).status == 405


def test_control_api_approves_and_lists(psrv: RefServer) -> None:
    op = init(psrv)
    listed = control(psrv, "GET", "operations")
    assert [o["code"] for o in listed] == [op["verificationCode"]]
    assert control(psrv, "POST", "approve", {"code": op["verificationCode"]})["state"] == \
        "approved"
    assert complete(psrv, op).status == 200
    resp = request(psrv, "POST", "/_control/cancel", b'{"code": "NOPE-NOPE"}')
    assert resp.status == 400


def test_operations_live_in_sqlite_and_the_cli_approves_them(
        make_server: Callable[..., RefServer], tmp_path: Path) -> None:
    db = str(tmp_path / "srv.sqlite3")
    srv = make_server(db=db, device_token=SECRET)
    op = init(srv)
    srv.close()
    srv = make_server(db=db, device_token=SECRET)  # a restarted server knows the operation
    assert complete(srv, op).status == 202
    p = run_cli("approve", op["verificationCode"], "--db", db)
    assert p.returncode == 0 and "approved" in p.stdout, p.stderr
    tok = Tok(**{"value": complete(srv, op).json()["registrationToken"], "expiration": None})
    assert tok.sha in {r["sha256"] for r in srv.lineage("dev-0001")}
    p = run_cli("cancel", "NOPE-NOPE", "--db", db)
    assert p.returncode == 2 and "no provisioning operation" in p.stderr
    p = run_cli("operations", "--db", db)
    assert op["verificationCode"] in p.stdout and "completions=1" in p.stdout
    p = run_cli("cancel", op["verificationCode"], "--db", db)
    assert p.returncode == 0 and complete(srv, op).status == 410
