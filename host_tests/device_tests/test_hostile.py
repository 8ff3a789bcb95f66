# Tier 2, a hostile network: firmware/main.py on the real MicroPython unix port against the
# reference server over loopback, with every fault the server can inject. For each fault:
# the stored token is unchanged, the next attempt waits per the backoff rules, and the device
# recovers once the server behaves (410 stops for good). Nothing it prints holds a token.
#
# Speed: the faults run in a few lanes at once, each lane one server and one board taking
# its faults one after another. The server's clock runs SKEW seconds behind (its Date on the
# host's, as a proxy's), so the device sees a DEVICE_LIFE-second token and refreshes every
# 2-4 s, while the server keeps each token valid for LIFETIME: a fault and its backoff never
# outlive the token.
from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import probe
from refserver import RefServer
from rig import PATH, LiveRig, leaks, sha, stored_record, wait_until

TIMEOUT_S = 3
BACKOFF_MIN_S = 1
BACKOFF_MAX_S = 4
LIFETIME = 300.0
DEVICE_LIFE = 5
SKEW = LIFETIME - DEVICE_LIFE
DEAD = -1  # the store's `due` of a token the server refused for good

# id: (mode, params, kind, text of the device's log line that ends the faulty attempt)
#   kind: fail (backoff, then recovery), forbidden (403), gone (410), ok (must succeed)
FAULTS: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "403": ("status", {"status": 403}, "forbidden", "403 forbidden"),
    "403-retry-after": ("status", {"status": 403, "retry_after": 6}, "forbidden",
                        "403 forbidden"),
    "410": ("status", {"status": 410}, "gone", "state: provision (410"),
    "410-retry-after": ("status", {"status": 410, "retry_after": 2}, "gone",
                        "state: provision (410"),
    "412": ("status", {"status": 412}, "fail", "HTTP 412"),
    "412-retry-after": ("status", {"status": 412, "retry_after": 3}, "fail", "HTTP 412"),
    "500": ("status", {"status": 500}, "fail", "HTTP 500"),
    "503": ("status", {"status": 503}, "fail", "HTTP 503"),
    "429": ("status", {"status": 429}, "fail", "HTTP 429"),
    "423": ("status", {"status": 423}, "fail", "HTTP 423"),
    "drop_after_commit": ("drop_after_commit", {}, "fail", "truncated"),
    "garbage-notjson": ("garbage", {"body": "notjson"}, "fail", "201 without a valid token"),
    "garbage-missing": ("garbage", {"body": "missing"}, "fail", "201 without a valid token"),
    "garbage-nonstring": ("garbage", {"body": "nonstring"}, "fail",
                          "201 without a valid token"),
    "garbage-empty": ("garbage", {"body": "empty"}, "fail", "201 without a valid token"),
    "garbage-control": ("garbage", {"body": "control"}, "fail", "201 without a valid token"),
    "garbage-huge": ("garbage", {"body": "huge"}, "fail", "body too long"),
    "garbage-badtime": ("garbage", {"body": "badtime"}, "fail", "201 without a valid token"),
    "garbage-array": ("garbage", {"body": "array"}, "fail", "201 without a valid token"),
    "hang": ("hang", {}, "fail", "timed out"),
    "drip": ("drip", {"interval": 1.0}, "fail", "timed out"),
    "bad_length-short": ("bad_length", {"short": True}, "fail", "201 without a valid token"),
    "bad_length-long": ("bad_length", {"short": False}, "fail", "truncated"),
    "chunked": ("chunked", {}, "ok", "rotated (201): committed"),
    # the answer one byte per TCP segment, 2 ms apart: well within timeout_s
    "drip-fast": ("drip", {"interval": 0.002}, "ok", "rotated (201): committed"),
    "redirect-307": ("redirect", {"status": 307}, "fail", "HTTP 307"),
    "redirect-308": ("redirect", {"status": 308}, "fail", "HTTP 308"),
}
# Faults whose answer the platform really issued (it rotated), then lost on the way: the
# device must come back with its old token and get a 200 (recovery) instead of a 201.
LOST_ANSWERS = {"drop_after_commit", "drip", "bad_length-short", "bad_length-long"}
# Each lane is one server and one board; 410 ends a lane. About 25 s each.
LANES = [
    ["403-retry-after", "hang", "garbage-notjson", "garbage-missing", "410"],
    ["403", "drip", "garbage-nonstring", "garbage-empty", "410-retry-after"],
    ["412-retry-after", "412", "500", "503", "garbage-control", "chunked", "drip-fast"],
    ["429", "423", "drop_after_commit", "garbage-huge", "garbage-badtime"],
    ["garbage-array", "bad_length-short", "bad_length-long", "redirect-307", "redirect-308"],
]
assert sorted(f for lane in LANES for f in lane) == sorted(FAULTS)

