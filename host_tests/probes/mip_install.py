# mip.install of regtoken from an index, as typed at a board's REPL (MicroPython only).
# test_dist.py copies it into a board directory whose sys.path (MICROPYPATH) holds
# <board>/lib, the folder mip picks as a board's /lib, and runs
#
#   micropython mip_install.py http://127.0.0.1:PORT mpy|py
#
# then prints where `import regtoken` found the package.
import sys

import mip

mip.install("regtoken", index=sys.argv[1], mpy=sys.argv[2] == "mpy")

import regtoken  # noqa: E402

print("IMPORTED", regtoken.__file__)
