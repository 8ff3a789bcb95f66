# Damaged stores on a real filesystem. Under MicroPython every case runs on each
# filesystem a board may use (MicroPython's own littlefs2 and FAT drivers on a RAM
# image); under CPython on a temporary directory. The same code, bare asserts.
#
# Every case: load() gives the newest valid token (or None), keeps each damaged slot
# as <slot>.bad, and the next commit lands beside the surviving record and loads back.
import os
import sys

from regtoken.store import SLOTS, Files, Record, Store, decode

from cases.util import tok

MICROPYTHON = sys.implementation.name == "micropython"


def roots():
    """Fresh, empty store directories to run a case in."""
    if not MICROPYTHON:
        import atexit
        import shutil
        import tempfile

        path = tempfile.mkdtemp(prefix="regtoken-store-")
        atexit.register(shutil.rmtree, path, True)
        return [path]
    from fakes import flash

    out = []
    for kind in flash.NAMES:
        where = "/store-" + kind
        flash.unmount(where)
        flash.mount(flash.blank(kind), kind, where)
        out.append(where)
    return out


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
    with open(root + "/" + name, "wb") as f:
        f.write(data)


def flip(data, i, bit=0x01):
    return data[:i] + bytes([data[i] ^ bit]) + data[i + 1 :]


def slot_tokens(root):
    out = []
    for name in SLOTS:
        rec = decode(read(root, name)) if name in os.listdir(root) else None
        out.append(rec.token if rec else None)
    return out


def recovers(root, expected, damaged, where=""):
    """expected: the token load() must give (or None); damaged: {slot: bytes put there}."""
    store = Store(Files(root))
    rec = store.load()
    got = rec.token if rec else None
    assert got == expected, "%s: loaded %r" % (where, got and got[:6])
    names = os.listdir(root)
    for name, data in damaged.items():
        assert name not in names, "%s: %s still there" % (where, name)
        assert read(root, name + ".bad") == data, "%s: %s.bad differs" % (where, name)
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
    damage_case(lambda good: flip(good, len(good) // 2), True, "flip newest")


def test_bit_flip_in_the_older_slot_keeps_the_newest_token():
    damage_case(lambda good: flip(good, 30), False, "flip older")


def test_a_flip_of_any_byte_is_caught():
    for root in roots():
        newest, _ = stored(root, 2)
        good = read(root, newest)
        for i in range(len(good)):
            write(root, newest, flip(good, i))
            rec = Store(Files(root)).load()
            assert rec is not None and rec.token == tok(1, 220), "flip at byte %d" % i
            assert read(root, newest + ".bad") == flip(good, i)


def test_truncated_newest_slot_falls_back():
    for keep in (1, 12, 13, 100, -2, -1):
        damage_case(lambda good, keep=keep: good[:keep], True, "truncated to %d" % keep)


def test_zero_length_slot_falls_back():
    damage_case(lambda good: b"", True, "zero length")


def test_erased_or_zeroed_or_oversized_slot_falls_back():
    for junk in (b"\xff" * 512, b"\x00" * 512, b"RT1 " + b"A" * 5000 + b"\n"):
        damage_case(lambda good, junk=junk: junk, True, "junk %d" % len(junk))


def test_stray_files_are_left_alone():
    strays = {"token.tmp": b"half a rec", "token.a.tmp": b"", "token.a.bad": b"old damage",
              "token.c": b"RT1 00000000 9 - 0 - x\n"}
    for root in roots():
        stored(root)
        for name, data in strays.items():
            write(root, name, data)
        recovers(root, tok(3, 260), {}, "strays on " + root)
        for name, data in strays.items():
            assert read(root, name) == data, name


def test_both_slots_damaged_load_none_and_the_store_recovers():
    for root in roots():
        newest, previous = stored(root)
        bad = {newest: flip(read(root, newest), 50), previous: read(root, previous)[:40]}
        for name, data in bad.items():
            write(root, name, data)
        recovers(root, None, bad, "both damaged on " + root)


def test_damaged_slot_with_the_other_missing_loads_none():
    for root in roots():
        newest, previous = stored(root, 1)  # only the first slot exists
        assert previous not in os.listdir(root)
        bad = {newest: read(root, newest)[:-1]}
        write(root, newest, bad[newest])
        recovers(root, None, bad, "lone damaged slot on " + root)


def test_a_later_damage_replaces_the_earlier_bad_copy():
    for root in roots():
        newest, _ = stored(root)
        write(root, newest, b"first damage")
        Store(Files(root)).load()
        write(root, newest, b"second damage")
        recovers(root, tok(2, 240), {newest: b"second damage"}, "twice on " + root)