ENDS = re.compile(r"retry in \d+s|next try in \d+s|state: provision|: committed ")
WAIT = re.compile(r"(?:retry|next try) in (\d+)s")


def attempts(stamped: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """The device's attempts from its log: start and end time (host clock), the line that
    ended each one, and whether it committed a new token."""
    out: list[dict[str, Any]] = []
    for t, line in stamped:
        if "refresh: presenting" in line:
            out.append({"t0": t, "t1": None, "line": None, "ok": False})
        elif out and out[-1]["line"] is None and ENDS.search(line):
            out[-1].update(t1=t, line=line, ok=": committed " in line)
    return out


class Lane:
    def __init__(self, rig: LiveRig, faults: list[str]) -> None:
        self.rig = rig
        self.faults = faults
        self.snaps: dict[str, Any] = {}  # fault -> the store just after the faulty attempt
        self.done: list[str] = []  # faults whose attempt and recovery both happened
        self.alive: bool | None = None  # the device still ran when the lane stopped it
        self.exit: int | None = None  # its exit code after SIGINT
        self.gone_at: float | None = None  # host time the device said it needs provisioning
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by every test of this lane's faults
            self.error = "%s: %s" % (type(e).__name__, e)

    def _run(self) -> None:
        rig = self.rig
        b = rig.boot()
        b.wait_for(": committed ", timeout=60)  # the first boot rotates the imported token
        for k, fid in enumerate(self.faults):
            mode, params, kind, _ = FAULTS[fid]
            rig.srv.fault(mode, **params)
            # the k-th faulty request at the server is attempt i of the device (1:1)
            i = wait_until(self._faulty(k), 60, "the %s request" % fid) - 1
            wait_until(self._ended(i), 60, "the end of the %s attempt" % fid)
            rec = stored_record(rig.dir)
            self.snaps[fid] = {"sha": sha(rec.token), "due": rec.due}
            if kind == "gone":
                self.gone_at = time.monotonic()
                self.done.append(fid)
                return
            wait_until(self._committed_after(i), 60, "a commit after %s" % fid)
            self.done.append(fid)
        # freeze the lane for the checks: every later attempt hangs, the lineage stays put;
        # stop the device once it is inside such an attempt, so it is not committing
        n = len(rig.requests())
        rig.srv.fault("hang", count=1000)
        wait_until(lambda: any(r["fault"] == "hang" for r in rig.requests()[n:]), 60,
                   "an attempt after the last fault")
        self.stop()

    def stop(self) -> None:
        b = self.rig.boards[-1]
        self.alive = b.proc is not None and b.proc.poll() is None
        self.exit = b.stop()

    def _faulty(self, k: int) -> Callable[[], int]:
        """1 + index of the k-th faulty request, 0 while it has not arrived."""

        def check() -> int:
            faulty = [i for i, r in enumerate(self.rig.requests()) if r["fault"]]
            return faulty[k] + 1 if len(faulty) > k else 0

        return check

    def _ended(self, i: int) -> Callable[[], bool]:
        def check() -> bool:
            a = attempts(self.rig.stamped)
            return len(a) > i and a[i]["line"] is not None

        return check

    def _committed_after(self, i: int) -> Callable[[], bool]:
        return lambda: any(a["ok"] for a in attempts(self.rig.stamped)[i:])


def observe(lane: Lane) -> dict[str, Any]:
    """Per fault of a lane, what the device and the server did; a string for a fault that
    broke the lane or never ran."""
    rig = lane.rig
    reqs = rig.requests()
    tries = attempts(rig.stamped)
    if not lane.error and len(tries) != len(reqs):
        msg = "device made %d attempts, server saw %d requests" % (len(tries), len(reqs))
        return {fid: msg for fid in lane.faults}
    faulty = [i for i, r in enumerate(reqs) if r["fault"]]
    out: dict[str, Any] = {}
    for fid, i in zip(lane.done, faulty):
        nxt = reqs[i + 1] if i + 1 < len(reqs) else None
        m = WAIT.search(tries[i]["line"])
        out[fid] = {
            "fault": reqs[i]["fault"],
            "status": reqs[i]["status"],
            "line": tries[i]["line"],
            "wait": int(m.group(1)) if m else None,
            "duration": tries[i]["t1"] - tries[i]["t0"],
            "presented": reqs[i]["token_sha256"],
            "issued": reqs[i]["issued_sha256"],
            "snap": lane.snaps.get(fid),
            "gap": nxt["time"] - reqs[i]["time"] if nxt else None,
            "next": nxt and {k: nxt[k] for k in ("status", "fault", "token_sha256",
                                                 "issued_sha256")},
            "next_line": tries[i + 1]["line"] if nxt and i + 1 < len(tries) else None,
            "later": len(reqs) - i - 1,
        }
    broke = lane.faults[len(lane.done):]
    for n, fid in enumerate(broke):
        why = lane.error or "the lane stopped early"
        out[fid] = ("lane failed here: " + why) if n == 0 else ("not run: lane failed at " +
                                                               broke[0])
    return out


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: Any, micropython: str) -> Any:
    tmp = tmp_path_factory.mktemp("hostile")
    lanes = []
    try:
        for n, faults in enumerate(LANES):
            rig = LiveRig(tmp, micropython, lifetime=LIFETIME, grace=LIFETIME, name="lane%d" % n,
                      skew=SKEW, timeout_s=TIMEOUT_S, backoff_min_s=BACKOFF_MIN_S,
                      backoff_max_s=BACKOFF_MAX_S)
            lanes.append(Lane(rig, faults))
        threads = [threading.Thread(target=lane.run, daemon=True) for lane in lanes]
        for t in threads:
            t.start()
        for t, lane in zip(threads, lanes):
            t.join(240)
            if t.is_alive():
                lane.error = lane.error or "still running after 240 s"
        # a 410 is final: give the device longer than any backoff to prove it stays quiet
        for lane in lanes:
            if lane.gone_at is not None:
                time.sleep(max(0.0, lane.gone_at + BACKOFF_MAX_S + 2 - time.monotonic()))
                lane.stop()
        results: dict[str, Any] = {}
        for lane in lanes:
            results.update(observe(lane))
        yield lanes, results
    finally:
        for lane in lanes:
            lane.rig.close()


