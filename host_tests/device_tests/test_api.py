# Issue 10: the public API is narrow and main.py / aio.py use only it. Static checks on the
# sources (CPython), so that a private name creeping into a user of the API fails here.
import ast
import os
import re
import subprocess

import regtoken
from conftest import ROOT, probe
from regtoken import error

PUBLIC = {"step", "astep", "due_in", "force", "on_token", "on_state", "status", "token",
          "expires", "expires_in", "state", "suspend", "resume"}


def attributes_used_on(path: str, name: str) -> set[str]:
    """Attribute names read or called on the variable `name` in the file."""
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    return {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name) and n.value.id == name}


def test_main_and_aio_use_only_the_public_api() -> None:
    for path in ("firmware/main.py", "firmware/regtoken/aio.py", "examples/sensor_app.py"):
        used = attributes_used_on(path, "r")
        assert used and used <= PUBLIC, (path, used - PUBLIC)


def test_the_refresher_shows_no_other_public_name() -> None:
    # its edges and record too (they were cfg, http, clock, rand, log, store and rec: the
    # config holds the provisioning_token)
    shown = {n for n in dir(regtoken.Refresher) if not n.startswith("_")}
    assert shown <= PUBLIC, shown - PUBLIC
    r = regtoken.Refresher(regtoken.validate({"api_url": "http://x", "store_dir": "/nonexistent"}),
                           log=lambda line: None)
    instance = {n for n in vars(r) if not n.startswith("_")}
    assert instance <= PUBLIC, instance - PUBLIC


def test_exports() -> None:
    assert "open" not in regtoken.__all__  # `from regtoken import *` must not hide open()
    assert callable(regtoken.open)
    assert regtoken.ConfigError is error.ConfigError
    for name in regtoken.__all__:
        assert hasattr(regtoken, name), name
    # ConfigError's module imports nothing: nothing in the package imports upward for it
    tree = ast.parse(open(os.path.join(ROOT, "firmware", "regtoken", "error.py")).read())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    for name in os.listdir(os.path.join(ROOT, "firmware", "regtoken")):
        if name.endswith(".py") and name != "__init__.py":
            src = open(os.path.join(ROOT, "firmware", "regtoken", name)).read()
            assert "from . import ConfigError" not in src and "from . import Config" not in src


def test_a_rotation_interns_no_names(micropython: str) -> None:
    """On MicroPython indexing a str, or min()/max() of one, interns each distinct
    character as a name, never freed: a base64 token made ~60 of them and the name pool
    double (~4 KB of heap for good); a date's digits and a header name's letters, a few per
    rotation, brought the pool's next table (~3.6 KB in one piece) due in the middle of a
    rotation. valid_token, the date parser and the HTTP client read bytes instead
    (probes/token_names.py)."""
    p = subprocess.run([micropython, probe("token_names")], capture_output=True, text=True,
                       timeout=60)
    counts = [int(n) for n in re.findall(r"n_qstr=(\d+)", p.stdout)]
    assert p.returncode == 0 and len(counts) == 4, p.stdout + p.stderr
    # valid_token; a 201 with every printable character; answers with every digit, both
    # zone forms, and every header the client keeps
    assert counts[3] == counts[2] == counts[1] == counts[0], counts
