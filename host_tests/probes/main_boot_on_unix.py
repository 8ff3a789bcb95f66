# firmware/main.py's boot on MicroPython's unix port (test_board.py), run in a directory
# holding a config.json: prints LOADED <every module then loaded>, so the test can check
# that nothing of firmware/board/ (nor network, ntptime) was imported.
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, HERE + "/../../firmware")

import main  # noqa: E402

if __name__ == "__main__":
    main.boot()
    print("LOADED", " ".join(sorted(sys.modules)))