def _obs(campaign: Any, fid: str) -> dict[str, Any]:
    o = campaign[1][fid]
    if isinstance(o, str):
        pytest.fail(o)
    return o


@pytest.mark.parametrize("fid", list(FAULTS))
def test_fault(campaign: Any, fid: str) -> None:
    mode, params, kind, text = FAULTS[fid]
    o = _obs(campaign, fid)
    assert o["fault"] == mode
    assert text in o["line"], o["line"]
    retry_after = params.get("retry_after", 0)
    if kind == "ok":  # chunked, a fast drip: a valid answer in another framing or pace
        assert o["status"] == 201
        assert o["snap"]["sha"] in (o["issued"], o["next"] and o["next"]["issued_sha256"])
        return
    # the token is unchanged: the store held the token the faulty request presented (or,
    # if the retry was already through, the one the server issued to that retry)
    assert o["snap"]["sha"] in (o["presented"], o["next"] and o["next"]["issued_sha256"])
    if kind == "gone":
        assert o["snap"]["due"] == DEAD  # recorded, so a restart does not try again
        assert o["later"] == 0, "the device tried again after a 410"
        return
    # the retry: the same token, no sooner than the wait the device announced, which obeys
    # the backoff rules (the device clock counts whole seconds, hence the "- 1")
    assert o["next"]["token_sha256"] == o["presented"]
    if kind == "forbidden":  # backoff_max_s or Retry-After, plus up to half again (jitter)
        hold = max(BACKOFF_MAX_S, retry_after)
        assert hold <= o["wait"] <= hold + hold // 2
        assert o["snap"]["due"] > 0  # the hold survives a restart
    else:  # Retry-After is a floor plus up to half again
        assert BACKOFF_MIN_S <= o["wait"] <= max(BACKOFF_MAX_S, retry_after + retry_after // 2)
        assert o["wait"] >= retry_after
    assert o["gap"] > o["wait"] - 1, (o["gap"], o["wait"])
    # and it recovered: the server's answer to the retry was committed
    assert o["next"]["fault"] is None
    assert ": committed " in o["next_line"], o["next_line"]
    if fid in LOST_ANSWERS:
        assert o["next"]["status"] == 200 and "recovered (200)" in o["next_line"]
    else:
        assert o["next"]["status"] == 201
    if mode in ("hang", "drip"):  # cut by the device's own deadline, not by the server
        assert o["duration"] < TIMEOUT_S + 10, o["duration"]


def test_no_retry_comes_before_its_announced_wait(campaign: Any) -> None:
    """Server timestamps bracket the device's sleep (the faulty request is stamped before its
    answer leaves, the retry after it arrives), so a gap is never shorter than the wait
    unless a second boundary passes inside the refresher, which counts whole seconds (see
    test_fault). That is rare: at most one such gap, where a device that ignored its backoff
    would show them all."""
    gaps = [(fid, o["gap"], o["wait"]) for fid, o in campaign[1].items()
            if isinstance(o, dict) and o["wait"] is not None and o["gap"] is not None]
    assert len(gaps) >= 20
    short = [g for g in gaps if g[1] < g[2] - 0.05]
    assert len(short) <= 1, short


@pytest.mark.parametrize("n", range(len(LANES)))
def test_lane_token_chain_and_store(campaign: Any, n: int) -> None:
    """Every request presents the last token the device really received; the store ends
    with the server's current token; the device never crashed, and stopped cleanly."""
    lane = campaign[0][n]
    if lane.error:
        pytest.fail(lane.error)
    assert lane.alive and lane.exit == 0
    rig = lane.rig
    held = sha(rig.minted["registrationToken"])
    reqs = rig.requests()
    for i, r in enumerate(reqs):
        assert r["token_sha256"] == held, "request %s presented another token" % r
        delivered = r["fault"] in (None, "chunked")
        if r["fault"] == "drip":  # the fast drip arrives whole, the slow one is cut (test_fault)
            delivered = i + 1 < len(reqs) and reqs[i + 1]["token_sha256"] == r["issued_sha256"]
        if delivered and r["status"] in (200, 201):
            held = r["issued_sha256"]
    assert rig.stored_sha() == held == rig.srv.current_sha256()
    for b in rig.boards:
        assert not any("Traceback" in ln for ln in b.lines())


def test_no_token_in_any_output(campaign: Any) -> None:
    text = "\n".join(lane.rig.output() for lane in campaign[0])
    # counts only: an assert that shows a token on failure would be a leak of its own
    secrets = sorted({s for lane in campaign[0] for s in lane.rig.secrets()})
    n = len(secrets)
    assert n >= 6 * len(LANES) and "refresh: presenting" in text
    found = leaks(text, secrets)
    assert found == 0, "%d token(s) leaked into the device or server log" % found
    # the scan itself finds a token, even one cut short or split over lines
    t = secrets[0]
    cut, split = leaks(text + t[3:40], secrets), leaks(text + t[:9] + "\n" + t[9:], secrets)
    assert cut == split == 1


# Time from the Date header, on the real interpreter (probes/untrusted_clock.py).
def test_untrusted_clock_takes_the_servers_date(micropython: str, tmp_path: Any) -> None:
    srv = RefServer(db=str(tmp_path / "srv.sqlite3"), lifetime=3600.0, log=None).start()
    try:
        minted = srv.mint()
        (tmp_path / "store").mkdir()
        cfg = tmp_path / "cfg.json"
        cfg.write_text(json.dumps({"api_url": srv.url, "timeout_s": 5,
                                   "initial_token": minted["registrationToken"],
                                   "store_dir": str(tmp_path / "store")}))
        p = subprocess.run([micropython, probe("untrusted_clock"), str(cfg)], capture_output=True,
                           text=True, timeout=60)
        host = time.time()
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        words = {ln.split()[0]: ln.split()[1:] for ln in p.stdout.splitlines() if ln.strip()}
        assert int(words["BEFORE"][0]) < host - 10 * 365 * 86400
        assert "clock unknown: refresh at once" in out
        # first moved forward to the floor (the release date here: nothing committed yet),
        # so that a TLS handshake could have checked a certificate, then set from Date
        assert "clock: unset, moved forward to 2026-12-01T00:00:00Z" in out
        assert "clock: set from the server's Date header" in out
        now, trusted, state, wait = words["AFTER"]
        assert abs(int(now) - host) <= 5, (now, host)
        assert trusted == "True" and state == "healthy"
        # the schedule is on the right clock: from half the hour's lifetime to 10 min before
        # its end (policy.refresh_at), not decades away
        assert 1800 - 5 <= int(wait) <= 3000 + 5
        [req] = [r for r in srv.stats()["requests"] if r["path"] == PATH]
        assert req["status"] == 201
        found = leaks(out, [minted["registrationToken"]])
        assert found == 0
    finally:
        srv.stop()
