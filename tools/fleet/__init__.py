# The fleet simulator behind `make fleet`: N devices, each the real firmware Refresher, on
# one virtual clock against a simulated refresh server. See docs/fleet.md.
#   edges.py     in-memory edges a Refresher is wired to (clock, store, transport)
#   server.py    the simulated server: lineage, grace, capacity, lost answers, outages
#   policies.py  the policies compared: the firmware's own, and the baselines
#   sim.py       the event loop (a heap of next-due times) and what it measures
#   scenarios.py the scenarios `make fleet` runs
#   report.py    docs/fleet.md and its chart
#   __main__.py  the command line
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_fw = os.path.join(ROOT, "firmware")
if _fw not in sys.path:
    sys.path.insert(0, _fw)
