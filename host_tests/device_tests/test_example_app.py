# Issue 7: an application written against the public API (examples/sensor_app.py) runs on
# the real MicroPython port next to the refresher's asyncio task, and its own periodic job
# keeps ticking while a refresh waits on a dripping and then a silent server.
import os
import re
import shutil

import pytest
from bringup.unixboard import UnixBoard, layout
from conftest import ROOT
from refserver import RefServer


@pytest.fixture
def app_board(tmp_path, micropython):
    srv = RefServer(db=":memory:", lifetime=600.0, grace=60.0, log=None).start()
    minted = srv.mint()
    board_dir = layout(str(tmp_path / "board"), {
        "api_url": srv.url, "initial_token": minted["registrationToken"],
        "backoff_min_s": 1, "backoff_max_s": 2, "timeout_s": 4})
    shutil.copy(os.path.join(ROOT, "examples", "sensor_app.py"),
                os.path.join(board_dir, "main.py"))
    board = UnixBoard(board_dir, micropython)
    yield srv, board
    board.stop()
    srv.stop()


def ticks_during(lines, start, end):
    """tick timestamps (ms) printed between lines[start] and lines[end]."""
    out = []
    for line in lines[start:end]:
        m = re.match(r"app: tick \d+ t=(\d+)", line)
        if m:
            out.append(int(m.group(1)))
    return out


def test_app_keeps_ticking_through_slow_and_hanging_server(app_board):
    srv, board = app_board
    srv.fault("drip", interval=1.0)  # ~250 bytes at 1 byte/s: longer than timeout_s
    srv.fault("hang")
    board.start()
    board.wait_for("app: new token committed", timeout=90)
    board.wait_for("app: refresher is healthy")  # printed just after the token callback
    lines = board.lines()
    attempts = [i for i, line in enumerate(lines) if "refresh: presenting" in line]
    failures = [i for i, line in enumerate(lines)
                if line.startswith("[regtoken]") and "timed out" in line]
    assert len(attempts) >= 3 and len(failures) >= 2, "\n".join(lines[-40:])
    for start, end in ((attempts[0], failures[0]), (attempts[1], failures[1])):
        ticks = ticks_during(lines, start, end)
        during = "\n".join(lines[start:end + 1])
        assert len(ticks) >= 5, "the app stalled during a refresh:\n" + during
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) < 2000, gaps  # period 200 ms; generous for a loaded machine
    # the drip rotated before the device gave up, so the retry is the 200 recovery
    assert srv.stats()["requests"][-1]["status"] == 200
    assert board.count("app: refresher is backoff") >= 1
    assert board.count("app: refresher is healthy") >= 1
    minted_prefix = [line for line in lines if "token=" in line]
    assert minted_prefix and all("...(" in line.split("token=")[1] for line in minted_prefix)
