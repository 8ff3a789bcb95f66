"""What the server answers: an Answer, RFC 7807 problem+json, token objects, the broken
token objects of the `garbage` fault, and reading what a client sent."""

from __future__ import annotations

import http
import json
from dataclasses import dataclass, field
from typing import Any

from refserver.tokens import new_token

JSON_TYPES = ("application/json", "application/json-patch+json", "text/json")
GARBAGE_KINDS = ("notjson", "missing", "nonstring", "empty", "control", "huge", "badtime", "array")


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Status %d" % status


@dataclass
class Answer:
    status: int
    body: bytes = b""
    ctype: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


def problem(status: int, detail: str | None = None, instance: str | None = None,
            headers: list[tuple[str, str]] | None = None,
            problem_type: str = "about:blank") -> Answer:
    doc = {"type": problem_type, "title": phrase(status), "status": status,
           "detail": detail, "instance": instance}
    return Answer(status, json.dumps(doc).encode(), "application/problem+json", headers or [])


def json_answer(status: int, obj: Any) -> Answer:
    return Answer(status, json.dumps(obj).encode(), "application/json")


class ProblemError(Exception):
    """Raised while reading a request: answer with this problem."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.status)
        self.answer = answer


def retry_after(value: object) -> list[tuple[str, str]]:
    """The Retry-After header for a configured value (seconds, or any string as is)."""
    if value is None:
        return []
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return [("Retry-After", str(value))]  # a string passes through: HTTP-dates, junk tests


def garbage_body(kind: str) -> bytes:
    """A broken token object. Any token in it is random and unknown to the store."""
    tok = new_token()
    if kind == "notjson":
        return b"<html><body>502 Bad Gateway</body></html>"
    docs: dict[str, Any] = {
        "missing": {"expirationTime": None},
        "nonstring": {"registrationToken": 123, "expirationTime": None},
        "empty": {"registrationToken": "", "expirationTime": None},
        "control": {"registrationToken": tok[:100] + "\u0001" + tok[100:], "expirationTime": None},
        "huge": {"registrationToken": "A" * (1 << 20), "expirationTime": None},
        "badtime": {"registrationToken": tok, "expirationTime": "yesterday"},
        "array": [{"registrationToken": tok, "expirationTime": None}],
    }
    return json.dumps(docs[kind]).encode()


def media_type_ok(value: str | None) -> bool:
    media = (value or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES:
        return True
    return media.startswith("application/") and media.endswith("+json")


def json_object(body: bytes) -> Any:
    """The parsed body, or None when it is not JSON (empty included)."""
    try:
        return json.loads(body.decode("utf-8")) if body.strip() else None
    except (UnicodeDecodeError, ValueError, RecursionError):  # [[[[... nests deep cheaply
        return None


def presented_token(body: bytes) -> str | None:
    doc = json_object(body)
    token = doc.get("registrationToken") if isinstance(doc, dict) else None
    return token if isinstance(token, str) else None
