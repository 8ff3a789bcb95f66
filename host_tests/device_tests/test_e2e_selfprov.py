# Tier 2, end to end: self-provisioning. firmware/main.py on the real MicroPython unix port
# against the reference server's provisioning operations, an operator approving or
# cancelling by the code the device logged. Every rig scans the output of both sides for
# every token the server issued.
import re
import signal

import pytest
from refserver import COMPLETE_PATH, INIT_PATH
from rig import LiveRig

SECRET = "prov-secret-e2e"
CODE = re.compile(r"verification code: (\S+)")


@pytest.fixture
def rig_factory(tmp_path, micropython):
    rigs = []

    def make(op_lifetime=120.0, reprovision=True, zero_touch=True, **kw):
        if zero_touch:  # else the rig's minted initial_token
            kw["initial_token"] = None
        kw.setdefault("provisioning_token", SECRET)
        server = {"device_token": SECRET, "op_lifetime": op_lifetime}
        rigs.append(LiveRig(tmp_path, micropython, name="rig%d" % len(rigs), server=server,
                        reprovision=reprovision, device_id="dev-e2e-%d" % len(rigs), **kw))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def codes(board):
    return [CODE.search(line).group(1) for line in board.lines() if CODE.search(line)]


def wait_code(board, n=1):
    board.wait_for("verification code: ", n=n, timeout=60)
    return codes(board)[n - 1]


def test_zero_touch_first_boot_provisions_then_rotates(rig_factory):
    rig = rig_factory(lifetime=4.0)
    b = rig.boot()
    code = wait_code(b)
    b.wait_for("state: provisioning")
    assert not rig.refreshes()
    rig.srv.approve(code)
    b.wait_for("provisioned (200)", timeout=60)
    b.wait_for("rotated (201)", timeout=60)
    issued = [r for r in rig.calls(COMPLETE_PATH) if r["status"] == 200]
    assert len(issued) == 1 and len(rig.calls(INIT_PATH)) == 1
    first_refresh = rig.refreshes()[0]
    assert first_refresh["token_sha256"] == issued[0]["issued_sha256"]
    assert rig.stored_sha() == rig.srv.current_sha256("dev-e2e-0")
    assert codes(b) == [code]  # one line, the code the server issued
    assert b.stop() == 0
    rig.assert_no_leak()


def test_410_on_refresh_provisions_again(rig_factory):
    rig = rig_factory(zero_touch=False)
    rig.srv.fault("status", status=410)
    b = rig.boot()
    b.wait_for("state: provisioning")
    rig.srv.approve(wait_code(b))
    b.wait_for("provisioned (200)", timeout=60)
    assert [r["status"] for r in rig.refreshes()] == [410]
    b.stop()
    b2 = rig.boot()  # the refused initial_token is not imported again
    b2.wait_for("state: healthy")
    assert b2.count("import:") == 0 and b2.count("verification code") == 0
    b2.stop()
    assert rig.stored_sha() == rig.srv.current_sha256("dev-e2e-0")
    rig.assert_no_leak()


def test_cancelled_operation_stops_until_restart(rig_factory):
    rig = rig_factory()
    b = rig.boot()
    code = wait_code(b)
    rig.srv.cancel(code)
    b.wait_for("cancelled by an operator", timeout=60)
    b.wait_for("state: provision (")
    b.stop()
    b2 = rig.boot()
    code2 = wait_code(b2)  # a restart inits anew
    assert code2 != code and len(rig.calls(INIT_PATH)) == 2
    rig.srv.approve(code2)
    b2.wait_for("provisioned (200)", timeout=60)
    b2.stop()
    rig.assert_no_leak()


