# Issue 7: the README's API example, copied out of README.md as written, runs on the real
# MicroPython port against the reference server.
import os
import re
import signal

from bringup.unixboard import UnixBoard, layout
from conftest import ROOT
from refserver import RefServer


def readme_example():
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text.split("## Using it from your app", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_api_example_runs(tmp_path, micropython):
    # 12 s: the second rotation comes 6-10 s in, at least 2 s before expiry even on a loaded
    # machine (at 6 s a stall of one second could let the token expire: a 410, no second)
    srv = RefServer(db=":memory:", lifetime=12.0, grace=30.0, log=None).start()
    board = None
    try:
        minted = srv.mint()
        board_dir = layout(str(tmp_path / "board"), {
            "api_url": srv.url, "initial_token": minted["registrationToken"]})
        with open(os.path.join(board_dir, "main.py"), "w") as f:
            f.write(readme_example())
        board = UnixBoard(board_dir, micropython).start()
        board.wait_for("new token committed", n=2, timeout=90)
        board.wait_for("job: refresher healthy")
        text = "\n".join(board.lines())
        assert minted["registrationToken"][:12] not in text
    finally:
        if board:
            board.stop(signal.SIGKILL)
        srv.stop()
