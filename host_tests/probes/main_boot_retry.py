# firmware/main.py's unix loop when the refresher cannot be built (test_board.py): its boot
# raises MemoryError twice (no heap yet), then gives a refresher whose first step stops the
# probe. Prints each wait main.py asked for and what it logged, so the test can check that
# it booted again instead of dying with a traceback.
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

import main  # noqa: E402

failures = [MemoryError("memory allocation failed, allocating 3072 bytes")] * 2


class Stop(Exception):
    pass


class Built:
    def step(self):
        raise Stop


def boot():
    if failures:
        raise failures.pop()
    return Built()


class Time:
    @staticmethod
    def sleep(s):
        print("SLEPT", s)


if __name__ == "__main__":
    main.boot = boot
    main.time = Time  # type: ignore[assignment]
    try:
        main.main()
    except Stop:
        print("BOOTED")
