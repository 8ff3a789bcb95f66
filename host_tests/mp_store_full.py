# A full filesystem during a commit, on MicroPython's own drivers (MicroPython only:
# CPython cannot fill a littlefs image). Run by test_powercut.py through mp_runner:
#
#   micropython host_tests/mp_runner.py mp_store_full
#
# A commit rewrites its slot's file in place (regtoken/store.py). Whether that needs free
# space depends on the filesystem, so every case asserts the guarantee that holds either
# way: the old token stays intact; the commit either succeeds and loads back, or fails
# with a StoreError that names the cause, and the old token loads, also after a power-up;
# once space is freed, the next commit (same Store object, as the device loop keeps it)
# works. And it pins down which way each filesystem goes:
# - littlefs, default geometry: copy-on-write, so even an in-place rewrite needs a free
#   block: every commit into a full filesystem fails.
# - littlefs with progsize=128: a record of up to 512 bytes lives inline in its
#   directory's metadata, which a filler file does not use up: commits still fit.
# - FAT: an in-place rewrite needs no cluster and fits; a slot file that does not exist
#   yet (the first commit ever, which creates both, or after a damaged file was set
#   aside) needs one and fails.
import os

from cases.util import raises, tok
from powercut import images
from regtoken.store import SLOTS, Files, Record, Store, StoreError

WHERE = "/full"
BOOT = "/full-boot"
LFS2_INLINE = ("lfs2-4096-p128",)
FAT = ("fat", "fat-flash")


def commit(store, n):
    return store.commit(Record(tok(n, 200 + 20 * n), 1800000000 + n, 1799990000, "0badf00d"))


def token_of(n):
    return tok(n, 200 + 20 * n) if n else None


def fill(where, size):
    """Filler files until not even a small one fits. Several files, not one growing
    file: littlefs copies the last block of a file it appends to, so one growing
    file always leaves a block free."""
    n = 0
    while size >= 16:
        try:
            with open("%s/filler.%d" % (where, n), "wb") as f:
                f.write(b"\x55" * size)
            n += 1
        except OSError:
            size //= 2
    return n


def empty(where):
    for name in os.listdir(where):
        if name.startswith("filler."):
            os.remove(where + "/" + name)


def loaded():
    rec = Store(Files(WHERE)).load()
    return rec.token if rec else None


def token_after_power_up(kind, dev):
    """What a boot right now would find: a fresh driver on a copy of the bytes, mounted
    beside the live filesystem, which carries on undisturbed."""
    images.mount(images.device(kind, dev.image()), kind, BOOT)
    try:
        rec = Store(Files(BOOT)).load()
    finally:
        images.unmount(BOOT)
    return rec.token if rec else None


def full_store(kind, commits):
    """Mounts a fresh `kind`, commits tok(1)..tok(commits), fills the filesystem.
    Returns the device and the store."""
    dev = images.blank(kind)
    images.unmount(WHERE)
    images.mount(dev, kind, WHERE)
    store = Store(Files(WHERE))
    store.load()
    for n in range(1, commits + 1):
        commit(store, n)
    assert fill(WHERE, images.block_size(kind)) > 0
    return dev, store


def attempt(store, n):
    """The StoreError of commit n, or None if it returned."""
    try:
        commit(store, n)
    except StoreError as e:
        return e
    return None


def fits(kind, commits):
    """Whether a commit after `commits` earlier ones fits into a full `kind`."""
    if commits == 0:
        return False  # the directories need space on every filesystem
    if kind in LFS2_INLINE:
        return True
    return kind in FAT  # both slot files exist from the first commit: rewritten in place


def assert_clear(kind, e, where=None):
    """A full filesystem is named as such, not by a consequence (a missing directory)."""
    msg = str(e)
    where = where or kind
    assert msg.startswith("commit failed") and "ENOENT" not in msg, "%s: %s" % (where, msg)
    if kind not in FAT:  # FAT's mkdir says EACCES when no cluster is free
        assert "full" in msg, "%s: %s" % (where, msg)


def full_commit_case(kind, commits):
    where = "%s after %d commits" % (kind, commits)
    dev, store = full_store(kind, commits)
    e = attempt(store, 10)
    if e is None:
        assert loaded() == token_of(10), where
        assert token_after_power_up(kind, dev) == token_of(10), where
    else:
        assert_clear(kind, e, where)
        assert loaded() == token_of(commits), where
        assert token_after_power_up(kind, dev) == token_of(commits), where
    assert (e is None) == fits(kind, commits), "%s: %s" % (where, e)
    empty(WHERE)
    commit(store, 11)
    assert loaded() == token_of(11), where
    assert token_after_power_up(kind, dev) == token_of(11), where
    images.unmount(WHERE)


def test_the_first_commit_ever_into_a_full_filesystem_fails_clearly():
    for kind in images.ALL:
        full_commit_case(kind, 0)


def test_a_full_filesystem_after_the_first_commit():
    for kind in images.ALL:
        full_commit_case(kind, 1)  # the first commit created both slot files


def test_a_commit_that_rewrites_its_slot_in_place():
    for kind in images.ALL:
        full_commit_case(kind, 2)
        full_commit_case(kind, 3)


def test_full_fat_rewrite_in_place_leaves_the_newest_slot_alone():
    for kind in FAT:
        dev, store = full_store(kind, 3)
        newest = WHERE + "/" + SLOTS[store.slot]  # token.a holds tok(3)
        with open(newest, "rb") as f:
            kept = f.read()
        assert attempt(store, 4) is None, kind  # into token.b, over tok(2)
        with open(newest, "rb") as f:
            assert f.read() == kept, kind
        assert token_after_power_up(kind, dev) == token_of(4), kind
        images.unmount(WHERE)


def test_repeated_failures_keep_the_old_token():
    for kind, commits in (("lfs2-512", 2), ("lfs2-4096", 1)):  # FAT rewrites in place
        dev, store = full_store(kind, commits)
        for n in (5, 6, 7):
            assert_clear(kind, raises(StoreError, commit, store, n))
        assert loaded() == token_of(commits), kind
        assert token_after_power_up(kind, dev) == token_of(commits), kind
        images.unmount(WHERE)
