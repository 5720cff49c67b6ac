"""The PagerDuty notifier (`type: pagerduty`): a critical alert opens an incident, the rollout settling resolves it.

PagerDuty Events API v2 (README "PagerDuty"): each critical alert is a `trigger` sent to `<url>/v2/enqueue` with
the `dedup_key` `grayops/<plugin>/<rolloutId>`, so one rollout is one incident however many alerts it raises;
when the rollout ends Succeeded or RolledBack, a `resolve` with the same key closes it (PagerDuty drops a
resolve for a key with no open incident). A fleet-wide alert (an invalid revision, a git conflict) has the key
`grayops/<kind>` and is resolved by a person. Warnings and other transitions are not sent.

The routing key is read from the environment variable grayops.yaml names (`routingKeyEnv`), added to an event
only as it is sent, and never written to a log line. Events go out from the `Outbox` in the background: a 429
waits, a 5xx or a network failure is retried with backoff, a 400 is given up and logged with PagerDuty's reason.
"""

from __future__ import annotations

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
from reconciler.core.model import Phase, Severity, fmt_time
from reconciler.core.spec import NotifierSettings

log = logging.getLogger(__name__)

DEFAULT_URL = "https://events.pagerduty.com"
SETTLED = (Phase.SUCCEEDED, Phase.ROLLED_BACK)  # the rollout is over and the fleet runs a good version
SUMMARY_LIMIT = 1024  # PagerDuty's limit on payload.summary


class PagerDutySettings(NotifierSettings):
    type: Literal["pagerduty"]
    routing_key_env: str = Field(description="environment variable holding the integration's routing key")
    url: str = Field(DEFAULT_URL, description="Events API base URL; events are posted to <url>/v2/enqueue")


def dedup_key(event: Event) -> str:
    return f"grayops/{event.plugin}/{event.rollout_id}" if event.rollout_id else f"grayops/{event.kind}"


def pagerduty_event(event: Event) -> dict[str, Any] | None:
    """The Events API event for a grayops event (without the routing key), or None when it pages nobody."""
    if event.kind == "transition":
        if event.phase in SETTLED and event.rollout_id:
            return {"event_action": "resolve", "dedup_key": dedup_key(event)}
        return None
    if event.severity is not Severity.CRITICAL:
        return None
    details = {"plugin": event.plugin, "version": event.version, "rolloutId": event.rollout_id, "kind": event.kind,
               "phase": event.phase.value, "batch": event.batch, "at": fmt_time(event.at)}
    return {
        "event_action": "trigger",
        "dedup_key": dedup_key(event),
        "client": "grayops",
        "payload": {"summary": event.message[:SUMMARY_LIMIT], "source": "grayops", "severity": "critical",
                    "timestamp": fmt_time(event.at), "component": event.plugin, "class": event.kind,
                    "custom_details": {k: v for k, v in details.items() if v}},
    }


class PagerDutyNotifier:
    def __init__(self, url: str, routing_key: str, timeout: float = 10.0, queue_limit: int = 1000,
                 min_backoff: float = 1.0, rate_limit_wait: float = 30.0) -> None:
        self.endpoint = url.rstrip("/") + "/v2/enqueue"
        self.where = urlparse(url).netloc
        self._routing_key = routing_key
        self.timeout = timeout
        self.rate_limit_wait = rate_limit_wait  # PagerDuty's 429 has no Retry-After; it suggests waiting 30 s
        self.outbox: Outbox[dict[str, Any]] = Outbox("pagerduty", self._deliver, limit=queue_limit,
                                                     min_backoff=min_backoff)

    def notify(self, event: Event) -> None:
        found = pagerduty_event(event)
        if found is not None:
            self.outbox.put(found)

    def flush(self, timeout: float = 10.0) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    def _deliver(self, event: dict[str, Any]) -> None:
        body = json.dumps({"routing_key": self._routing_key, **event}, sort_keys=True).encode()
        request = urllib.request.Request(self.endpoint, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "grayops"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as err:
            if err.code == 429:
                raise RetryAfter(float(err.headers.get("Retry-After") or self.rate_limit_wait)) from None
            if err.code < 500:
                raise Drop(f"PagerDuty at {self.where} refused the {event['event_action']} of {event['dedup_key']} "
                           f"(HTTP {err.code}): {_reason(err)}") from None
            raise


def _reason(err: urllib.error.HTTPError) -> str:
    """PagerDuty's message and errors from a refusal's body (they name fields, never their values)."""
    try:
        answer = json.loads(err.read() or b"{}")
    except ValueError:
        return err.reason
    if not isinstance(answer, dict):
        return err.reason
    errors = answer.get("errors")
    listed = [str(e) for e in errors[:5]] if isinstance(errors, list) else []
    return "; ".join([str(answer.get("message") or err.reason), *listed])


def _build(settings: PagerDutySettings, context: Context) -> PagerDutyNotifier | None:
    routing_key = context.env.get(settings.routing_key_env)
    if not routing_key:
        log.error("pagerduty notifier: environment variable %s (routingKeyEnv) is not set; nothing is sent to "
                  "PagerDuty", settings.routing_key_env)
        return None
    return PagerDutyNotifier(settings.url, routing_key)


NOTIFIER = NotifierAdapter("pagerduty", PagerDutySettings, _build)
