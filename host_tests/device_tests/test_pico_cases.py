# Tier 3: the same case files as tiers 1 and 2 (host_tests/cases/), on the emulated
# Raspberry Pi Pico (tools/bringup/rp2emu.py): the real MicroPython rp2 port on a Cortex-M0+,
# every module (firmware, fakes, cases) loaded from armv6m .mpy copied onto its flash by
# mpremote, the store cases on its own littlefs. Each module runs after a soft reset.
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bringup import boards, rp2relay
from bringup.boardctl import RemoteBoard
from bringup.rp2emu import Rp2Emu
from conftest import ROOT
from pico import stage

CASES = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "host_tests", "cases"))
               if f.startswith("test_") and f.endswith(".py"))
CASE_TIMEOUT_S = 600  # one module; the slowest takes well under a minute on the emulator


@pytest.fixture(scope="module")
def pico(rp2_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteBoard]:
    tmp = tmp_path_factory.mktemp("pico-cases")
    with Rp2Emu(tmp / "tty", image=rp2_image) as emu:
        remote = RemoteBoard(boards.load("pico-emu"), str(emu.tty))
        entries = stage.cases_tier(tmp / "stage")
        remote.run("fs", "cp", "-r", *map(str, entries), ":")
        yield remote


@pytest.mark.parametrize("module", CASES)
def test_cases_on_the_emulated_pico(pico: RemoteBoard, module: str) -> None:
    # mpremote soft-resets the board first: each module starts on a fresh heap
    out = pico.run("exec", rp2relay.call("mp_runner", "run", names=["cases." + module]))
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert not failures, out[-3000:]
    assert " passed, 0 failed" in out, out[-3000:]
