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
#
# A commit allocates little: the record goes to flash as three str pieces (the token is
# never copied), its crc32 taken piece by piece, and the read-back goes through one small
# buffer kept for the store's life.
from binascii import crc32

SLOTS = ("token.a/record", "token.b/record")
NEVER = "-"
UNKNOWN = "?"
DEAD = -1  # `due` of a token the server refused for good (410)

try:
    crc32("")  # MicroPython: a str is a buffer, nothing to copy
    _crc = crc32
except TypeError:  # CPython
    _crc = lambda s, c=0: crc32(s.encode(), c)  # noqa: E731


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


def fingerprint(token):
    return "%08x" % _crc(token)


def _parts(rec):
    # the record as the pieces a commit writes: header and fields, token, newline
    s = "%d %s %d %s %d %s " % (rec.gen, rec.exp, rec.due, rec.seed, rec.at, rec.why)
    return "RT1 %08x " % _crc(rec.token, _crc(s)) + s, rec.token, "\n"


def encode(rec):
    return "".join(_parts(rec)).encode()


def decode(data):
    # None for anything short of a complete, checksummed record
    try:
        p = data[13:data.index(b"\n")]
        if data[:13] != b"RT1 %08x " % crc32(p):
            return None
        p = p.decode().split(" ", 6)  # the first format had 5 fields, a token no space
        if len(p) < 7:
            p = p[:4] + ["0", "-", p[4]]
        e = p[1]
        return Record(p[6], e if e in (NEVER, UNKNOWN) else int(e), int(p[2]), p[3],
                      int(p[0]), int(p[4]), p[5])
    except (ValueError, IndexError):  # UnicodeError is a ValueError
        return None


class Files:
    """The flash edge: whole-file reads and in-place writes under one directory."""

    def __init__(self, root=""):
        self.root = root + "/" if root else ""  # prefixes every name
        self.buf = memoryview(bytearray(64))  # the read-back's, kept: no garbage per commit

    def read(self, name, limit):
        """None if there is no such file; b"" if it is there but cannot be read (e.g. a
        FAT directory entry torn by a cut reads as EIO): damage, not an empty slot."""
        try:
            with open(self.root + name, "rb") as f:
                return f.read(limit)
        except OSError as e:
            return None if e.args[0] == 2 else b""  # ENOENT

    def write(self, name, parts):
        """Writes the str pieces over the start of the file, in place (no truncation, no
        new allocation), closes it and reads them back: True if they are there. Only a
        missing file, or one a cut left unwritable (a torn FAT entry), is made anew, and
        its directory with it (the first commit)."""
        name = self.root + name
        mode = "r+"
        while 1:
            try:
                n = c = 0
                with open(name, mode) as f:
                    for s in parts:
                        n += f.write(s)
                        c = _crc(s, c)
                break
            except OSError as e:
                if e.args[0] == 28 or mode == "w":  # ENOSPC: the old record stays
                    raise
                import os

                try:
                    os.mkdir(name[:-7])
                except OSError as e:
                    # EEXIST: it is there. Anything else, e.g. no space (FAT says
                    # EACCES), is the commit's failure, not a later ENOENT.
                    if e.args[0] != 17:
                        raise
                try:
                    os.rename(name, name + ".bad")  # a torn entry cannot even be removed
                except OSError:
                    pass
                mode = "w"
        r = 0
        b = self.buf
        with open(name, "rb") as f:
            while n:
                k = min(f.readinto(b), n)
                if not k:
                    return False
                r = crc32(b[:k], r)
                n -= k
        return r == c


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
        for i in 0, 1:
            rec = self.fs.read(SLOTS[i], 1201)  # a record is at most 1200 bytes
            if rec is None:
                continue
            rec = decode(rec)
            if rec is None:
                if self.log:
                    self.log("store: %s damaged" % SLOTS[i])
            elif best is None or rec.gen > best.gen:
                best, self.slot = rec, i
        self.gen = best.gen if best else 0
        return best

    def commit(self, rec):
        if self.gen is None:
            self.load()  # never overwrite a newer record we have not seen
        rec.gen = self.gen + 1
        p = _parts(rec)
        i = 1 - self.slot
        e = "record too large"
        if len(p[0]) + len(p[1]) < 1200:
            try:
                # The first commit fills both slots (and makes their directories) before
                # any later commit can need a new cluster: creating one then never
                # disturbs a record under the other.
                for j in (self.slot, i) if rec.gen == 1 else (i,):
                    if not self.fs.write(SLOTS[j], p):
                        raise OSError("read-back mismatch")
                self.slot, self.gen = i, rec.gen
                return rec
            except OSError as x:
                # a full filesystem prints as a bare "28" on MicroPython: name it
                e = "filesystem full" if x.args[0] == 28 else repr(x)
        raise StoreError("commit failed: " + e)
