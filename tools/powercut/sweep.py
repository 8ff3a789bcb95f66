# Power-cut sweep of the token store, run by MicroPython itself on its real drivers:
#
#   micropython tools/powercut/sweep.py [--commits=130] [--warmup=0] [--stride=1]
#                           [--seed=4] [--kinds=lfs2-512,lfs2-4096,...] [--json] [--trace=K]
#                           [--double=1]
#
# Kinds are in tools/powercut/images.py; the default sweep runs all of them (flash.NAMES),
# fat-flash (FAT on raw flash that erases each sector before writing it) included: see
# docs/powercut.md for its one remaining weak spot, the very first commit.
#
# For each filesystem: format, commit a baseline (and --warmup more commits, to age the
# filesystem cheaply: they are not cut; --warmup=-1 starts from the empty store, so the
# very first commit is cut too), count the write points (programs + erases) of an uncut
# run of --commits commits, then for every --stride-th write point replay the same
# commits from the same image with the power cut there, once clean and once torn (a
# random prefix of the last write lands), remount a fresh driver on the surviving bytes
# and classify what load() finds. Then commit once more on the recovered store and reload
# it. The invariant: lost == garbage == broken == 0.
#
# --double=1 cuts two consecutive commits instead: the first at every write point, then,
# after a power-up that loads the damaged store, the next one at every write point too;
# the repair commit must not allocate (on FAT: leave the allocation table alone).
#
# --trace=K prints the write points around K of the uncut run (block, and on FAT which
# region or file owns it) and what the cuts at K leave behind, instead of sweeping.
import sys
import time

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/..")
sys.path.insert(0, HERE + "/../../firmware")

import binascii  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402

from regtoken.store import Files, Record, Store, StoreError  # noqa: E402

from powercut import images as flash  # noqa: E402
from powercut.blockdev import PowerCut  # noqa: E402

WHERE = "/flash"
EPOCH = 1767225600  # 2026-01-01, a plausible server clock
OUTCOMES = ("old", "new", "lost", "garbage", "broken")


# -- realistic records: (token, exp, due, seed) tuples, a fresh Record per use --


def token(n):
    raw = bytes(random.getrandbits(8) for _ in range(n))
    return binascii.b2a_base64(raw).decode().strip()


def make_specs(count):
    """count (token, exp, due, seed) tuples: base64 tokens of 200..400 chars; every
    fourth one never expires (and so has no refresh due)."""
    specs = []
    for i in range(count):
        exp = "-" if i % 4 == 3 else EPOCH + 86400 * (i + 1)
        due = 0 if exp == "-" else EPOCH + 3600 * i
        specs.append((token(random.randint(150, 300)), exp, due, "9e1c04aa"))
    return specs


def record(spec):
    return Record(spec[0], spec[1], spec[2], spec[3])


def short(tok):
    return "%s..(%d)" % (tok[:6], len(tok)) if tok else "-"


# -- one run --


def baseline(kind, specs):
    """The image after committing specs on a fresh filesystem (none: just formatted)."""
    dev = flash.blank(kind)
    flash.mount(dev, kind, WHERE)
    store = Store(Files(WHERE))
    for spec in specs:
        store.commit(record(spec))
    flash.unmount(WHERE)
    return dev.image()


def replay(kind, image, specs, cut_after=None, torn=None, trace=None):
    """Commits specs on a fresh mount of image. Returns the device (its image() is what
    the next power-up finds, its survivor is set if the power was cut), the index of
    the last commit that returned (-1: none) and the (programs, erases) of each."""
    dev = flash.device(kind, image, cut_after, torn)
    dev.trace = trace
    flash.mount(dev, kind, WHERE)
    done, costs = -1, []
    try:
        store = Store(Files(WHERE))
        store.load()
        for i, spec in enumerate(specs):
            before = (dev.programs, dev.erases)
            store.commit(record(spec))
            costs.append((dev.programs - before[0], dev.erases - before[1]))
            done = i
    except PowerCut:
        pass
    finally:
        flash.unmount(WHERE)
    return dev, done, costs


