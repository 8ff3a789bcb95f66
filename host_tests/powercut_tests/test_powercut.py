# Tier 2: the store's atomic swap under power cuts at every write point, on MicroPython's
# own littlefs2 and FAT drivers (tools/powercut/sweep.py, reduced), and a full filesystem
# (mp_store_full.py). The damaged-store cases (cases/test_store_on_flash.py) run under
# CPython directly and under MicroPython through test_micropython_tier.py.
import json
import subprocess

import pytest
from conftest import ROOT, probe
from powercut import images

KINDS = images.NAMES  # the default sweep of `make powercut`
# 118 uncut warm-up commits age the image so that the 12 swept ones include a littlefs
# metadata compaction even with 4 KiB blocks (gens 124 and 127); every write point,
# clean and torn (a stride of 2 would never cut the last write of a commit: they all
# take an even number). Both slot files exist by then: every commit rewrites in place.
STEADY = ["--warmup=118", "--commits=12", "--stride=1", "--json"]
# From the empty store: the first commit (it creates both directories and both slot
# files), then three in place; every write point, clean and torn.
FIRST = ["--warmup=-1", "--commits=4", "--stride=1", "--json"]
# FAT on raw NOR flash (sectors erased before each write). Creating the slot files
# allocates clusters, which rewrites the FAT sector: a cut after its erase, inside the
# very first commit (`--kinds=fat-flash --warmup=-1 --commits=1`), leaves every cluster
# marked used. No token was stored yet, so none is lost; but no commit fits ever again
# ("filesystem full") until the volume is formatted. After that first commit nothing is
# ever allocated again (the steady sweep above holds). Strict, so a fix shows.
RAW_FLASH_FAT_FIRST = pytest.param("fat-flash", marks=pytest.mark.xfail(
    strict=True, raises=AssertionError,
    reason="creating a slot file on raw-flash FAT rewrites the FAT sector"))


def run(micropython, args, timeout=240):
    return subprocess.run([micropython, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def results(stdout):
    rows = [json.loads(line[7:]) for line in stdout.splitlines() if line.startswith("RESULT ")]
    return {row["kind"]: row for row in rows}


def sweep(micropython, kind, args, stride):
    p = run(micropython, ["tools/powercut/sweep.py", "--kinds=" + kind, *args])
    row = results(p.stdout).get(kind)
    assert row, p.stdout[-2000:] + p.stderr[-2000:]
    # every cut point was tried (clean and torn) and hit a commit
    assert row["tried"] == 2 * len(range(1, row["points"] + 1, stride)) > 0
    assert row["old"] > 0 and row["new"] > 0
    assert (row["lost"], row["garbage"], row["broken"]) == (0, 0, 0), p.stdout[-3000:]
    assert row["overprograms"] == 0
    assert p.returncode == 0, p.stdout[-3000:]
    return row


@pytest.mark.parametrize("kind", KINDS)
def test_a_cut_at_any_write_leaves_the_old_or_the_new_token(micropython, kind):
    row = sweep(micropython, kind, STEADY, 1)
    if kind.startswith("lfs2"):  # some commit of the window compacted metadata
        assert row["erase_max"] > row["erase_per_commit"], row


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "fat-flash"] + [RAW_FLASH_FAT_FIRST])
def test_a_cut_in_the_first_commits_leaves_nothing_or_the_old_or_the_new_token(
        micropython, kind):
    sweep(micropython, kind, FIRST, 1)


def test_in_place_commits_stay_cheap(micropython):
    # FAT: the record's sector and its directory's, nothing else (no allocation table);
    # littlefs with a 512-byte cache: the record inline in one metadata commit
    p = run(micropython, ["tools/powercut/sweep.py", "--kinds=fat,fat-flash,lfs2-4096-p128",
                          "--warmup=2", "--commits=12", "--stride=1000", "--json"])
    rows = results(p.stdout)
    assert (rows["fat"]["prog_per_commit"], rows["fat"]["erase_per_commit"]) == (2, 0)
    assert (rows["fat-flash"]["prog_per_commit"], rows["fat-flash"]["erase_per_commit"]) \
        == (2, 2)
    assert rows["lfs2-4096-p128"]["prog_per_commit"] <= 3, rows["lfs2-4096-p128"]
    assert rows["lfs2-4096-p128"]["erase_per_commit"] <= 2, rows["lfs2-4096-p128"]


