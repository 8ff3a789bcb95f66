# MicroPython probe for `make bench`: flash wear of one token rotation, on MicroPython's own
# littlefs2 and FAT drivers over the counting block device of tools/powercut.
#
#   micropython tools/bench/probes/flash.py [ROTATIONS] [KIND,...]
#
# Filesystems: tools/powercut/images.py's littlefs2 (4 KiB blocks, MicroPython's default
# geometry as on an ESP32), the same formatted and mounted with progsize=128 (whose 512-byte
# cache keeps a ~300-byte file inline in its directory's metadata instead of in a data block
# of its own) and FAT.
# For each filesystem (a freshly formatted image) and each writer, commits 2 warm-up
# records, then ROTATIONS realistic ones (248-character base64 tokens like the server's),
# counting the programs (writeblocks) and erases (ioctl 6) each one costs, littlefs
# compactions included. Writers: the firmware's Store(Files(mountpoint)).commit, and the
# naive baseline's overwrite of token.json. Prints one RESULT line of JSON per pair:
#   {"kind": ..., "who": ..., "programs": [per rotation], "erases": [per rotation],
#    "size": bytes one rotation writes into its file}
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE)  # naive_baseline.py
sys.path.insert(0, HERE + "/../..")  # tools/: the powercut component
sys.path.insert(0, HERE + "/../../../firmware")

import binascii  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import naive_baseline  # noqa: E402
from powercut import images as flash  # noqa: E402
from regtoken.store import Files, Record, Store, fingerprint  # noqa: E402

WHERE = "/flash"
EPOCH = 1767225600  # 2026-01-01
LIFETIME = 86400
KINDS = ("lfs2-4096", "fat", "lfs2-4096-p128")


def token():
    raw = bytes(random.getrandbits(8) for _ in range(186))  # 248 base64 characters
    return binascii.b2a_base64(raw).decode().strip()


def rfc3339(t):  # the unix port counts from 1970
    y, mo, d, h, mi, s = time.gmtime(t)[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02d.000Z" % (y, mo, d, h, mi, s)


class Written(Files):
    """The store's flash edge, noting how many bytes each file write hands the driver."""

    def write(self, name, parts):
        self.written = sum(len(s) for s in parts)
        super().write(name, parts)


def firmware(where):
    files = Written(where)
    store = Store(files)
    seed = fingerprint(token())

    def commit(tok, exp):
        store.commit(Record(tok, exp, exp - LIFETIME // 2, seed))
        return files.written

    return commit


def baseline(where):
    def commit(tok, exp):
        doc = {"registrationToken": tok, "expirationTime": rfc3339(exp)}
        naive_baseline.save_token(doc, where + "/token.json")
        return len(json.dumps(doc))

    return commit


def mounted(kind):
    """A freshly formatted device of this kind, mounted at WHERE."""
    dev = flash.blank(kind)
    flash.mount(dev, kind, WHERE)
    return dev


def wear(kind, writer, rotations):
    dev = mounted(kind)
    commit = writer(WHERE)
    programs, erases, size = [], [], 0
    for i in range(rotations + 2):
        p, e = dev.programs, dev.erases
        size = commit(token(), EPOCH + LIFETIME * (i + 1))
        if i >= 2:  # after the warm-up: both slots (or token.json) exist
            programs.append(dev.programs - p)
            erases.append(dev.erases - e)
    flash.unmount(WHERE)
    return {"programs": programs, "erases": erases, "size": size}


def main(rotations, kinds):
    for kind in kinds:
        for who, writer in (("firmware", firmware), ("baseline", baseline)):
            random.seed(6)  # the same tokens for every run and writer
            doc = {"kind": kind, "who": who}
            doc.update(wear(kind, writer, rotations))
            print("RESULT " + json.dumps(doc))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100,
         sys.argv[2].split(",") if len(sys.argv) > 2 else KINDS)