def load_fresh(kind, image):
    """The record a board finds at the next power-up; exceptions escape."""
    flash.mount(flash.device(kind, image), kind, WHERE)
    return Store(Files(WHERE)).load()


def fields(rec):
    return None if rec is None else (rec.token, rec.exp, rec.due, rec.seed)


def classify(kind, image, old, new):
    """old, new: the specs of the last commit that returned (None: the store was empty)
    and of the one cut."""
    try:
        rec = load_fresh(kind, image)
    except Exception as e:  # a load that raises lost the token too (or the boot)
        print("  load raised %r" % e)
        return "lost"
    finally:
        flash.unmount(WHERE)
    if rec is None:
        return "old" if old is None else "lost"
    if fields(rec) == old:
        return "old"
    return "new" if fields(rec) == new else "garbage"


def still_works(kind, image, spec):
    """Recover, commit once more, and read that commit back after another power-up."""
    dev = flash.device(kind, image)
    try:
        flash.mount(dev, kind, WHERE)
        store = Store(Files(WHERE))
        store.load()
        store.commit(record(spec))
        flash.unmount(WHERE)
        return fields(load_fresh(kind, dev.image())) == spec
    except Exception as e:  # any failure here is the finding
        print("  recovery failed: %r" % e)
        return False
    finally:
        flash.unmount(WHERE)


# -- the sweep --


def tear_at(seed, k):
    # A reproducible prefix fraction per cut point, independent of the other points.
    # Not random.seed(k) + random(): MicroPython's generator gives nearly the same first
    # number for neighbouring seeds (about 0.90 for every k), so tears never tore early.
    return (binascii.crc32(b"tear %d %d" % (seed, k)) & 0xFFFFFFFF) / 4294967296


def cut_once(kind, run, k, torn, tally, verbose=False):
    """run: (image, last spec committed before it or None, specs to commit, spec for
    after); gen0: the generation of the last commit before the swept ones."""
    image, last, specs, after, gen0 = run
    dev, done, _ = replay(kind, image, specs, k, torn)
    if dev.survivor is None:
        return  # the run finished before write point k
    survivor = dev.survivor
    old = specs[done] if done >= 0 else last
    outcome = classify(kind, survivor, old, specs[done + 1])
    tally[outcome] += 1
    tally["tried"] += 1
    where = "%s: cut at %d torn=%s in the commit of gen %d" % (
        kind, k, "-" if torn is None else "%.3f" % torn, gen0 + done + 2)
    if verbose or outcome in ("lost", "garbage"):
        print("  %s: %s" % (where, outcome))
    if not still_works(kind, survivor, after):
        tally["broken"] += 1
        print("  %s: store broken after recovery" % where)
    elif verbose:
        print("  %s: the next commit works and loads back" % where)


def uncut(kind, image, specs):
    dev, done, costs = replay(kind, image, specs)
    assert done == len(specs) - 1, "the uncut run failed"
    return sum(p + e for p, e in costs), costs, dev.overprograms


def prepare(kind, opts, specs):
    """specs: baseline and warm-up commits, the swept commits, one for after. Returns
    the run cut_once takes."""
    aged = specs[: 1 + opts["warmup"]]
    last = aged[-1] if aged else None
    return (baseline(kind, aged), last, specs[len(aged) : -1], specs[-1], len(aged))


