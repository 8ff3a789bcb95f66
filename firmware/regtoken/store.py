# The token store: two slot files and an atomic swap that needs no atomic rename.
#
# A commit writes the whole record, in place, into the slot that does NOT hold the newest
# valid record, closes it (which syncs) and reads it back. A reader takes the valid record
# with the highest generation. A cut at any instant damages at most the slot being
# written; the other still holds the previous commit. Nothing is ever renamed: FAT's
# rename is not atomic.
#
# FAT on raw flash erases a whole sector before it programs it, so no commit may allocate:
# the slots live in two directories (their entries sit in different sectors), both files
# exist from the first commit on, and a slot is only ever rewritten in place. A damaged
# slot is left where it is (logged, not copied: a copy would allocate) and the next commit
# rewrites it in place.
#
# Record (one line, ASCII):  RT1 <crc32 hex> <gen> <exp> <due> <seed> <at> <why> <token>\n
#   crc32 covers everything after it; exp is Unix seconds, "-" (never expires) or "?"
#   (unknown, imported without one); due is the next scheduled refresh (jitter included),
#   0 for none, -1 once the server said 410, -2 for a provisioning operation (selfprov.py:
#   token is "<id> <code>", exp its expiry); seed fingerprints the provisioning token the
#   lineage came from; at is the time of the commit (a floor for an unset clock); why is
#   the reason of a hold that must survive a restart ("forbidden"; selfprov.py's 423,
#   "disabled<s>-empty" or "disabled<s>-gone" with the hold's seconds, whose token is "-"
#   when the store had none), an operation's (or a cancelled one's) reason for having no
#   token ("empty" or "gone": status() says it again after a restart) or "-". Records of
#   the first format (no at, no why) still load. Bytes after the newline are left over from
#   an older, longer record.
#
# What a commit allocates: the record goes to flash in four pieces (header, fields, token,
# newline), never joined: str.encode() shares the str's bytes on MicroPython, so the token
# is never copied. The read-back compares crc32s, reading through one 64-byte buffer kept
# for the store's life.
from binascii import crc32

SLOTS = ("token.a/record", "token.b/record")
NEVER = "-"
UNKNOWN = "?"
DEAD = -1  # `due` of a token the server refused for good (410)


# a commit that did not reach the flash. Made by type(), as error.py's ConfigError: no
# class body to store in the .mpy and run
StoreError = type("StoreError", (Exception,), {})


class Record:
    def __init__(self, token, exp=UNKNOWN, due=0, seed="-", gen=0, at=0, why="-"):
        self.token = token
        self.exp = exp
        self.due = due
        self.seed = seed
        self.gen = gen
        self.at = at
        self.why = why


def fingerprint(token):
    return "%08x" % crc32(token.encode())


def _parts(rec):
    # the record's bytes as the pieces a commit writes
    s = ("%d %s %d %s %d %s " % (rec.gen, rec.exp, rec.due, rec.seed, rec.at, rec.why)).encode()
    t = rec.token.encode()
    return ("RT1 %08x " % crc32(t, crc32(s))).encode(), s, t, b"\n"


def decode(data):
    # None for anything short of a complete, checksummed record
    try:
        p = data[13:data.index(b"\n")]
        if data[:13] == ("RT1 %08x " % crc32(p)).encode():
            p = p.decode().split(" ", 6)  # the first format had 5 fields, a token no space
            if len(p) < 7:
                p = p[:4] + ["0", "-", p[4]]
            g, e, d, s, a, w, t = p
            return Record(t, e if e in "-?" else int(e), int(d), s, int(g), int(a), w)
    except ValueError:  # UnicodeError is one; so is a short list to unpack
        pass


def _put(name, mode, parts):
    n = 0
    with open(name, mode) as f:
        for s in parts:
            n += f.write(s)
        # an older, longer record's tail past ours (written over in place, not truncated):
        # blanked, so that no piece of a revoked token stays on the flash
        k = f.seek(0, 2) - n
        if k > 0:
            f.seek(n)
            f.write(b"\n" * k)
    return n


