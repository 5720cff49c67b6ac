"""A loopback PagerDuty Events API v2 (`POST /v2/enqueue`) that validates events as PagerDuty documents them.

Rules (developer.pagerduty.com, "Send an Alert Event" and the Events API v2 overview): `routing_key` is required
and 32 characters; `event_action` is `trigger`, `acknowledge` or `resolve`; `dedup_key` is at most 255
characters and required to acknowledge or resolve; a trigger needs `payload.summary` (at most 1024 characters),
`payload.source` and `payload.severity` (`critical`, `error`, `warning` or `info`); `custom_details` is an
object. An accepted event is answered 202 `{"status": "success", "message": "Event processed", "dedup_key": ...}`
(a key is made up when a trigger has none); an invalid one 400 `{"status": "invalid event", "message": "Event
object is invalid", "errors": [...]}`. `fail(status, times)` answers the next requests with 429 (no Retry-After,
as PagerDuty) or a 5xx instead.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


def problems(event: Any) -> list[str]:
    """What PagerDuty would refuse in this event; empty when it is accepted."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str) or not key.strip():
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is missing or invalid (must be one of trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append(f"'dedup_key' is required to {action}")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is missing or not an object"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            errors.append("'payload.summary' is missing or blank")
        elif len(summary) > 1024:
            errors.append("'payload.summary' is longer than 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"].strip():
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
        if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
            errors.append("'payload.custom_details' must be an object")
    return errors


class FakePagerDuty:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, answer = fake._answer(self.path, body)
                with fake._lock:
                    fake.received.append(Received(self.path, dict(self.headers.items()), body, status))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def fail(self, status: int, times: int = 1) -> None:
        with self._lock:
            self._failures.extend([status] * times)

    def accepted(self) -> list[dict[str, Any]]:
        """The events answered 202, in order."""
        with self._lock:
            return [r.json() for r in self.received if r.status == 202]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure == 429:
            return 429, {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}
        if failure is not None:
            return failure, {"status": "error", "message": "Internal Server Error"}
        if path != "/v2/enqueue":
            return 404, {"status": "error", "message": "Not Found"}
        try:
            event = json.loads(body)
        except ValueError:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["Invalid JSON"]}
        errors = problems(event)
        if errors:
            return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        return 202, {"status": "success", "message": "Event processed",
                     "dedup_key": event.get("dedup_key") or uuid.uuid4().hex}


def fake_pagerduty() -> Iterator[FakePagerDuty]:
    fake = FakePagerDuty()
    try:
        yield fake
    finally:
        fake.close()
