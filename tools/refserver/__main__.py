"""`PYTHONPATH=tools python -m refserver ...`: see refserver.cli."""

import sys

from refserver.cli import main

sys.exit(main())
