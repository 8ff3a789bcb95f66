# Tier 2, the whole firmware under power loss: firmware/main.py on the real MicroPython
# unix port, its token store on a littlefs2 image (4 KiB blocks) that loses power at a
# chosen flash write (tools/powercut/live.py), against the reference server.
#
# A calibration run without a cut learns which write points the first two live
# rotations take (both rewrite a slot in place: the import, the first commit, created
# both slot files). Then, for every write point of both, a fresh device and server: cut there,
# restart from the surviving image without a cut, and check that the device carries on:
# it loads the old or the new token, its next refresh succeeds (201 with the new one;
# 200, the server's recovery path, with the old one, whose child the cut lost), and the
# server's current token is the one the device then holds. The cut points run in
# parallel: each one waits for a scheduled refresh, which no CPU can hurry.
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

from bringup.unixboard import UnixBoard, layout
from conftest import ROOT
from refserver import RefServer

LIFETIME = 16.0  # refresh 8..12.8 s after issue: an old token then still has 3 s or more
GRACE = 120.0
CUT = 99  # powercut_live.py's exit status after a cut
TORN = 0.5  # the fraction of the cut write that lands, in the torn cuts
WAIT = LIFETIME + 40  # a scheduled refresh, on a loaded machine
COMMIT = re.compile(r"commit gen (\d+): write points (\d+)\.\.(\d+) \((\d+)\), "
                    r"(\d+) programs, (\d+) erases; gen \d+ token \S+ sha256 ([0-9a-f]{64})")
HELD = re.compile(r"(?:load|store): gen (\d+) token \S+ sha256 ([0-9a-f]{64})")
OUTCOMES = ("rotated (201)", "recovered (200)")


def sha(token):
    return hashlib.sha256(token.encode()).hexdigest()


