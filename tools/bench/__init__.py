"""`make bench`: the firmware beside a naive script on the real MicroPython unix port
(docs/benchmarks.md, docs/benchmarks.png; `PYTHONPATH=tools python -m bench --help`).

Runners and report (CPython), each one job, dependencies pointing down the list:
  plan.py        BenchPlan (what a run measures, how hard it tries), shared paths and names
  boardruns.py   boards against a live reference server: minimum heap, traffic
  probe_runs.py  runs the MicroPython probes and reads their RESULT lines
  codesize.py    .mpy bytes per module and architecture (mpy-cross)
  rp2.py         the 32-bit figures on the emulated Pico, and their section of the report
  summary.py     the summary rows and table helpers
  sections.py    the detail sections and the targets missed
  report.py      docs/benchmarks.md and .png
  cli.py         the command line (__main__.py runs it)
probes/: what runs under MicroPython: heap.py, idle.py, flash.py, pico_heap.py (heap.py's
measures on the emulated Pico) and naive_baseline.py, the baseline they measure against.
What the figures mean: docs/benchmarks-notes.md.

This file only re-exports the entry point.
"""

from bench.cli import main

__all__ = ["main"]
