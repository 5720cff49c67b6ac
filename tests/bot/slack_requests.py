"""Requests signed exactly as Slack signs them: `v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}`."""

from __future__ import annotations

import hashlib
import hmac
import json
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
