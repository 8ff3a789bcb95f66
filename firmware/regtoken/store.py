# The token store: two slot files and an atomic swap that needs no atomic rename.
#
# A commit writes the whole record into the slot that does NOT hold the newest valid
# record, closes (which syncs) and reads it back. A reader takes the valid record with
# the highest generation. A cut at any instant damages at most the slot being written,
# and the other slot still holds the previous commit. Nothing is ever renamed over a live
# record: FAT's rename is not atomic.
#
# FAT on raw flash erases a whole sector before it programs it, so the layout also keeps
# each slot's bytes out of every sector the other slot needs: the slots live in two
# directories (their directory entries, rewritten at each close, sit in different
# sectors), both slot files exist from the first commit on, and a slot is rewritten in
# place, so that a commit never allocates a cluster nor touches the allocation table.
#
# Record (one line, ASCII):  RT1 <crc32 hex> <gen> <exp> <due> <seed> <token>\n
#   crc32 covers everything after it; exp is Unix seconds, "-" (never expires) or
#   "?" (unknown, imported without an expiration); due is the Unix time of the next
#   scheduled refresh (jitter included, so a restart keeps it), 0 for none, -1 once the
#   server said 410, -2 for a provisioning operation (selfprov.py: token is "<id> <code>",
#   exp its expiry); seed fingerprints the provisioning token this lineage came from, so
#   an old config cannot import it twice. Bytes after the newline are what is left of an
#   older, longer record.

try:
    from binascii import crc32
except ImportError:  # ports built without it: slower, same numbers
    def crc32(data, value=None):  # type: ignore[misc]  # stub: value is Optional[Any]
        crc = (value or 0) ^ 0xFFFFFFFF
        for b in data:
            crc ^= b
            for _ in range(8):
                crc = (crc >> 1) ^ (0xEDB88320 & -(crc & 1))
        return crc ^ 0xFFFFFFFF

SLOTS = ("token.a/record", "token.b/record")
MAX_RECORD = 1200
NEVER = "-"
UNKNOWN = "?"
DEAD = -1  # `due` of a token the server refused for good (410)
ENOSPC = 28  # MicroPython's own number on every port; its errno table often lacks the name
ENOENT = 2
EEXIST = 17


class StoreError(Exception):
    pass


class Record:
    def __init__(self, token, exp=UNKNOWN, due=0, seed="-", gen=0):
        self.token = token
        self.exp = exp
        self.due = due
        self.seed = seed
        self.gen = gen


def fingerprint(token):
    return "%08x" % (crc32(token.encode()) & 0xFFFFFFFF)


def encode(rec):
    body = "%d %s %d %s %s" % (rec.gen, rec.exp, rec.due, rec.seed, rec.token)
    return ("RT1 %08x %s\n" % (crc32(body.encode()) & 0xFFFFFFFF, body)).encode()


def decode(data):
    # None for anything short of a complete, checksummed record
    try:
        end = data.find(b"\n")
        if end < 0 or data[:4] != b"RT1 ":
            return None
        body = data[13:end]
        if data[12:13] != b" " or int(data[4:12], 16) != crc32(body) & 0xFFFFFFFF:
            return None
        gen, exp, due, seed, token = body.decode().split(" ", 4)
        if exp not in (NEVER, UNKNOWN):
            exp = int(exp)
        return Record(token, exp, int(due), seed, int(gen))
    except (ValueError, UnicodeError):
        return None


class Files:
    """The flash edge: whole-file reads and writes under one directory."""

    def __init__(self, root=""):
        self.root = root

    def path(self, name):
        return self.root + "/" + name if self.root else name

    def read(self, name, limit):
        """None if there is no such file; b"" if it is there but cannot be read (e.g. a
        FAT directory entry torn by a cut reads as EIO): damage, not an empty slot."""
        try:
            with open(self.path(name), "rb") as f:
                return f.read(limit)
        except OSError as e:
            return None if e.args[:1] == (ENOENT,) else b""

    def write(self, name, data):
        """Overwrite from the start, in place: no truncation, no new allocation."""
        try:
            f = open(self.path(name), "r+b")
        except OSError:
            f = open(self.path(name), "wb")
        with f:
            f.write(data)
            f.flush()

    def mkdir(self, name):
        import os

        try:
            os.mkdir(self.path(name))
        except OSError as e:
            # EEXIST: it is there (FAT then writes nothing). Anything else, e.g. no space
            # (FAT's driver says EACCES then), is the commit's failure, not a later ENOENT.
            if e.args[:1] != (EEXIST,):
                raise

    def rename(self, old, new):
        import os

        try:
            os.remove(self.path(new))
        except OSError:
            pass
        os.rename(self.path(old), self.path(new))


class Store:
    def __init__(self, fs=None, log=None):
        self.fs = fs if fs is not None else Files()
        self.log = log
        self.slot = 1  # slot of the newest record; the next commit writes the other one
        self.gen = None  # unknown until load()

    def load(self):
        """Newest valid record, or None. Damaged slots are set aside for diagnosis."""
        best = None
        for i, name in enumerate(SLOTS):
            data = self.fs.read(name, MAX_RECORD + 1)
            if data is None:
                continue
            rec = decode(data)
            if rec is None:
                self._set_aside(name)
            elif best is None or rec.gen > best.gen:
                best, self.slot = rec, i
        self.gen = best.gen if best else 0
        return best

    def _set_aside(self, name):
        try:
            self.fs.rename(name, name + ".bad")
            if self.log:
                self.log("store: damaged %s kept as %s.bad" % (name, name))
        except OSError:
            pass

    def commit(self, rec):
        if self.gen is None:
            self.load()  # never overwrite a newer record we have not seen
        rec.gen = (self.gen or 0) + 1
        data = encode(rec)
        if len(data) > MAX_RECORD:
            raise StoreError("record too large")
        name = SLOTS[1 - self.slot]
        try:
            if rec.gen == 1:
                # Both directories and both files before any later commit can need a new
                # cluster: creating one can then never disturb a record under the other.
                for slot in SLOTS:
                    self.fs.mkdir(slot.split("/")[0])
                self.fs.write(SLOTS[self.slot], data)
            self.fs.write(name, data)
            ok = (self.fs.read(name, MAX_RECORD + 1) or b"")[: len(data)] == data
        except OSError as e:
            # a full filesystem prints as a bare "28" on MicroPython: name it
            why = "filesystem full" if e.args[:1] == (ENOSPC,) else e
            raise StoreError("commit failed: %s" % why)
        if not ok:
            raise StoreError("commit failed: read-back mismatch")
        self.slot, self.gen = 1 - self.slot, rec.gen
        return rec