class Store:
    # fs: the directory of the slots ("" or None: the current one), or a flash edge: an
    # object with read(name, limit) and write(name, parts) like this class's own (a Files,
    # a test's fake). Given a directory, a Store is its own flash edge.
    def __init__(self, fs=None, log=None):
        if hasattr(fs, "write"):
            self.fs = fs
        else:
            # the read-back's buffer, kept: no garbage per commit
            self.fs, self.root, self.buf = self, fs + "/" if fs else "", memoryview(bytearray(64))
        self.log = log
        self.slot = 1  # slot of the newest record; the next commit writes the other one
        self.gen: int = None  # type: ignore[assignment]  # unknown until load()

    def read(self, name, limit):
        # None if there is no such file; b"" if it is there but cannot be read (e.g. a FAT
        # directory entry torn by a cut reads as EIO): damage, not an empty slot
        try:
            with open(self.root + name, "rb") as f:
                # read(limit) would take `limit` bytes in one piece first, though a slot is
                # the length of the longest record it has held (~300 bytes): at boot, with
                # the heap at its fullest, ask only for what is there
                n = f.seek(0, 2)
                f.seek(0)
                return f.read(min(n, limit))
        except OSError as e:
            return None if e.errno == 2 else b""  # ENOENT

    def write(self, name, parts):
        # The pieces over the start of the file, in place: no truncation, no new
        # allocation; then closed and read back (OSError if they are not there). Only a
        # missing file (the first commit: its directory too), or one a cut left
        # unwritable (a torn FAT entry), is made anew.
        name = self.root + name
        try:
            n = _put(name, "r+b", parts)
        except OSError as e:
            if e.errno == 28:  # ENOSPC: the commit fails, the old record stays
                raise
            import os

            for d in SLOTS:  # both slots' directories, before a record is in either:
                # made later, the second would rewrite the sector of the root directory
                # that holds the first's entry (raw-flash FAT erases it first: a cut there
                # lost both)
                try:
                    os.mkdir(self.root + d[:-7])
                except OSError as e:
                    # EEXIST: it is there. Anything else, e.g. no space (FAT says EACCES),
                    # is the commit's failure, not a later ENOENT.
                    if e.errno != 17:
                        raise
            d = name.rpartition("/")[0]
            if not os.stat(d)[0] & 0x4000:  # a file where the slot's directory goes (put
                os.rename(d, d + ".bad")  # there by hand): set aside, not a commit that
                os.mkdir(d)  # fails for ever
            try:
                os.rename(name, name + ".bad")  # a torn entry cannot even be removed
            except OSError:
                pass
            n = _put(name, "wb", parts)
        c = r = 0
        for s in parts:
            c = crc32(s, c)
        b = self.buf
        with open(name, "rb") as f:
            while n:
                k = min(f.readinto(b), n)
                if not k:
                    break
                r = crc32(b if k == 64 else b[:k], r)  # a slice is a new object
                n -= k
        if n or r != c:
            raise OSError("read-back mismatch")

    def load(self):
        # Newest valid record, or None. A damaged slot is logged and left in place: the
        # next commit rewrites it.
        best = None
        for i in 0, 1:
            rec = self.fs.read(SLOTS[i], 1201)  # a record is at most 1200 bytes
            if rec is not None:
                rec = decode(rec)
                if not rec:
                    if self.log:
                        self.log("store: %s damaged" % SLOTS[i])
                elif not best or rec.gen > best.gen:
                    best, self.slot = rec, i
        self.gen = best.gen if best else 0
        return best

    def commit(self, rec):
        if self.gen is None:
            self.load()  # never overwrite a newer record we have not seen
        rec.gen = g = self.gen + 1
        p = _parts(rec)
        i = 1 - self.slot
        try:
            if len(p[1]) + len(p[2]) > 1186:
                raise OSError("record too large")
            # The first commit fills both slots (and makes their directories) before any
            # later commit can need a new cluster: creating one then never disturbs a
            # record under the other.
            for j in 0, 1:
                if j == i or g == 1:
                    self.fs.write(SLOTS[j], p)
        except OSError as e:
            # an errno prints bare on MicroPython ("28", "20"): a full filesystem named,
            # the rest an OSError's number
            raise StoreError("commit failed: " + ("filesystem full" if e.errno == 28 else
                                                  "OSError %s" % e))
        self.slot, self.gen = i, g
        return rec


Files = Store  # the flash edge of one directory (tools and tests: Store(Files(root)))
