"""Requests signed exactly as Slack signs them: `v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}`."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def signature(body: str, timestamp: int, secret: str = SECRET) -> str:
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def post(url: str, body: str, *, secret: str = SECRET, timestamp: int | None = None,
         forged: bool = False) -> tuple[int, str]:
    """POST a form body as Slack does; returns (status, response body)."""
    ts = int(time.time()) if timestamp is None else timestamp
    sig = signature(body, ts, "not-the-secret" if forged else secret)
    request = urllib.request.Request(url, data=body.encode(), method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sig})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def slash(command: str, text: str, *, user: str = "U0OPS1", name: str = "alice", trigger: str,
          response_url: str, channel: str = "C0OPS") -> str:
    return urlencode({
        "token": "legacy", "team_id": "T0TEAM", "team_domain": "ops", "channel_id": channel,
        "channel_name": "ops", "user_id": user, "user_name": name, "command": command, "text": text,
        "api_app_id": "A0APP", "is_enterprise_install": "false", "response_url": response_url,
        "trigger_id": trigger,
    })


def button(action: str, plugin: str, *, user: str = "U0OPS1", name: str = "alice", trigger: str,
           response_url: str, channel: str = "C0OPS", message_ts: str = "1700000000.000001") -> str:
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": "T0TEAM", "domain": "ops"},
        "user": {"id": user, "username": name, "name": name, "team_id": "T0TEAM"},
        "api_app_id": "A0APP", "token": "legacy", "trigger_id": trigger, "response_url": response_url,
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
        "channel": {"id": channel, "name": "ops"}, "message": {"ts": message_ts, "text": "rollout"},
        "actions": [{"action_id": f"grayops_{action}", "block_id": "grayops:x", "value": plugin, "type": "button",
                     "text": {"type": "plain_text", "text": action}, "action_ts": "1700000001.000001"}],
    }
    return urlencode({"payload": json.dumps(payload)})


def signed_headers(body: bytes, *, secret: str = SECRET, timestamp: int | None = None,
                   content_type: str = "application/x-www-form-urlencoded") -> dict[str, str]:
    """The headers Slack sends with `body` (signed over its bytes)."""
    ts = int(time.time()) if timestamp is None else timestamp
    base = b"v0:%d:" % ts + body
    sig = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": sig}


def post_bytes(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST raw bytes with exactly these headers (urllib adds Content-Length); returns (status, body)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def raw_exchange(port: int, head: str, body: bytes = b"", timeout: float = 30.0) -> str:
    """Send a hand-written request (`head` without the blank line) and return everything answered until the
    server closes the connection (for requests urllib cannot send: no or a wrong Content-Length)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body)
        return _read_until_closed(sock)


def status_of(answer: str) -> int | None:
    """The status code of a raw HTTP answer (`HTTP/1.1 413 ...`); None when there is none."""
    parts = answer.split(" ", 2)
    return int(parts[1]) if answer.startswith("HTTP/") and len(parts) > 1 and parts[1].isdigit() else None


def _read_until_closed(sock: socket.socket) -> str:
    chunks = []
    try:
        while data := sock.recv(65536):
            chunks.append(data)
    except ConnectionResetError:
        pass  # the server may reset after answering, when it left part of the request unread
    return b"".join(chunks).decode(errors="replace")


def send_huge(port: int, head: str, size: int, timeout: float = 60.0) -> tuple[str, int]:
    """Announce and send a `size`-byte body while reading the answer; returns (answer, body bytes the server let
    us send before it closed the connection). A server that reads the whole body lets all of it through."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sent = 0
    chunk = b"x" * (1 << 20)

    def pump() -> None:
        nonlocal sent
        try:
            sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n\r\n")
            while sent < size:
                sent += sock.send(chunk[: min(len(chunk), size - sent)])
        except OSError:
            pass  # the server closed the connection: what it did not read cannot be sent

    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    try:
        answer = _read_until_closed(sock)
        sender.join(timeout)
    finally:
        sock.close()
    return answer, sent
