# Tier 2: the same pure-logic, store and refresher tests, executed by the real MicroPython
# unix port instead of CPython.
import os
import subprocess

import pytest
from conftest import ROOT

CASES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "host_tests", "cases"))
               if f.startswith("test_") and f.endswith(".py"))


@pytest.mark.parametrize("module", CASES)
def test_cases_under_micropython(micropython, module):
    p = subprocess.run([micropython, "-X", "heapsize=2M", "host_tests/mp_runner.py",
                        "cases." + module], cwd=ROOT, capture_output=True, text=True, timeout=300)
    failures = [line for line in p.stdout.splitlines() if line.startswith("FAIL")]
    assert p.returncode == 0 and not failures, p.stdout[-3000:] + p.stderr[-2000:]
    assert " passed, 0 failed" in p.stdout
