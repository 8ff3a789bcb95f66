# MicroPython probe for `make bench`: the heap the code keeps once main.py's imports and one
# boot are done and the program's own objects are dropped, as a board has it. Kept tiny on
# purpose: the names a program interns share one pool with the firmware's, and a probe
# with many of its own (heap.py) would make the pool double inside the measurement.
#   cd <board dir> && micropython kept.py firmware|baseline
# Prints RESULT {"what": "kept", "kept": bytes}.
import gc
import sys


def boot(who):
    if who == "firmware":
        import main

        main.boot()
    else:
        import naive_baseline as nb

        nb.load_token(nb.load_config())


def scrub(n=40):
    # stale pointers on the C stack (the collector scans it) would keep garbage alive
    return scrub(n - 1) if n else 0


def run(who):
    gc.collect()
    a = gc.mem_alloc()
    boot(who)  # what it built is garbage once it returns
    scrub()
    gc.collect()
    print('RESULT {"what": "kept", "kept": %d}' % (gc.mem_alloc() - a))


run(sys.argv[1])
