# An in-memory flash edge with the interface of regtoken.store.Files, that can be full
# or lose power mid-write (leaving a prefix of the data, as a torn program would).


class PowerLost(BaseException):
    """Not an Exception: the code under test cannot catch it as an ordinary error."""


class MemFS:
    def __init__(self):
        self.files = {}
        self.full = False
        self.cut_after = None  # writes left before the power goes
        self.writes = 0

    def read(self, name, limit):
        data = self.files.get(name)
        return None if data is None else data[:limit]

    def write(self, name, parts):
        # in place, like Files.write: the new bytes over the start of the old ones (they
        # always land, so the read-back always passes)
        data = b"".join(parts)
        old = self.files.get(name, b"")
        if self.full:
            raise OSError(28)  # ENOSPC
        if self.cut_after is not None:
            if self.cut_after == 0:
                half = bytes(data[: len(data) // 2])
                self.files[name] = half + old[len(half):]
                raise PowerLost()
            self.cut_after -= 1
        self.writes += 1
        self.files[name] = data + old[len(data):]

    def rename(self, old, new):
        self.files[new] = self.files.pop(old)