def sweep(kind, opts, specs):
    started = time.ticks_ms()
    run = prepare(kind, opts, specs)
    points, costs, overprograms = uncut(kind, run[0], run[2])
    # overprograms: NOR programs onto unerased bytes, which a driver should never do
    tally = {"kind": kind, "block": flash.block_size(kind), "points": points, "tried": 0,
             "overprograms": overprograms}
    for name in OUTCOMES:
        tally[name] = 0
    for k in range(1, points + 1, opts["stride"]):
        cut_once(kind, run, k, None, tally)
        cut_once(kind, run, k, tear_at(opts["seed"], k), tally)
    tally["prog_per_commit"] = sum(c[0] for c in costs) / len(costs)
    tally["erase_per_commit"] = sum(c[1] for c in costs) / len(costs)
    tally["prog_max"] = max(c[0] for c in costs)  # above the average: a compaction
    tally["erase_max"] = max(c[1] for c in costs)
    tally["seconds"] = time.ticks_diff(time.ticks_ms(), started) / 1000
    return tally


# -- two cuts in consecutive commits (--double) --


def fat_table(kind, image):
    """The FAT's sectors of a FAT image (b"" for littlefs): a commit that allocates
    writes them."""
    if not kind.startswith("fat"):
        return b""
    bps = flash.block_size(kind)
    first, root = flash.fat_regions(image)[:2]
    return bytes(image[first * bps:root * bps])


def double(kind, opts, specs):
    """Cut the first swept commit at every write point (clean and torn), power up, load
    (which finds one slot damaged or not), then cut the next commit at every one of its
    write points too: load must still give the old or the new token, the recovered store
    must work, and the uncut repair commit must not touch the allocation table."""
    started = time.ticks_ms()
    image, last, swept, after, gen0 = prepare(kind, opts, specs)
    first, retry = swept[0], swept[1]
    points = uncut(kind, image, [first])[0]
    tally = {"kind": kind, "block": flash.block_size(kind), "points": points, "tried": 0,
             "allocs": 0}
    for name in OUTCOMES:
        tally[name] = 0
    for k in range(1, points + 1, opts["stride"]):
        for torn in (None, tear_at(opts["seed"], k)):
            dev = replay(kind, image, [first], k, torn)[0]
            cut = dev.survivor
            got = classify(kind, cut, last, first)
            # what the next power-up holds: the old record (none before the very first
            # commit, --warmup=-1) or the new one
            known = fields(record(first)) if got != "old" else last and fields(record(last))
            try:
                repaired, done, _ = replay(kind, cut, [retry])
            except StoreError as e:  # the first cut left a volume that takes no commit
                # (raw-flash FAT's weak spot, docs/powercut.md): no second cut to make
                tally["broken"] += 1
                print("  %s: cut at %d, then the next commit failed: %s" % (kind, k, e))
                continue
            if done == 0 and fat_table(kind, repaired.image()) != fat_table(kind, cut):
                tally["allocs"] += 1
                print("  %s: cut at %d, the repair commit allocated" % (kind, k))
            for j in range(1, uncut(kind, cut, [retry])[0] + 1):
                for torn2 in (None, tear_at(opts["seed"] + 1, j)):
                    dev2 = replay(kind, cut, [retry], j, torn2)[0]
                    if dev2.survivor is None:
                        continue
                    outcome = classify(kind, dev2.survivor, known, retry)
                    tally[outcome] += 1
                    tally["tried"] += 1
                    if outcome in ("lost", "garbage"):
                        print("  %s: cuts at %d then %d: %s" % (kind, k, j, outcome))
                    if not still_works(kind, dev2.survivor, after):
                        tally["broken"] += 1
                        print("  %s: cuts at %d then %d: store broken" % (kind, k, j))
    tally["seconds"] = time.ticks_diff(time.ticks_ms(), started) / 1000
    return tally


# -- trace --


def commit_of(costs, point, gen0):
    """The generation whose commit wrote write point `point` of an uncut run."""
    end = 0
    for i, (programs, erases) in enumerate(costs):
        end += programs + erases
        if point <= end:
            return gen0 + i + 1
    return None


