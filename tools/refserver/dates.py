"""Dates as the server writes them: RFC 3339 in a token object, HTTP dates in `Date`."""

from __future__ import annotations

import datetime
import email.utils


def rfc3339(ts: float | None, style: str = "z") -> str | None:
    """`2024-11-28T14:03:07.316Z` (z) or `2021-11-12T14:00:00+00:00` (offset).

    Truncates (never rounds up) so a client never believes in a later expiry than the real one.
    """
    if ts is None:
        return None
    dt = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if style == "offset":
        return dt.isoformat(timespec="seconds")
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)
