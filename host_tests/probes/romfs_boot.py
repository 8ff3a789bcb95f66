# A board with a ROMFS partition, on the unix port (MicroPython only): mount the image at
# /rom as such a board does at boot (mount_rom of tools/bench/probes/heap.py, the benchmark's
# own), import the package from it, and rotate the token once with the config.json beside
# this file.
# test_romfs.py copies it into a board directory that has no regtoken/ of its own:
#
#   micropython romfs_boot.py IMAGE tools/bench/probes
import sys
import time

sys.path.append(sys.argv[2])
from heap import mount_rom  # noqa: E402

mount_rom(sys.argv[1])

import regtoken  # noqa: E402

for name in sorted(sys.modules):
    if name.startswith("regtoken"):
        print("MODULE", name, sys.modules[name].__file__)
r = regtoken.open("config.json")
for _ in range(120):  # one rotation is due at once (an imported token of unknown expiry)
    wait = r.step()
    if r.status()["counts"]["rotations"]:
        break
    time.sleep(min(1 if wait is None else wait, 1))
print("ROTATIONS", r.status()["counts"]["rotations"], "STATE", r.state)
