# Runs test modules under MicroPython (or CPython): every test_* function, no arguments.
#   micropython host_tests/mp_runner.py cases.test_dates [cases.test_store ...]
# Prints PASS/FAIL per test and a closing "N passed, M failed" line; exit 1 on failure.
import sys

_here = __file__.rpartition("/")[0] or "."
sys.path.insert(0, _here)
sys.path.insert(0, _here + "/../firmware")
sys.path.append(_here + "/../tools")  # the power-losing flash of tools/powercut


def run(names):
    passed = failed = 0
    for name in names:
        mod = __import__(name, None, None, ["*"])
        for attr in sorted(dir(mod)):
            fn = getattr(mod, attr)
            if not attr.startswith("test_") or not callable(fn):
                continue
            try:
                fn()
                passed += 1
                print("PASS %s.%s" % (name, attr))
            except Exception as e:
                failed += 1
                print("FAIL %s.%s: %s %s" % (name, attr, type(e).__name__, e))
                if hasattr(sys, "print_exception"):
                    sys.print_exception(e)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if run(sys.argv[1:]) else 0)
