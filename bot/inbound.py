"""What a request to /slack/events must pass before Bolt reads it: size, time, encoding, signature and shape.

Plain functions over headers and bytes (no server in here), so the stdlib server today and an ASGI app later
use the same checks. A request that fails one is answered with `Refused.status` and one line, never a
traceback; nothing here logs or echoes a body. Limits: README "Slack".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.signature import SignatureVerifier

MAX_BODY = 64 * 1024  # bytes; Slack's commands and button payloads are a few KiB
READ_TIMEOUT = 10.0  # seconds: without a byte from the client, and in total for a body
MAX_FORM_FIELDS = 100
_CHUNK = 16 * 1024
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_LENGTH = re.compile(r"[0-9]{1,15}")

PHRASES = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
           411: "Length Required", 413: "Content Too Large", 500: "Internal Server Error",
           503: "Service Unavailable"}


@dataclass(frozen=True)
class Limits:
    """How much one client may ask of the bot's HTTP server."""

    max_body: int = MAX_BODY
    read_timeout: float = READ_TIMEOUT
    max_connections: int = 64  # requests served at once; more wait in the listen backlog
    backlog: int = 128  # connections the kernel holds before the server accepts them


DEFAULT_LIMITS = Limits()


class Refused(Exception):
    """The request is refused with `status`; `str()` is the one line to answer (and to log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def status_line(status: int) -> str:
    return f"{status} {PHRASES.get(status, 'Error')}"


def body_length(content_length: str | None, limit: int) -> int:
    """The body's announced length, checked before anything is read: 411 without one, 413 over `limit`."""
    if content_length is None or not content_length.strip():
        raise Refused(411, "a Content-Length is required")
    value = content_length.strip()
    if not _LENGTH.fullmatch(value):
        raise Refused(400, "the Content-Length is not a number of bytes")
    length = int(value)
    if length > limit:
        raise Refused(413, f"the body is {length} bytes, more than {limit}")
    return length


def read_body(read: Callable[[int], bytes], length: int, timeout: float,
              clock: Callable[[], float] = time.monotonic) -> bytes:
    """Exactly `length` bytes from `read`, within `timeout` seconds in all (408 otherwise)."""
    deadline = clock() + timeout
    chunks: list[bytes] = []
    missing = length
    while missing > 0:
        if clock() > deadline:
            raise Refused(408, f"the body did not arrive within {timeout:g}s")
        try:
            data = read(min(_CHUNK, missing))
        except TimeoutError:
            raise Refused(408, f"the body did not arrive within {timeout:g}s") from None
        if not data:
            raise Refused(400, "the body is shorter than its Content-Length")
        chunks.append(data)
        missing -= len(data)
    return b"".join(chunks)


def signed_text(body: bytes, headers: Mapping[str, str], verifier: SignatureVerifier) -> str:
    """The body as text once it is UTF-8 (400), its timestamp a number (400), and its signature Slack's and no
    older than 5 minutes (401). `headers` have lower-case names."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    timestamp, signature = headers.get("x-slack-request-timestamp"), headers.get("x-slack-signature")
    if timestamp is None or signature is None:
        raise Refused(401, "the request is not signed")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Refused(400, "X-Slack-Request-Timestamp is not a number")
    if not verifier.is_valid(body, timestamp, signature):
        raise Refused(401, "the signature is invalid or older than 5 minutes")
    return text


def slack_payload(text: str, content_type: str | None) -> dict[str, Any]:
    """The request's payload, read by the same rules as Bolt's `parse_body` (so Bolt never fails on it), and of
    the shape our handlers read; 400 otherwise."""
    kind = content_type.split(";")[0] if content_type else None
    try:
        if kind == "application/json" or text.startswith("{"):
            payload = json.loads(text)
        else:
            fields = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
            if "payload" not in text:
                return fields
            payload = json.loads(fields["payload"]) if "payload" in fields else {}
    except (ValueError, RecursionError):  # JSONDecodeError, too many fields, nesting beyond the parser
        raise Refused(400, "the payload is not valid form data or JSON") from None
    if not isinstance(payload, dict):
        raise Refused(400, "the payload is not a JSON object")
    _check_shape(payload)
    return payload


def _check_shape(payload: dict[str, Any]) -> None:
    for key in ("type", "trigger_id", "response_url"):
        if key in payload and not isinstance(payload[key], str):
            raise Refused(400, f"the payload's {key} is not a string")
    for key in ("user", "team", "channel", "container", "message", "view"):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            raise Refused(400, f"the payload's {key} is not an object")
    if payload.get("type") == "block_actions":
        actions = payload.get("actions")
        if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
            raise Refused(400, "the payload's actions are not a list of objects")
        if not isinstance((payload.get("user") or {}).get("id"), str):
            raise Refused(400, "the payload has no user id")
