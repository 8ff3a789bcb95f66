"""Fixtures of the reference server's tests: servers started on an ephemeral port, closed
after the test. (host_tests/conftest.py, above, puts tools/ on sys.path.)"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from refserver import RefServer


@pytest.fixture
def make_server() -> Iterator[Callable[..., RefServer]]:
    servers: list[RefServer] = []

    def make(**kwargs: Any) -> RefServer:
        kwargs.setdefault("log", None)
        srv = RefServer(**kwargs)
        servers.append(srv)
        return srv.start()

    try:
        yield make
    finally:
        for srv in servers:
            srv.close()


@pytest.fixture
def srv(make_server: Callable[..., RefServer]) -> RefServer:
    return make_server()