def test_the_trace_names_the_blocks_around_a_cut(micropython):
    p = run(micropython, ["tools/powercut/sweep.py", "--kinds=fat-flash", "--trace=3"])
    lines = p.stdout.splitlines()
    words = [line.split() for line in lines if line.endswith(" bytes")]
    assert [int(w[1] if w[0] == ">>" else w[0]) for w in words] == list(range(1, 8)), p.stdout
    assert any(line.lstrip().startswith(">>    3  gen 2") for line in lines), p.stdout
    assert any("token.b/" in line for line in lines), p.stdout  # FAT names its clusters
    assert sum("cut at 3 torn=" in line for line in lines) >= 2, p.stdout


def test_full_filesystem_under_micropython(micropython):
    p = run(micropython, ["host_tests/mp_runner.py", "mp_store_full"])
    assert p.returncode == 0 and " passed, 0 failed" in p.stdout, p.stdout + p.stderr


# The sweep must have teeth: stores that are not atomic have to show up as lost
# (probes/naive_store_sweep.py).
@pytest.mark.parametrize("write,lossy",
                         [("in-place", ["fat", "fat-flash"]), ("tmp-then-rename", list(KINDS))])
def test_the_sweep_catches_a_store_that_is_not_atomic(micropython, write, lossy):
    rows = results(run(micropython, [probe("naive_store_sweep"), write]).stdout)
    assert sorted(rows) == sorted(KINDS)
    assert [k for k in KINDS if rows[k]["lost"] + rows[k]["garbage"] > 0] == lossy


@pytest.mark.parametrize("kind", KINDS)
def test_two_cuts_from_the_empty_store_never_lose_the_first_token(micropython, kind):
    """A cut inside the very first commit that leaves its record readable, then a cut in
    the next commit: the first token or the second, never neither. On raw-flash FAT the
    next commit used to make the second slot's directory, rewriting the root directory's
    sector that holds the first's entry (24 of 2,176 double cuts lost the token). A first
    cut that leaves the volume taking no commit is docs/powercut.md's weak spot, not a
    loss: counted as broken, not asserted here."""
    p = run(micropython, ["tools/powercut/sweep.py", "--kinds=" + kind, "--double=1",
                          "--commits=2", "--warmup=-1"])
    row = results(p.stdout)[kind]
    assert row["tried"] > 200 and row["old"] > 0 and row["new"] > 0, p.stdout[-2000:]
    assert (row["lost"], row["garbage"]) == (0, 0), p.stdout[-3000:]


def test_two_cuts_in_consecutive_commits_on_raw_flash_fat(micropython):
    """A cut, a power-up that finds one slot damaged, a cut in the very next commit: the old
    or the new token every time. The repair rewrites the damaged slot in place, so it
    allocates nothing unless the first cut erased the slot's own directory sector (one
    write point of four: then the file must be made anew, one cluster)."""
    p = run(micropython, ["tools/powercut/sweep.py", "--kinds=fat-flash", "--double=1",
                          "--commits=3", "--warmup=2"])
    row = results(p.stdout)["fat-flash"]
    assert row["tried"] > 50 and row["old"] > 0 and row["new"] > 0, p.stdout[-2000:]
    assert (row["lost"], row["garbage"]) == (0, 0), p.stdout[-3000:]
    # before the in-place repair (a damaged slot renamed to .bad at load, re-created by
    # the next commit) 5 of the 8 first cuts made the repair commit allocate
    assert row["allocs"] <= 2, p.stdout[-3000:]
