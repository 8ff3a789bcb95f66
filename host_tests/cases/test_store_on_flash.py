# Damaged stores on a real filesystem. Under MicroPython every case runs on each
# filesystem a board may use (MicroPython's own littlefs2 and FAT drivers on a RAM
# image, tools/powercut/images.py's kinds); under CPython on a temporary directory. The same
# code, bare asserts. On a board (the emulated Pico's ~225 KB heap holds no 128 KB images)
# they run on the board's own flash filesystem (littlefs2 at /) and on FAT on a 32 KiB
# RAM image ("fat-32k").
#
# The layout (regtoken/store.py): each slot is a file `record` in its own directory
# (token.a/, token.b/), a one-line record rewritten in place (no truncation: what follows
# its newline, the length of an older, longer record, is blanked to newlines).
#
# Every case: load() gives the newest valid token (or None) and leaves each damaged slot
# where it is (no .bad copy: a copy would allocate), and the next commit rewrites the
# damaged slot in place, beside the surviving record, and loads back.
import gc
import os
import sys

from regtoken import store as store_module
from regtoken.store import SLOTS, Files, Record, Store, StoreError, decode

from cases.util import tok

SECTOR = 512

MICROPYTHON = sys.implementation.name == "micropython"
BOARD = MICROPYTHON and sys.platform not in ("linux", "darwin")
OWN = "own"  # a board's own flash filesystem, at /
BOARD_KINDS = (OWN, "fat-32k")
DEVICES = {}  # type: dict  # MicroPython: mount point -> (kind, BlockDev)


def roots(kinds=None):
    """Fresh, empty store directories to run a case in."""
    if not MICROPYTHON:
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="regtoken-store-")
        atexit.register(shutil.rmtree, path, True)
        return [path]
    from powercut import images

    out = []
    if BOARD:  # what this board holds: FAT-only cases run on its small FAT image
        kinds = ("fat-32k",) if kinds else BOARD_KINDS
    for kind in kinds or images.ALL:
        where = "/store-" + kind
        if kind == OWN:
            out.append(fresh_dir(where))
            continue
        images.unmount(where)
        DEVICES.pop(where, None)  # the old image goes before the new one is made
        gc.collect()  # and its bytes are free again: a board's heap has few 32 KB holes
        dev = images.blank(kind)
        images.mount(dev, kind, where)
        DEVICES[where] = (kind, dev)
        out.append(where)
    return out


def fresh_dir(path):
    """An empty directory on the board's own filesystem (emptied if it is there)."""
    try:
        names = [e[0] for e in os.ilistdir(path)]
    except OSError:
        names = None
    for name in names or ():
        full = path + "/" + name
        if os.stat(full)[0] & 0x4000:
            fresh_dir(full)
            os.rmdir(full)
        else:
            os.remove(full)
    if names is None:
        os.mkdir(path)
    return path


def commit(store, n):
    return store.commit(Record(tok(n, 200 + 20 * n), 1800000000 + n, 1799990000, "0badf00d"))


def stored(root, commits=3):
    """A store in root after `commits` commits of tok(1).., and the slot names of the
    newest record and of the previous one."""
    store = Store(Files(root))
    store.load()
    for n in range(1, commits + 1):
        commit(store, n)
    newest = SLOTS[store.slot]
    return newest, SLOTS[1 - store.slot]


def read(root, name):
    with open(root + "/" + name, "rb") as f:
        return f.read()


def write(root, name, data):
    """Replace the file `name` (creating its directory if need be) with data."""
    folder = name.rpartition("/")[0]
    if folder and folder not in os.listdir(root):
        os.mkdir(root + "/" + folder)
    with open(root + "/" + name, "wb") as f:
        f.write(data)


def exists(root, name):
    folder, _, base = name.rpartition("/")
    try:
        return base in os.listdir(root + "/" + folder if folder else root)
    except OSError:  # no such directory
        return False


