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
#   the reason of a hold that must survive a restart ("forbidden") or "-". Records of the
#   first format (no at, no why) still load. Bytes after the newline are left over from
#   an older, longer record.
from binascii import crc32

SLOTS = ("token.a/record", "token.b/record")
MAX_RECORD = 1200
NEVER = "-"
UNKNOWN = "?"
DEAD = -1  # `due` of a token the server refused for good (410)


class StoreError(Exception):
    pass


class Record:
    def __init__(self, token, exp=UNKNOWN, due=0, seed="-", gen=0, at=0, why="-"):
        self.token = token
        self.exp = exp
        self.due = due
        self.seed = seed
        self.gen = gen
        self.at = at
        self.why = why


def _crc(b):
    return "%08x" % (crc32(b) & 0xFFFFFFFF)


def fingerprint(token):
    return _crc(token.encode())


def encode(rec):
    # one str, one buffer: the checksum is written into its place in the buffer
    data = bytearray("RT1 -------- %d %s %d %s %d %s %s\n" % (
        rec.gen, rec.exp, rec.due, rec.seed, rec.at, rec.why, rec.token), "utf-8")
    data[4:12] = b"%08x" % (crc32(memoryview(data)[13:-1]) & 0xFFFFFFFF)
    return data


def decode(data):
    # None for anything short of a complete, checksummed record
    try:
        end = data.find(b"\n")
        body = data[13:end]
        if end < 0 or data[:4] != b"RT1 " or data[12:13] != b" " or \
                data[4:12] != _crc(body).encode():
            return None
        p = body.decode().split(" ", 6)  # the first format had 5 fields, a token no space
        if len(p) < 7:
            p = p[:4] + ["0", "-", p[4]]
        exp = p[1]
        return Record(p[6], exp if exp in (NEVER, UNKNOWN) else int(exp), int(p[2]), p[3],
                      int(p[0]), int(p[4]), p[5])
    except (ValueError, UnicodeError, IndexError):
        return None


def _put(path, mode, data):
    with open(path, mode) as f:
        f.write(data)
        f.flush()


class Files:
    """The flash edge: whole-file reads, read-backs and in-place writes under one
    directory."""

    def __init__(self, root=""):
        self.root = root + "/" if root else ""  # prefixes every name
        self.buf = None

    def read(self, name, limit):
        """None if there is no such file; b"" if it is there but cannot be read (e.g. a
        FAT directory entry torn by a cut reads as EIO): damage, not an empty slot."""
        try:
            with open(self.root + name, "rb") as f:
                return f.read(limit)
        except OSError as e:
            return None if e.args[0] == 2 else b""  # ENOENT

    def same(self, name, data):
        """True when the file starts with `data` (a commit's read-back), compared through
        a small buffer: no second copy of the record on the heap."""
        b = self.buf = self.buf or bytearray(64)
        i = 0
        try:
            with open(self.root + name, "rb") as f:
                while i < len(data):
                    n = f.readinto(b)
                    if not n:
                        return False
                    for k in range(min(n, len(data) - i)):
                        if b[k] != data[i + k]:
                            return False
                    i += n
        except OSError:
            return False
        return True

    def write(self, name, data):
        """Overwrite from the start, in place: no truncation, no new allocation. Only a
        missing file, or one a cut left unwritable (a torn FAT entry), is made anew."""
        p = self.root + name
        try:
            _put(p, "r+b", data)
        except OSError as e:
            if e.args[0] == 28:  # ENOSPC: the commit fails, the old record stays
                raise
            import os

            try:
                os.rename(p, p + ".bad")  # a torn entry cannot even be removed
            except OSError:
                pass
            _put(p, "wb", data)

    def mkdir(self, name):
        import os

        try:
            os.mkdir(self.root + name)
        except OSError as e:
            # EEXIST: it is there. Anything else, e.g. no space (FAT says EACCES), is the
            # commit's failure, not a later ENOENT.
            if e.args[0] != 17:
                raise


class Store:
    def __init__(self, fs=None, log=None):
        self.fs = Files(fs) if fs is None or isinstance(fs, str) else fs
        self.log = log
        self.slot = 1  # slot of the newest record; the next commit writes the other one
        self.gen: int = None  # type: ignore[assignment]  # unknown until load()

    def load(self):
        """Newest valid record, or None. A damaged slot is logged and left in place: the
        next commit rewrites it."""
        best = None
        for i in (0, 1):
            data = self.fs.read(SLOTS[i], MAX_RECORD + 1)
            if data is None:
                continue
            rec = decode(data)
            if rec is None:
                if self.log:
                    self.log("store: %s damaged; the next commit rewrites it" % SLOTS[i])
            elif best is None or rec.gen > best.gen:
                best, self.slot = rec, i
        self.gen = best.gen if best else 0
        return best

    def commit(self, rec):
        if self.gen is None:
            self.load()  # never overwrite a newer record we have not seen
        rec.gen = self.gen + 1
        data = encode(rec)
        if len(data) > MAX_RECORD:
            raise StoreError("record too large")
        name = SLOTS[1 - self.slot]
        try:
            if rec.gen == 1:
                # Both directories and both files before any later commit can need a new
                # cluster: creating one can then never disturb a record under the other.
                for slot in SLOTS:
                    self.fs.mkdir(slot[:7])
                self.fs.write(SLOTS[self.slot], data)
            self.fs.write(name, data)
            ok = self.fs.same(name, data)
        except OSError as e:
            # a full filesystem prints as a bare "28" on MicroPython: name it
            raise StoreError("commit failed: " + ("filesystem full" if e.args[0] == 28 else
                                                  repr(e)))
        if not ok:
            raise StoreError("commit failed: read-back mismatch")
        self.slot, self.gen = 1 - self.slot, rec.gen
        return rec
