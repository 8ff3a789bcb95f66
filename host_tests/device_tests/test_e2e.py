# Tier 2, end to end: firmware/main.py on the real MicroPython unix port, in a temp board
# directory, against the reference server over loopback.
import json
import os
import signal

import pytest
from rig import LiveRig, sha, store_files, stored_tokens


@pytest.fixture
def rig_factory(tmp_path, micropython):
    rigs = []

    def make(**kw):
        rigs.append(LiveRig(tmp_path, micropython, name="rig%d" % len(rigs), **kw))
        return rigs[-1]

    yield make
    for r in rigs:
        r.close()


def test_first_boot_rotates_the_imported_token(rig_factory):
    rig = rig_factory()
    b = rig.boot()
    b.wait_for("rotated (201)")
    req = rig.refreshes()[0]
    assert req["status"] == 201
    assert req["token_sha256"] == sha(rig.minted["registrationToken"])
    assert rig.srv.current_sha256() in {sha(t) for t in stored_tokens(rig.dir)}
    assert b.stop() == 0
    rig.assert_no_leak()


def test_short_lifetimes_rotate_with_the_current_token_each_time(rig_factory):
    rig = rig_factory(lifetime=4.0, grace=30.0)
    b = rig.boot()
    b.wait_for("rotated (201)", n=4, timeout=120)
    reqs = [r for r in rig.refreshes() if r["status"] == 201]
    assert len(reqs) >= 4
    for prev, cur in zip(reqs, reqs[1:]):
        assert cur["token_sha256"] == prev["issued_sha256"]  # always the newest token
    b.stop()
    rig.assert_no_leak()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_and_restart_continue_with_the_stored_token(rig_factory, sig):
    rig = rig_factory(lifetime=4.0)
    b = rig.boot()
    b.wait_for("rotated (201)", n=2, timeout=120)
    assert b.stop(sig) == -sig  # SIGTERM ends the unix port at once, like a power cut
    last_issued = [r for r in rig.refreshes() if r["status"] == 201][-1]["issued_sha256"]
    b2 = rig.boot()
    b2.wait_for("rotated (201)", timeout=120)
    first_after = [r for r in rig.refreshes() if r["status"] == 201][2]
    assert first_after["token_sha256"] == last_issued
    assert b2.count("import:") == 0  # the initial token was not imported again
    b2.stop()
    rig.assert_no_leak()


def test_dropped_answer_after_commit_recovers_through_200(rig_factory):
    rig = rig_factory()
    rig.srv.fault("drop_after_commit")
    b = rig.boot()
    b.wait_for("recovered (200): committed", timeout=60)
    statuses = [r["status"] for r in rig.refreshes()]
    first, second = rig.refreshes()[0], rig.refreshes()[1]
    assert first["token_sha256"] == second["token_sha256"]  # the parent, again
    assert 200 in statuses
    b.stop()
    rig.assert_no_leak()


def test_410_stops_refreshing(rig_factory):
    rig = rig_factory()
    rig.srv.fault("status", status=410)
    b = rig.boot()
    b.wait_for("state: provision")
    n = len(rig.refreshes())
    b.stop()
    b2 = rig.boot()  # a restart with the same config does not try again
    b2.wait_for("state: provision")
    b2.stop()
    assert len(rig.refreshes()) == n == 1


def test_bad_config_stops_with_the_key_named_and_store_untouched(rig_factory, micropython):
    rig = rig_factory()
    b = rig.boot()
    b.wait_for("rotated (201)")
    b.stop()
    before = store_files(rig.dir)
    cfg_path = os.path.join(rig.dir, "config.json")
    for bad, key in (({"api_url": "ftp://x"}, "api_url"),
                     ({"api_url": rig.srv.url, "timeout_s": -1}, "timeout_s"),
                     ("{not json", "not valid JSON"),
                     ('{"api_url": "http://h", "_": "%s"}' % ("x" * 5000), "over 4096 bytes"),
                     ("\ufeff{}", "BOM")):
        with open(cfg_path, "w") as f:
            f.write(bad if isinstance(bad, str) else json.dumps(bad))
        b = rig.boot()
        assert b.wait_exit() == 2
        assert any(key in line for line in b.lines()), b.lines()
    os.remove(cfg_path)
    b = rig.boot()
    assert b.wait_exit() == 2 and any("config.json" in line for line in b.lines())
    assert before and store_files(rig.dir) == before
