from fakes.memfs import MemFS, PowerLost
from regtoken.store import DEAD, NEVER, SLOTS, UNKNOWN, Record, Store, StoreError, _parts, decode

from cases.util import raises, tok


def encode(rec):
    # the bytes a commit writes, joined (the store never joins them: the token is not copied)
    return b"".join(_parts(rec))


def commit(store, n, exp=1800000000):
    return store.commit(Record(tok(n), exp, 1799990000, "0badf00d"))


def test_empty_store_loads_none():
    assert Store(MemFS()).load() is None


def test_round_trip_every_field():
    fs = MemFS()
    commit(Store(fs), 1, exp=NEVER)
    rec = Store(fs).load()
    assert (rec.token, rec.exp, rec.due, rec.seed, rec.gen) == (tok(1), NEVER, 1799990000,
                                                                 "0badf00d", 1)
    Store(fs).commit(Record(tok(2), UNKNOWN, DEAD))
    s = Store(fs)
    s.load()
    rec = s.load()
    assert (rec.token, rec.exp, rec.due) == (tok(2), UNKNOWN, DEAD)


def test_commits_alternate_slots_and_newest_wins():
    fs = MemFS()
    s = Store(fs)
    s.load()
    for n in range(1, 6):
        commit(s, n)
        assert Store(fs).load().token == tok(n)
    assert sorted(fs.files) == sorted(SLOTS)
    assert fs.writes == 6  # one write per commit (the first fills both), no temporary file


def test_every_corruption_of_the_newest_falls_back_to_the_previous():
    base = MemFS()
    s = Store(base)
    commit(s, 1)
    commit(s, 2)  # newest in slot b
    good = base.files[SLOTS[1]]
    end = good.index(b"\n")
    damaged = [good[:end], good[:10], b"", good.replace(b"A", b"B", 1), b"\x00" * len(good),
               good[:20] + bytes([good[20] ^ 1]) + good[21:], b"RT1 " + b"\xff" * 40 + b"\n",
               b"\xff" * len(good)]
    for bad in damaged:
        fs = MemFS()
        fs.files = dict(base.files)
        fs.files[SLOTS[1]] = bad
        rec = Store(fs).load()
        assert rec is not None and rec.token == tok(1)
        assert fs.files[SLOTS[1]] == bad  # left in place: nothing renamed, nothing created
        s2 = Store(fs)
        s2.load()
        commit(s2, 3)  # rewrites the damaged slot, in place
        assert Store(fs).load().token == tok(3)
        assert sorted(fs.files) == sorted(SLOTS) and fs.files[SLOTS[1]].startswith(b"RT1 ")


def test_both_damaged_is_a_clear_empty_state_and_recovers():
    fs = MemFS()
    s = Store(fs)
    commit(s, 1)
    commit(s, 2)
    fs.files[SLOTS[0]] = b"junk"
    fs.files[SLOTS[1]] = b""
    fs.files["token.tmp"] = b"stray"
    s = Store(fs)
    assert s.load() is None
    assert fs.files[SLOTS[0]] == b"junk" and fs.files[SLOTS[1]] == b""  # no copies made
    commit(s, 3)
    assert Store(fs).load().token == tok(3)
    assert sorted(fs.files) == sorted(SLOTS + ("token.tmp",))


def test_oversized_file_is_damage_not_a_crash():
    fs = MemFS()
    fs.files[SLOTS[0]] = b"RT1 " + b"A" * 20000  # 16x the bound; a Pico's heap holds it
    assert Store(fs).load() is None


def test_a_commit_refused_for_another_reason_names_the_oserror():
    # MicroPython prints an errno it has no name for bare: "commit failed: 20" said nothing
    class NotADir(MemFS):
        def write(self, name, parts):
            raise OSError(20)  # ENOTDIR: a slot's directory replaced by a file

    e = raises(StoreError, commit, Store(NotADir()), 1)
    assert str(e).startswith("commit failed: OSError ") and "20" in str(e), str(e)


def test_full_filesystem_keeps_old_token_and_says_so():
    fs = MemFS()
    s = Store(fs)
    commit(s, 1)
    fs.full = True
    e = raises(StoreError, commit, s, 2)
    assert "commit failed" in str(e)
    assert Store(fs).load().token == tok(1)
    fs.full = False
    commit(s, 3)
    assert Store(fs).load().token == tok(3)


def test_power_cut_mid_commit_leaves_old_or_new():
    for cut in range(6):
        fs = MemFS()
        s = Store(fs)
        committed = None
        fs.cut_after = cut
        try:
            for n in range(1, 6):
                commit(s, n)
                committed = n
        except PowerLost:
            pass
        rec = Store(fs).load()
        being = tok((committed or 0) + 1)
        if committed is None:
            assert rec is None or rec.token == being
        else:
            assert rec.token in (tok(committed), being)


def test_record_format_is_checked():
    data = encode(Record(tok(1), 5, 6, "-", 7))
    assert decode(data).token == tok(1)
    assert decode(data + b"   padding or an older, longer record").token == tok(1)
    assert decode(data[:-1]) is None
    assert decode(b"RT2" + data[3:]) is None


def test_commit_before_load_never_rolls_back_a_newer_record():
    fs = MemFS()
    s = Store(fs)
    for n in range(1, 4):
        commit(s, n)
    commit(Store(fs), 4)  # a fresh Store that was never loaded
    assert Store(fs).load().token == tok(4)


def test_shorter_record_over_a_longer_one_in_place():
    fs = MemFS()
    s = Store(fs)
    s.commit(Record(tok(1, size=1000), 5, 6, "-"))
    s.commit(Record(tok(2), 5, 6, "-"))
    s.commit(Record(tok(3, size=100), 5, 6, "-"))  # over slot a's 1000-character record
    assert Store(fs).load().token == tok(3, size=100)


def test_commit_time_and_hold_round_trip_and_first_format_still_loads():
    rec = decode(encode(Record(tok(1), 5, 6, "-", 7, at=1800000000, why="forbidden")))
    assert (rec.at, rec.why, rec.gen, rec.token) == (1800000000, "forbidden", 7, tok(1))
    # a record written by the first format (no at, no why) after a firmware update
    from binascii import crc32

    body = ("3 1800000000 1799990000 0badf00d " + tok(2)).encode()
    old = b"RT1 " + ("%08x" % (crc32(body) & 0xFFFFFFFF)).encode() + b" " + body + b"\n"
    rec = decode(old)
    assert (rec.token, rec.gen, rec.exp, rec.due, rec.at, rec.why) == (
        tok(2), 3, 1800000000, 1799990000, 0, "-")


def test_a_damaged_slot_is_logged_without_its_bytes():
    fs = MemFS()
    commit(Store(fs), 1)
    fs.files[SLOTS[1]] = b"RT1 0000 " + tok(5).encode()
    lines = []
    assert Store(fs, lines.append).load().token == tok(1)
    assert len(lines) == 1 and "damaged" in lines[0] and tok(5)[:8] not in lines[0]