def flip(data, i, bit=0x01):
    return data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]


def line(data):
    """The record itself: everything up to its newline (the rest: an older record's tail)."""
    return data[: data.index(b"\n") + 1]


def slot_tokens(root):
    out = []
    for name in SLOTS:
        rec = decode(read(root, name)) if exists(root, name) else None
        out.append(rec.token if rec else None)
    return out


def recovers(root, expected, damaged, where=""):
    """expected: the token load() must give (or None); damaged: {slot: bytes put there}."""
    store = Store(Files(root))
    rec = store.load()
    got = rec.token if rec else None
    assert got == expected, "%s: loaded %r" % (where, got and got[:6])
    for name, data in damaged.items():
        assert read(root, name) == data, "%s: %s was touched by load()" % (where, name)
        assert not exists(root, name + ".bad"), "%s: %s.bad made" % (where, name)
    commit(store, 9)
    if expected is not None:  # the commit went to the damaged slot, not over the survivor
        assert expected in slot_tokens(root), where
    assert Store(Files(root)).load().token == tok(9, 380), where


def damage_case(make_bad, fallback_to_previous, where):
    """make_bad(good bytes) -> damaged bytes, put into the newest slot (or the older)."""
    for root in roots():
        newest, previous = stored(root)
        victim = newest if fallback_to_previous else previous
        bad = make_bad(read(root, victim))
        write(root, victim, bad)
        expected = tok(2, 240) if fallback_to_previous else tok(3, 260)
        recovers(root, expected, {victim: bad}, "%s on %s" % (where, root))


