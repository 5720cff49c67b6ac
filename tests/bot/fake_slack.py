"""A loopback fake of Slack's Web API that records every call, like bolt-python's own test server.

Serves `POST|GET /api/<method>` (form, JSON or query parameters, as slack_sdk sends them) and the
`response_url`s of commands (`POST /response/<id>`). Faults: `rate_limit(n, retry_after)` answers the next
n Web API calls with 429 and Retry-After; `go_down()` closes the port (connection refused) and `come_back()`
opens it again on the same port.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


@dataclass
class Call:
    method: str  # chat.postMessage, ..., or "response_url"
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    path: str = ""


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.groups: dict[str, list[str]] = {}
        self._limited = 0
        self._retry_after = 1
        self._ts = itertools.count(1)
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.come_back()

    # --- control ------------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def response_url(self, key: str) -> str:
        return f"http://127.0.0.1:{self.port}/response/{key}"

    def rate_limit(self, count: int, retry_after: int = 1) -> None:
        with self._lock:
            self._limited, self._retry_after = count, retry_after

    def go_down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def come_back(self) -> None:
        handler = _handler(self)
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.go_down()

    # --- what tests read ----------------------------------------------------------------------------------

    def of(self, method: str, **match: Any) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 200
                    and all(c.args.get(k) == v for k, v in match.items())]

    def wait_for(self, found: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = found()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"fake Slack never saw {what or 'the expected call'}; calls: "
                             f"{[(c.method, c.status) for c in self.calls][-30:]}")

    def responses(self, key: str) -> list[str]:
        """The texts posted to one command's response_url."""
        return [str(c.args.get("text")) for c in self.of("response_url") if c.path.endswith("/" + key)]

    # --- the API ------------------------------------------------------------------------------------------

    def answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "user_id": "UBOT", "team_id": "T0TEAM", "bot_id": "B0BOT", "user": "grayops"}
        if method == "chat.postMessage":
            channel = str(args.get("channel", ""))
            if not channel:
                return {"ok": False, "error": "channel_not_found"}
            channel_id = channel if channel.startswith("C") else "C" + channel.lstrip("#").upper()
            ts = f"1700000000.{next(self._ts):06d}"
            self._messages[(channel_id, ts)] = dict(args)
            return {"ok": True, "channel": channel_id, "ts": ts, "message": {"text": args.get("text")}}
        if method == "chat.update":
            key = (str(args.get("channel")), str(args.get("ts")))
            if key not in self._messages:
                return {"ok": False, "error": "message_not_found"}
            self._messages[key] = dict(args)
            return {"ok": True, "channel": key[0], "ts": key[1]}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000000.{next(self._ts):06d}"}
        if method == "usergroups.users.list":
            group = str(args.get("usergroup"))
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[group]}
        return {"ok": False, "error": "unknown_method"}


def _handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve({k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            if "json" in (self.headers.get("Content-Type") or ""):
                args = json.loads(raw or "{}")
            else:
                args = {k: v[0] for k, v in parse_qs(raw).items()}
            for key in ("blocks", "attachments"):
                if isinstance(args.get(key), str):
                    args[key] = json.loads(args[key])
            self._serve(args)

        def _serve(self, args: dict[str, Any]) -> None:
            path = urlparse(self.path).path
            if path.startswith("/response/"):
                with fake._lock:
                    fake.calls.append(Call("response_url", args, path=path))
                self._send(200, b"ok", "text/plain")
                return
            method = path.removeprefix("/api/")
            with fake._lock:
                if fake._limited > 0:
                    fake._limited -= 1
                    fake.calls.append(Call(method, args, status=429, path=path))
                    self._send(429, b'{"ok": false, "error": "ratelimited"}', "application/json",
                               {"Retry-After": str(fake._retry_after)})
                    return
                body = fake.answer(method, args)
                fake.calls.append(Call(method, args, path=path))
            self._send(200, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler
