# A RAM block device for os.VfsLfs2 and os.VfsFat that can lose power at any write.
#
# It implements MicroPython's extended block interface, so both drivers mount it as
# they would a board's flash. Runs under MicroPython and CPython alike (the CPython
# side only uses it as a byte store), hence no dataclasses or run-time typing.
#
# Write points: every program (writeblocks call) and every erase (ioctl 6) is one,
# numbered from 1 in a single sequence. With cut_after=k the k-th write point is the
# last one the flash receives, whole or (torn) only a prefix of it; `survivor` then
# holds the bytes the next power-up finds, and the running code gets PowerCut.
#
# Classic writes (no offset: FAT) replace whole blocks, as on an SD card. With
# erase_first they erase each block first, then program, as on raw NOR flash (e.g.
# esp32.Partition): one write point per erased block plus one for the program.
#
# With trace set to a list, every write point until the cut is appended to it as
# (point, "prog" or "erase", block, offset, length): the sweep prints them around a cut.

ERASED = 0xFF


class PowerCut(BaseException):
    """The board lost power. A BaseException so that no `except Exception` in the
    code under test can carry on as if it were an ordinary error: on a board the
    process is simply gone."""


class BlockDev:
    def __init__(self, block_size, blocks=0, data=None, cut_after=None, torn=None,
                 erase_first=False):
        self.block_size = block_size
        # always its own bytes; a blank one erased block by block, not copied from a second
        # image (on a board a 32 KB image is a large part of the heap)
        self.data = bytearray(block_size * blocks if data is None else data)
        self.blocks = len(self.data) // block_size
        # views slice without copying: fewer allocations, faster
        self.view = memoryview(self.data)
        self.erased = memoryview(bytes([ERASED]) * block_size)
        if data is None:
            for i in range(0, len(self.data), block_size):
                self.view[i:i + block_size] = self.erased
        self.erase_first = erase_first
        self.cut_after = cut_after
        self.torn = torn  # None, or the fraction (0 <= torn < 1) of the last write that lands
        self.survivor = None  # bytes frozen at the cut
        self.programs = 0
        self.erases = 0
        self.overprograms = 0  # NOR programs onto bytes that were not erased
        self.trace = None

    @classmethod
    def load(cls, path, block_size, **kw):
        with open(path, "rb") as f:
            return cls(block_size, data=f.read(), **kw)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.image())

    def writes(self):
        return self.programs + self.erases

    def image(self):
        """The bytes the next power-up finds."""
        return bytes(self.data) if self.survivor is None else self.survivor

    # -- the extended block interface --

    def readblocks(self, block, buf, offset=0):
        start = block * self.block_size + offset
        if self.survivor is None:
            buf[:] = self.view[start : start + len(buf)]
        else:
            for i in range(len(buf)):  # see _cut
                buf[i] = self.data[start + i]

    def writeblocks(self, block, buf, offset=None):
        # with an offset: the extended interface, NOR flash (littlefs erases first);
        # without: the classic one (FAT), see the top of this file
        if offset is None and self.erase_first:
            for i in range(len(buf) // self.block_size):
                self.ioctl(6, block + i)
        self.programs += 1
        self._note("prog", block, offset or 0, len(buf))
        self._write(block * self.block_size + (offset or 0), buf, offset is not None)

    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return self.block_size
        if op == 6:
            self.erases += 1
            self._note("erase", arg, 0, self.block_size)
            self._write(arg * self.block_size, self.erased, False)
        return 0  # 1 init, 2 deinit, 3 sync: RAM needs none of them

    def _note(self, op, block, offset, length):
        # not after a cut: finalisers then run with the heap locked
        if self.trace is not None and self.survivor is None:
            self.trace.append((self.writes(), op, block, offset, length))

    # -- power --

    def _write(self, start, buf, nor):
        if self.cut_after is not None and self.writes() >= self.cut_after:
            self._cut(start, buf, nor)
        self._put(self.data, start, buf, nor)

    def _cut(self, start, buf, nor):
        # Freeze what the flash holds: everything before, and all or a prefix of this
        # write. The running code then gets PowerCut, and what still calls in is only
        # its clean-up (a `with` closing the file, later a file finaliser). That lands
        # on self.data, a scratch copy nobody reads, and completes this write there so
        # the driver's view stays consistent and its clean-up cannot fail. Finalisers
        # run with the heap locked, so from now on nothing may allocate: plain loops.
        keep = buf if self.torn is None else buf[: int(len(buf) * self.torn)]
        image = bytearray(self.data)
        self._put(image, start, keep, nor)
        self.survivor = bytes(image)
        self.cut_after = None
        self._put(self.data, start, buf, nor)
        raise PowerCut("power cut at write point %d" % self.writes())

    def _put(self, target, start, buf, nor):
        # NOR flash: programming only clears bits. littlefs always erases first, so a
        # plain copy is the rule; overprograms counts the exceptions.
        n = len(buf)
        if self.survivor is not None:
            for i in range(n):
                target[start + i] = (target[start + i] & buf[i]) if nor else buf[i]
        elif not nor or target[start : start + n] == self.erased[:n]:
            target[start : start + n] = buf
        else:
            self.overprograms += 1
            for i in range(n):
                target[start + i] &= buf[i]
