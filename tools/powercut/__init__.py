# The power-losing flash, a component shared by the tests, the sweep and the benchmarks
# (as littlefs shares its emulated block device between its test and bench runners):
#   blockdev.py  a RAM block device for os.VfsLfs2 / os.VfsFat that can lose power at any
#                program or erase, whole or torn (MicroPython and CPython)
#   images.py    formatted images of every filesystem a board may use, mounted with
#                MicroPython's own drivers; what a FAT block holds, for traces
#   sweep.py     `make powercut`: the token store cut at every write point (MicroPython)
#   live.py      the whole firmware on a power-losing image (powercut_tests/test_powercut_live.py)
# Nothing here imports the tests; the tests import this.
