"""Fault injection: the faults a test (or an operator at bring-up) queues for the next
requests, checked when queued, taken in order per endpoint. The handler carries them out."""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any

from refserver.answers import GARBAGE_KINDS

FAULT_ENDPOINTS = ("refresh", "init", "complete")
FAULT_MODES = (
    "status", "drop_after_commit", "garbage", "hang", "drip", "bad_length", "chunked", "redirect",
)
# Faults that answer instead of the platform: the lineage is never touched.
FAKE_ANSWERS = ("status", "garbage", "redirect", "hang")


@dataclass
class Fault:
    mode: str
    params: dict[str, Any]


def check_fault(mode: str, count: int, params: dict[str, Any]) -> None:
    """ValueError naming the problem, for a fault that could not be carried out."""
    if mode not in FAULT_MODES:
        raise ValueError("unknown fault mode %r (one of %s)" % (mode, ", ".join(FAULT_MODES)))
    if params.get("endpoint", "refresh") not in FAULT_ENDPOINTS:
        raise ValueError("endpoint must be one of %s" % ", ".join(FAULT_ENDPOINTS))
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError("count must be an integer >= 1")
    if mode == "status" and not _is_status(params.get("status")):
        raise ValueError("status fault needs an HTTP status (100..599)")
    if mode == "garbage" and params.get("body", "notjson") not in GARBAGE_KINDS:
        raise ValueError("garbage body must be one of %s" % ", ".join(GARBAGE_KINDS))
    if mode == "redirect" and not isinstance(params.get("location", ""), str):
        raise ValueError("redirect location must be a string")
    if "status" in params and not _is_status(params["status"]):
        raise ValueError("status must be an HTTP status (100..599)")
    for key in ("interval", "extra", "chunk_size"):
        value = params.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError("%s must be a number >= 0" % key)


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599


class FaultQueue:
    """Queued faults, first in first out per endpoint; safe across handler threads."""

    def __init__(self) -> None:
        self._faults: collections.deque[Fault] = collections.deque()
        self._lock = threading.Lock()

    def add(self, mode: str, count: int, params: dict[str, Any]) -> int:
        """Queue `mode` for the next `count` requests -> faults now pending."""
        check_fault(mode, count, params)
        with self._lock:
            self._faults.extend(Fault(mode, dict(params)) for _ in range(count))
            return len(self._faults)

    def take(self, endpoint: str) -> Fault | None:
        """The first queued fault for this endpoint (params["endpoint"], default refresh)."""
        with self._lock:
            for fault in self._faults:
                if fault.params.get("endpoint", "refresh") == endpoint:
                    self._faults.remove(fault)
                    return fault
            return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)