class LiveBoard(UnixBoard):
    """`micropython powercut_live.py ARGS` in a board directory, its lines collected."""

    def __init__(self, board_dir, micropython, *args):
        super().__init__(board_dir, micropython)
        self.args = [str(a) for a in args]

    def start(self):
        self.proc = subprocess.Popen([self.micropython, "powercut_live.py", *self.args],
                                     cwd=self.dir, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def commits(self):
        """{gen: (first write point, last, count, programs, erases, token sha256)}"""
        out = {}
        for line in self.lines():
            m = COMMIT.search(line)
            if m:
                out[int(m[1])] = tuple(int(x) for x in m.groups()[1:6]) + (m[7],)
        return out

    def held(self):
        """(gen, sha256) of the first load or show line."""
        m = next(HELD.search(line) for line in self.lines() if HELD.search(line))
        return int(m[1]), m[2]


class PowerCutRig:
    """A fresh reference server, lineage and board directory with powercut_live.py."""

    def __init__(self, tmp_path, micropython, name):
        self.micropython = micropython
        self.srv = RefServer(db=":memory:", lifetime=LIFETIME, grace=GRACE, log=None).start()
        self.minted = self.srv.mint()["registrationToken"]
        self.dir = str(tmp_path / name)
        layout(self.dir, {"api_url": self.srv.url, "initial_token": self.minted,
                          "store_dir": "/flash", "backoff_min_s": 1, "backoff_max_s": 4,
                          "timeout_s": 5})
        powercut = os.path.join(ROOT, "tools", "powercut")
        shutil.copy(os.path.join(powercut, "live.py"), os.path.join(self.dir, "powercut_live.py"))
        shutil.copy(os.path.join(powercut, "blockdev.py"), self.dir)
        self.boards = []

    def boot(self, *args):
        self.boards.append(LiveBoard(self.dir, self.micropython, *args).start())
        return self.boards[-1]

    def tokens(self):
        """sha256 of the token of each generation: 1 the minted one, then each issued."""
        issued = [r["issued_sha256"] for r in self.srv.stats()["requests"]
                  if r.get("issued_sha256")]
        return [None, sha(self.minted), *issued]

    def refreshes(self):
        return [r for r in self.srv.stats()["requests"] if r.get("token_sha256")]

    def show(self):
        b = self.boot("show")
        assert b.wait_exit(60) == 0, b.lines()
        return b.held()

    def assert_no_leak(self):
        for b in self.boards:
            assert not any(self.minted[:16] in line for line in b.lines()), "a token leaked"

    def close(self):
        for b in self.boards:  # none is left running, whatever failed
            b.stop(signal.SIGKILL)
        self.srv.stop()


def calibrate(tmp_path, micropython):
    """Write points of the commits of gens 1 (import), 2 and 3 (two rotations)."""
    rig = PowerCutRig(tmp_path, micropython, "calibration")
    try:
        b = rig.boot(0)
        b.wait_for("rotated (201)", n=2, timeout=WAIT)
        assert b.stop() == 0, b.lines()[-20:]
        commits = b.commits()
        assert sorted(commits)[:3] == [1, 2, 3], b.lines()
        assert [c[5] for c in (commits[2], commits[3])] == rig.tokens()[2:4]
        return commits
    finally:
        rig.close()


def cut_and_restart(tmp_path, micropython, k, gen, torn=None):
    """Cut the power at write point k, which falls in the commit of `gen` (torn: only
    that fraction of the write lands); restart. Returns "old" or "new", the token the
    restarted device loaded, and how long before its expiry the device presented it."""
    rig = PowerCutRig(tmp_path, micropython, "cut-%d-%s" % (k, torn))
    try:
        b = rig.boot(k, *([torn] if torn is not None else []))
        assert b.wait_exit(WAIT) == CUT, b.lines()[-20:]
        assert b.count("power cut at write point %d, in the commit of gen %d;" % (k, gen)) == 1
        old, new = rig.tokens()[gen - 1 : gen + 1]
        presented = len(rig.refreshes())
        b2 = rig.boot(0)
        b2.wait_for("[powercut] load:", timeout=60)
        loaded = b2.held()[1]
        assert loaded in (old, new), "k=%d: loaded neither the old nor the new token" % k
        b2.wait_for("): committed", timeout=WAIT)  # rotated (201) or recovered (200)
        line = b2.wait_for("[powercut] commit gen")[0]
        assert b2.stop() == 0
        after = rig.refreshes()[presented:]
        assert [r["token_sha256"] for r in after] == [loaded], after
        expected = OUTCOMES[0] if loaded == new else OUTCOMES[1]
        assert after[0]["status"] == int(expected[-4:-1]), after
        assert b2.count(expected) == 1, b2.lines()[-20:]
        holds = rig.show()[1]
        assert holds == COMMIT.search(line)[7] == after[0]["issued_sha256"]
        assert holds == rig.srv.current_sha256(), "k=%d: the server moved on alone" % k
        rig.assert_no_leak()
        expires = [t["expires"] for t in rig.srv.lineage() if t["sha256"] == loaded][0]
        return "old" if loaded == old else "new", expires - after[0]["time"]
    finally:
        rig.close()


def test_the_device_carries_on_after_a_cut_at_any_write_of_a_live_rotation(
        tmp_path, micropython):
    commits = calibrate(tmp_path, micropython)
    for gen in (2, 3):
        first, last, count, programs, erases, _ = commits[gen]
        print("rotation to gen %d: write points %d..%d: %d (%d programs, %d erases)"
              % (gen, first, last, count, programs, erases))
    # every write point of both rotations, clean; those of the in-place one torn too
    cuts = [(k, gen, None) for gen in (2, 3) for k in range(commits[gen][0],
                                                              commits[gen][1] + 1)]
    cuts += [(k, 3, TORN) for k in range(commits[3][0], commits[3][1] + 1)]
    with ThreadPoolExecutor(max_workers=len(cuts)) as pool:
        jobs = [pool.submit(cut_and_restart, tmp_path, micropython, *cut) for cut in cuts]
        results = [job.result() for job in jobs]
    for (k, gen, torn), (outcome, margin) in zip(cuts, results):
        print("cut at write point %d (commit of gen %d, %s): %s token, presented %.1f s "
              "before its expiry" % (k, gen, "torn %.2f" % torn if torn else "clean",
                                     outcome, margin))
    for gen in (2, 3):  # every clean cut but at the last write leaves the old token
        got = [r[0] for cut, r in zip(cuts, results) if cut[1:] == (gen, None)]
        assert got == ["old"] * (len(got) - 1) + ["new"], got


def test_a_stop_without_a_cut_keeps_the_image(tmp_path, micropython):
    rig = PowerCutRig(tmp_path, micropython, "nocut")
    try:
        b = rig.boot()
        b.wait_for("rotated (201)", timeout=WAIT)
        assert b.stop(signal.SIGINT) == 0
        assert b.count("[powercut] stopped") == 1
        assert rig.show() == (2, rig.srv.current_sha256())
        rig.assert_no_leak()
    finally:
        rig.close()