def test_bit_flip_in_the_newest_slot_falls_back_to_the_previous_token():
    damage_case(lambda good: flip(good, len(line(good)) // 2), True, "flip newest")


def test_bit_flip_in_the_older_slot_keeps_the_newest_token():
    damage_case(lambda good: flip(good, 30), False, "flip older")


def test_a_flip_of_any_byte_of_the_record_is_caught():
    for root in roots():
        newest, _ = stored(root, 2)
        good = read(root, newest)
        # every byte; on a board every 5th (and the last), whose flash commits are slow
        # under the emulator: tiers 1 and 2 flip them all
        step = 5 if BOARD else 1
        for i in sorted(set(range(0, len(line(good)), step)) | {len(line(good)) - 1}):
            write(root, newest, flip(good, i))
            rec = Store(Files(root)).load()
            assert rec is not None and rec.token == tok(1, 220), "flip at byte %d" % i
            assert not exists(root, newest + ".bad") and read(root, newest) == flip(good, i)


def test_a_flip_after_the_record_is_no_damage():
    for root in roots():
        store = Store(Files(root))
        for n, size in ((1, 900), (2, 300), (3, 200)):  # 3 lands over 1's longer record
            store.commit(Record(tok(n, size), 5, 6, "-"))
        newest = SLOTS[0]
        good = read(root, newest)
        assert len(good) > len(line(good)) + 600, root  # in place: the old tail is there
        for i in (len(line(good)), len(line(good)) + 1, len(good) - 1):
            write(root, newest, flip(good, i))
            assert Store(Files(root)).load().token == tok(3, 200), "flip at byte %d" % i
            assert exists(root, newest) and not exists(root, newest + ".bad"), root


def test_truncated_newest_slot_falls_back():
    for keep in (1, 12, 13, 100, -2, -1):  # inside the record: it loses its newline
        damage_case(lambda good, keep=keep: line(good)[:keep], True, "truncated to %d" % keep)


def test_a_record_without_its_padding_is_still_valid():
    for root in roots():
        newest, _ = stored(root)
        write(root, newest, line(read(root, newest)))
        recovers(root, tok(3, 260), {}, "unpadded on " + root)


def test_zero_length_slot_falls_back():
    damage_case(lambda good: b"", True, "zero length")


def test_erased_or_zeroed_or_oversized_slot_falls_back():
    for junk in (b"\xff" * SECTOR, b"\x00" * SECTOR, b"RT1 " + b"A" * 5000 + b"\n"):
        damage_case(lambda good, junk=junk: junk, True, "junk %d" % len(junk))


def test_stray_files_are_left_alone():
    strays = {"token.tmp": b"half a rec", "token.a.tmp": b"", "token.a.bad": b"old damage",
              "token.a/record.tmp": b"half", "token.b/junk": b"x",
              "token.c/record": b"RT1 00000000 9 - 0 - x\n"}
    for root in roots():
        stored(root)
        for name, data in strays.items():
            write(root, name, data)
        recovers(root, tok(3, 260), {}, "strays on " + root)
        for name, data in strays.items():
            assert read(root, name) == data, name


def test_a_file_where_a_slot_directory_goes_is_set_aside_and_the_slot_made_anew():
    # (a copy by hand, a tool's mistake): every commit to that slot failed for ever, so
    # nothing new was stored and a restart presented the parent again
    for root in roots():
        newest, previous = stored(root)
        folder = previous.rpartition("/")[0]
        os.remove(root + "/" + previous)
        os.rmdir(root + "/" + folder)
        write(root, folder, b"junk")
        store = Store(Files(root))
        assert store.load().token == tok(3, 260), root
        commit(store, 9)
        assert read(root, folder + ".bad") == b"junk", root
        tokens = dict(zip(SLOTS, slot_tokens(root)))
        assert tokens[newest] == tok(3, 260) and tokens[previous] == tok(9, 380), root
        assert Store(Files(root)).load().token == tok(9, 380), root


def test_both_slots_damaged_load_none_and_the_store_recovers():
    for root in roots():
        newest, previous = stored(root)
        bad = {newest: flip(read(root, newest), 50), previous: read(root, previous)[:40]}
        for name, data in bad.items():
            write(root, name, data)
        recovers(root, None, bad, "both damaged on " + root)


def test_damaged_slot_with_the_other_missing_loads_none():
    for root in roots():
        newest, previous = stored(root, 1)
        os.remove(root + "/" + previous)  # e.g. lost with its directory entry
        assert exists(root, newest) and not exists(root, previous), root
        bad = {newest: line(read(root, newest))[:-1]}
        write(root, newest, bad[newest])
        recovers(root, None, bad, "lone damaged slot on " + root)


def test_a_second_damage_of_the_same_slot_recovers_too():
    for root in roots():
        newest, _ = stored(root)
        write(root, newest, b"first damage")
        Store(Files(root)).load()
        write(root, newest, b"second damage")
        recovers(root, tok(2, 240), {newest: b"second damage"}, "twice on " + root)


def test_a_shorter_record_over_a_longer_one_in_place():
    for root in roots():
        store = Store(Files(root))
        store.commit(Record(tok(1, 1000), 5, 6, "-"))
        store.commit(Record(tok(2, 248), 5, 6, "-"))
        store.commit(Record(tok(3, 100), 5, 6, "-"))  # over slot a's 1000-character record
        data = read(root, SLOTS[0])
        assert len(data) > 1000, root  # rewritten in place, not truncated
        # and the older record's tail blanked: no piece of its token left on the flash
        assert data[len(line(data)):] == b"\n" * (len(data) - len(line(data))), root
        assert Store(Files(root)).load().token == tok(3, 100), root


def test_both_slots_exist_from_the_first_commit_and_never_grow():
    for root in roots():
        store = Store(Files(root))
        sizes = set()
        for n in range(1, 7):
            store.commit(Record(tok(n, 248), 1800000000, 1799990000, "0badf00d"))
            assert all(exists(root, name) for name in SLOTS), "%s after commit %d" % (root, n)
            sizes |= set(len(read(root, name)) for name in SLOTS)
        assert len(sizes) == 1, (root, sizes)  # same-size records: rewritten in place


# -- a torn FAT directory entry (MicroPython's FAT driver only) --


def tear_entry(root, name):
    """Unmount root and erase the last ten bytes (time, date, first cluster, size) of the
    FAT directory entry of `name`, as a cut in the program of its directory's sector on
    raw flash leaves it; then mount the result as the next power-up finds it."""
    from powercut import images

    kind, dev = DEVICES.pop(root)
    images.unmount(root)
    image = bytearray(dev.image())
    dev = None  # a board's heap holds few copies of an image
    folder, _, base = name.rpartition("/")
    clusters = images.fat_names(image)
    cluster = [c for c in clusters if clusters[c] == folder + "/"][0]
    _, _, data, spc = images.fat_regions(image)
    start = ((cluster - 2) * spc + data) * images.block_size(kind)
    entry = bytes(image).find((base.upper() + " " * 11)[:11].encode(), start)
    assert start <= entry < start + spc * images.block_size(kind), name
    image[entry + 22 : entry + 32] = b"\xff" * 10
    dev = images.device(kind, image)
    images.mount(dev, kind, root)
    DEVICES[root] = (kind, dev)


def test_an_unreadable_slot_is_rewritten_and_the_store_recovers():
    if not MICROPYTHON:
        return  # needs a FAT image to tear; CPython's directories cannot be torn
    for root in roots(("fat", "fat-flash")):
        newest, _ = stored(root)
        tear_entry(root, newest)
        store = Store(Files(root))
        assert store.load().token == tok(2, 240), root
        assert not exists(root, newest + ".bad"), root
        commit(store, 9)
        assert Store(Files(root)).load().token == tok(9, 380), root


# -- a flash that acknowledges writes it does not keep --


class Wrapped:
    """A real file the store opens through a test's open(): subclasses change one call."""

    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def seek(self, *args):  # the store's read asks for the file's length first
        return self.f.seek(*args)


class Unlanded(Wrapped):
    """A file whose writes the flash acknowledges but does not keep: zeros land instead."""

    def write(self, data):
        return self.f.write(bytes(len(data)))


def test_a_write_that_does_not_land_is_refused_by_the_read_back():
    real = open

    def lossy(name, mode="r"):
        f = real(name, mode)
        return f if mode == "rb" else Unlanded(f)

    for root in roots():
        stored(root, 2)
        store = Store(Files(root))
        store.load()
        store_module.open = lossy  # the store's module sees it in place of the builtin
        try:
            e = None
            try:
                commit(store, 3)
            except StoreError as x:
                e = x
        finally:
            del store_module.open
        assert e is not None and "read-back mismatch" in str(e), (root, e)
        assert Store(Files(root)).load().token == tok(2, 240), root
        commit(store, 9)  # the same Store object, as the device loop keeps it
        assert Store(Files(root)).load().token == tok(9, 380), root


# -- what a load costs: at boot, with the heap at its fullest --


class Counted(Wrapped):
    """A file that records, in `asked`, the size each read() asks for."""

    def __init__(self, f, asked):
        super().__init__(f)
        self.asked = asked

    def read(self, n=-1):
        self.asked.append(n)
        return self.f.read(n)


def test_reading_a_slot_asks_for_its_record_not_for_the_limit():
    # read(n) takes n bytes in one piece before it reads: read(1201) of a ~300-byte slot
    # needed 1.2 KB free in one piece at boot, when the heap is at its fullest
    real = open
    asked = []

    def counted(name, mode="r"):
        return Counted(real(name, mode), asked)

    for root in roots():
        store = Store(Files(root))
        commit(store, 1)
        del asked[:]
        store_module.open = counted  # the store's module sees it in place of the builtin
        try:
            data = Files(root).read(SLOTS[0], 1201)
        finally:
            del store_module.open
        assert decode(data).token == tok(1, 220), root
        assert asked == [len(data)] and len(data) < 400, (root, asked)
