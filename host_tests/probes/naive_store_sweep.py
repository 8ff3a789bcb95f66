# The power-cut sweep run against a store that is NOT atomic, to show the sweep has teeth
# (test_powercut.py): the firmware's Store.commit replaced by a naive one, then the sweep.
#
#   micropython host_tests/probes/naive_store_sweep.py in-place|tmp-then-rename
#
# in-place: one slot, rewritten in place (unpadded). tmp-then-rename: one slot, written
# beside and renamed over it (remove, then rename).
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../tools")
sys.path.insert(0, HERE + "/../../firmware")

from powercut import sweep  # noqa: E402
from regtoken import store  # noqa: E402


def in_place(fs, rec):
    fs.write(store.SLOTS[0], store._parts(rec))


def tmp_then_rename(fs, rec):
    fs.write("token.a/record.tmp", store._parts(rec))
    try:  # remove, then rename: what FAT's driver does on its own
        os.remove(fs.root + store.SLOTS[0])
    except OSError:
        pass
    os.rename(fs.root + "token.a/record.tmp", fs.root + store.SLOTS[0])


WRITES = {"in-place": in_place, "tmp-then-rename": tmp_then_rename}


def naive(write):
    def commit(self, rec):
        if self.gen is None:
            self.load()
        rec.gen = self.gen + 1
        try:
            os.mkdir(self.fs.root + "token.a")
        except OSError:  # EEXIST
            pass
        write(self.fs, rec)
        self.gen = rec.gen
        return rec

    return commit


if __name__ == "__main__":
    store.Store.commit = naive(WRITES[sys.argv[1]])  # type: ignore[method-assign]
    sweep.main(["--commits=4", "--json"])