def show_trace(kind, opts, specs):
    """The write points around --trace=K of the uncut run, then the cuts at K."""
    k = opts["trace"]
    run = prepare(kind, opts, specs)
    trace = []
    dev, _, costs = replay(kind, run[0], run[2], trace=trace)
    final = dev.image()  # its directories name the clusters the run allocated
    print("%s: write points %d..%d of %d" % (kind, max(k - 6, 1), k + 4, len(trace)))
    for point, op, block, offset, length in trace:
        if k - 6 <= point <= k + 4:
            print("  %s %4d  gen %-3s %-5s %s +%d, %d bytes" % (
                ">>" if point == k else "  ", point, commit_of(costs, point, run[4]), op,
                flash.label(kind, final, block), offset, length))
    tally = {"tried": 0, "broken": 0}
    for name in OUTCOMES:
        tally[name] = 0
    for torn in (None, tear_at(opts["seed"], k)):
        cut_once(kind, run, k, torn, tally, True)
    return tally


# -- report --

# (title, key, width, conversion); the first column is left-aligned
COLUMNS = (
    ("filesystem", "kind", -14, "s"),
    ("block", "block", 5, "d"),
    ("points", "points", 6, "d"),
    ("tried", "tried", 6, "d"),
    ("old", "old", 5, "d"),
    ("new", "new", 5, "d"),
    ("lost", "lost", 5, "d"),
    ("garbage", "garbage", 7, "d"),
    ("broken", "broken", 6, "d"),
    ("prog/commit", "prog_per_commit", 11, ".2f"),
    ("max", "prog_max", 3, "d"),
    ("erase/commit", "erase_per_commit", 12, ".2f"),
    ("max", "erase_max", 3, "d"),
    ("secs", "seconds", 6, ".1f"),
)


LEGEND = """points: write points (programs + erases) of the uncut run; tried: cuts, clean
and torn, that hit a commit; old/new: what load() gave after the cut; lost: nothing or
an exception; garbage: any other record; broken: the recovered store failed its next
commit or did not read it back; prog, erase/commit: averages of the uncut run's commits,
max: the most one commit of it took (a littlefs compaction)"""


def table(rows):
    lines = [" ".join(("%" + str(w) + "s") % title for title, _, w, _ in COLUMNS)]
    for row in rows:
        lines.append(" ".join(("%" + str(w) + c) % row[key] for _, key, w, c in COLUMNS))
    return "\n".join(lines)


def options(argv):
    # 130: the first littlefs metadata compaction with 4 KiB blocks comes at gen 124
    opts = {"commits": 130, "warmup": 0, "stride": 1, "seed": 4, "trace": 0, "double": 0,
            "kinds": ",".join(flash.NAMES)}
    opts["json"] = "--json" in argv
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            opts[key] = value if key == "kinds" else int(value)
    return opts


def main(argv):
    started = time.ticks_ms()
    opts = options(argv)
    random.seed(opts["seed"])
    specs = make_specs(1 + opts["warmup"] + opts["commits"] + 1)
    print("%(commits)d commits after %(warmup)d warm-up, stride %(stride)d, seed %(seed)d"
          % opts + "; tokens like %s" % short(specs[1][0]))
    if opts["double"]:
        rows = [double(kind, opts, specs) for kind in opts["kinds"].split(",")]
        for row in rows:
            print("RESULT " + json.dumps(row))
        return 1 if sum(row["lost"] + row["garbage"] + row["broken"] + row["allocs"]
                        for row in rows) else 0
    if opts["trace"]:
        rows = [show_trace(kind, opts, specs) for kind in opts["kinds"].split(",")]
        return 1 if sum(row["lost"] + row["garbage"] + row["broken"] for row in rows) else 0
    rows = []
    for kind in opts["kinds"].split(","):
        rows.append(sweep(kind, opts, specs))
        if opts["json"]:
            print("RESULT " + json.dumps(rows[-1]))
    print(table(rows))
    print(LEGEND)
    bad = sum(row["lost"] + row["garbage"] + row["broken"] for row in rows)
    print("invariant (0 lost, 0 garbage, 0 broken after recovery): %s; %.1f s in all"
          % ("held" if not bad else "VIOLATED",
             time.ticks_diff(time.ticks_ms(), started) / 1000))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