def test_operation_expired_unapproved_reinits_then_and_not_before(rig_factory):
    rig = rig_factory(op_lifetime=8.0)
    b = rig.boot()
    first = wait_code(b)
    second = wait_code(b, 2)
    assert first != second
    inits = [r["time"] for r in rig.calls(INIT_PATH)]
    expired_at = rig.srv.list_operations()[0]["expires"]
    assert expired_at < inits[1] <= expired_at + 62  # once it expired, not before
    polls = [r for r in rig.calls(COMPLETE_PATH) if inits[0] < r["time"] < inits[1]]
    assert polls and all(r["status"] == 202 for r in polls if r["time"] < expired_at)
    # within the operation's last second the device (whole seconds) may still poll: a 410
    assert all(r["status"] == 410 for r in polls if r["time"] >= expired_at)
    rig.srv.approve(second)
    b.wait_for("provisioned (200)", timeout=60)
    b.stop()
    rig.assert_no_leak()


def test_crash_after_completes_200_before_the_commit_completes_again(rig_factory):
    rig = rig_factory(backoff_min_s=5, backoff_max_s=10)  # time to pull the plug
    rig.srv.fault("drop_after_commit", endpoint="complete")
    b = rig.boot()
    rig.srv.approve(wait_code(b))
    b.wait_for("Error(", timeout=60)  # the token was issued, and never reached the flash
    assert b.count("provisioned") == 0
    assert b.stop(signal.SIGKILL) == -signal.SIGKILL
    lost = [r for r in rig.calls(COMPLETE_PATH) if r["issued_sha256"]]
    assert len(lost) == 1
    b2 = rig.boot()
    b2.wait_for("state: provisioning (resumed")
    b2.wait_for("provisioned (200)", timeout=60)
    assert b2.count("verification code") == 0  # resumed: no new approval needed
    assert len(rig.calls(INIT_PATH)) == 1
    states = {r["sha256"]: r["state"] for r in rig.srv.lineage("dev-e2e-0")}
    assert states[lost[0]["issued_sha256"]] == "revoked"
    assert states[rig.stored_sha()] == "current"
    b2.stop()
    rig.assert_no_leak()


def test_crash_after_the_commit_keeps_the_token(rig_factory):
    rig = rig_factory(lifetime=6.0)
    b = rig.boot()
    rig.srv.approve(wait_code(b))
    b.wait_for("provisioned (200)", timeout=60)
    b.stop(signal.SIGKILL)
    provisioned = rig.stored_sha()
    n = len(rig.calls(INIT_PATH)) + len(rig.calls(COMPLETE_PATH))
    b2 = rig.boot()
    b2.wait_for("rotated (201)", timeout=60)
    assert len(rig.calls(INIT_PATH)) + len(rig.calls(COMPLETE_PATH)) == n
    assert rig.refreshes()[0]["token_sha256"] == provisioned
    b2.stop()
    rig.assert_no_leak()


def test_reprovision_false_keeps_todays_behaviour(rig_factory):
    rig = rig_factory(reprovision=False)
    b = rig.boot()
    b.wait_for("state: provision (no token")
    b.stop()
    assert not rig.calls(INIT_PATH) and not rig.refreshes()


def test_401_stops_with_what_to_do_and_423_waits_backoff_max_across_a_power_cut(rig_factory):
    rig = rig_factory(provisioning_token="wrong-secret")
    b = rig.boot()
    b.wait_for("provisioning_token", timeout=60)
    b.wait_for("state: provision (")
    b.stop()
    assert [r["status"] for r in rig.calls(INIT_PATH)] == [401]
    rig2 = rig_factory(backoff_max_s=6)
    rig2.srv.fault("status", status=423, endpoint="init")
    b2 = rig2.boot()
    b2.wait_for("HTTP 423", timeout=60)
    b2.stop(signal.SIGKILL)  # mid-hold: the restart must wait out the rest of it
    b2 = rig2.boot()
    wait_code(b2)
    b2.stop()
    inits = rig2.calls(INIT_PATH)
    assert [r["status"] for r in inits] == [423, 201]
    assert inits[1]["time"] - inits[0]["time"] >= 6.0 - 0.5
    rig.assert_no_leak()
    rig2.assert_no_leak()
