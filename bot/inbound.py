"""What a request to /slack/events must pass before Bolt reads it: size, time, encoding, signature and shape.

Plain functions over headers and bytes (no server in here), for the one ASGI server's /slack/events
(`bot.app`). A request that fails one is answered with `Refused.status` and one line, never a traceback;
nothing here logs or echoes a body. Limits: README "Slack".
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from slack_sdk.signature import SignatureVerifier

MAX_BODY = 64 * 1024  # bytes; Slack's commands and button payloads are a few KiB
READ_TIMEOUT = 10.0  # seconds for a body to arrive in full
MAX_FORM_FIELDS = 100
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_LENGTH = re.compile(r"[0-9]{1,15}")


@dataclass(frozen=True)
class Limits:
    """How much one client may ask of /slack/events."""

    max_body: int = MAX_BODY
    read_timeout: float = READ_TIMEOUT
    max_connections: int = 64  # requests dispatched to Bolt at once, each on a thread; more wait their turn


DEFAULT_LIMITS = Limits()


class Refused(Exception):
    """The request is refused with `status`; `str()` is the one line to answer (and to log)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


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
    """The request's payload as Slack sent it (a button's is the JSON in the form's `payload` field, a command's
    the form itself), of the shape our handlers read; 400 otherwise. Bolt is handed this payload."""
    kind = content_type.split(";")[0] if content_type else None
    try:
        if kind == "application/json" or text.startswith("{"):
            payload = json.loads(text)
        else:
            fields = dict(parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS))
            if "payload" not in fields:  # a slash command (Bolt's parse_body looks for the word anywhere)
                return fields
            payload = json.loads(fields["payload"])
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
