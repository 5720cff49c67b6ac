"""The generic webhook notifier: every alert as the event `plugin.version.gray.alert` (README "Slack"), JSON, signed.

The body is signed with HMAC-SHA256 under a secret read from the environment variable that grayops.yaml
names (`secretEnv`): header `X-Grayops-Signature: sha256=<hex>` over the exact body bytes; receivers compare
it in constant time. Transitions are not sent, only alerts. Delivery is queued (bounded) and retried by a
background thread, so a slow or down receiver never holds up the reconciler; a 4xx other than 429 is
given up and logged.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field

from reconciler.adapters.notify.outbox import Drop, Outbox, RetryAfter
from reconciler.adapters.ports import Context, NotifierAdapter
from reconciler.core.effects import Event
from reconciler.core.model import fmt_time
from reconciler.core.spec import NotifierSettings

log = logging.getLogger(__name__)

EVENT = "plugin.version.gray.alert"
SIGNATURE_HEADER = "X-Grayops-Signature"
EVENT_HEADER = "X-Grayops-Event"


def payload(event: Event) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "event": EVENT, "kind": event.kind, "severity": event.severity.value, "plugin": event.plugin,
        "version": event.version, "rolloutId": event.rollout_id, "phase": event.phase.value,
        "batch": event.batch, "message": event.message, "at": fmt_time(event.at),
    }
    if event.alert_id:  # README "Owners and escalation": acknowledge it with POST /api/v1/alerts/<id>/ack
        doc["alertId"] = event.alert_id
    if event.escalated:
        doc["escalated"] = event.escalated
    return doc


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    def __init__(self, url: str, secret: str | None, timeout: float = 10.0, queue_limit: int = 1000,
                 min_backoff: float = 1.0) -> None:
        self.url = url
        self.where = urlparse(url).netloc  # for messages: the path may hold a token
        self._secret = secret
        self.timeout = timeout
        self.outbox: Outbox[bytes] = Outbox("webhook", self._deliver, limit=queue_limit, min_backoff=min_backoff)

    def notify(self, event: Event) -> None:
        if event.kind == "transition":
            return
        self.outbox.put(json.dumps(payload(event), sort_keys=True).encode())

    def flush(self, timeout: float = 10.0) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    def _deliver(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", EVENT_HEADER: EVENT, "User-Agent": "grayops"}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as err:
            if err.code == 429:
                raise RetryAfter(float(err.headers.get("Retry-After") or 1)) from None
            if err.code < 500:
                raise Drop(f"webhook at {self.where} refused the alert: HTTP {err.code}") from None
            raise


class WebhookSettings(NotifierSettings):
    type: Literal["webhook"]
    url: str
    secret_env: str | None = Field(None, description="environment variable holding the HMAC key")


def _build(settings: WebhookSettings, context: Context) -> WebhookNotifier:
    secret = context.env.get(settings.secret_env) if settings.secret_env else None
    if settings.secret_env and not secret:
        log.error("webhook notifier: environment variable %s (secretEnv) is not set; alerts are sent unsigned",
                  settings.secret_env)
    return WebhookNotifier(settings.url, secret)


NOTIFIER = NotifierAdapter("webhook", WebhookSettings, _build)
