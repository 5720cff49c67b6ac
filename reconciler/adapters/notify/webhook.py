"""The generic webhook notifier: a rollout's lifecycle and every alert as CloudEvents 1.0 (README "Lifecycle
events").

Each event is one structured-mode CloudEvent (`Content-Type: application/cloudevents+json`): `type`
`dev.grayops.rollout.<started|batch.passed|paused|awaiting_approval|succeeded|rolled_back|failed>`, or
`plugin.version.gray.alert` for an alert; other transitions are not sent. The body is signed with HMAC-SHA256
under a secret read from the environment variable that grayops.yaml names (`secretEnv`): header
`X-Grayops-Signature: sha256=<hex>` over the exact body bytes; receivers compare it in constant time. The `id`
is derived from the event, and a retry sends the same bytes, so a receiver de-duplicates by it.
Delivery is queued (bounded) and sent by a background thread, so a slow or down receiver never holds up the
reconciler: a 5xx, a timeout or a refused connection is retried with backoff, `attempts` times in all, then
the event is dropped; a 4xx other than 429 is dropped at once. Drops and deliveries are counted by target
(`grayops_webhook_events_dropped_total`, `grayops_webhook_events_delivered_total` on /metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from typing import Any, Literal
from urllib.parse import urlparse

from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
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
CONTENT_TYPE = "application/cloudevents+json"
SOURCE = "/grayops"
LIFECYCLE_PREFIX = "dev.grayops.rollout."

# a transition's Grayops-Action -> its lifecycle event; the other transitions are not sent
LIFECYCLE = {"start": "started", "batch-pass": "batch.passed", "pause": "paused",
             "await-approval": "awaiting_approval", "succeed": "succeeded", "rolled-back": "rolled_back",
             "fail": "failed"}
EventName = Literal["started", "batch.passed", "paused", "awaiting_approval", "succeeded", "rolled_back", "failed",
                    "alert"]


def event_name(event: Event) -> str | None:
    """The name a notifier's `events:` filter uses: `alert`, a lifecycle event's, or None (not sent)."""
    if event.kind != "transition":
        return "alert"
    return LIFECYCLE.get(event.action or "")


def event_type(name: str) -> str:
    return EVENT if name == "alert" else LIFECYCLE_PREFIX + name


def data(event: Event) -> dict[str, Any]:
    found: dict[str, Any] = {"plugin": event.plugin, "version": event.version, "rolloutId": event.rollout_id,
                             "phase": event.phase.value, "batch": event.batch, "commit": event.commit}
    if event.kind == "transition":
        found["reason"] = event.message
    else:
        found.update(kind=event.kind, severity=event.severity.value, message=event.message)
        if event.alert_id:  # README "Owners and escalation": acknowledge it with POST /api/v1/alerts/<id>/ack
            found["alertId"] = event.alert_id
        if event.escalated:
            found["escalated"] = event.escalated
    return found


def cloudevent(event: Event, name: str, source: str = SOURCE) -> dict[str, Any]:
    """The structured CloudEvent; its id is a digest of what the event says, the same on every retry."""
    kind = event_type(name)
    at = fmt_time(event.at)
    key = "\0".join((source, kind, event.plugin, event.rollout_id, event.batch or "", at or "", event.message))
    return {"specversion": "1.0", "type": kind, "source": source,
            "id": hashlib.sha256(key.encode()).hexdigest()[:32], "time": at, "subject": event.plugin,
            "datacontenttype": "application/json", "data": data(event)}


def payload(event: Event) -> dict[str, Any] | None:
    """The CloudEvent for any grayops event, or None when webhooks are not told of it."""
    name = event_name(event)
    return None if name is None else cloudevent(event, name)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Tally:
    """Events delivered and dropped, by target (the URL's host:port), for the whole process: the notifiers are
    rebuilt on every settings change, and a counter never goes back. A prometheus collector."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)  # (outcome, target) -> events

    def count(self, target: str, outcome: str) -> None:
        with self._lock:
            self._counts[(outcome, target)] += 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts = dict(self._counts)
        for outcome in ("delivered", "dropped"):
            family = CounterMetricFamily(f"grayops_webhook_events_{outcome}",
                                         f"Events to webhook notifiers {outcome}, by target (host:port).",
                                         labels=["target"])
            for (which, target), value in sorted(counts.items()):
                if which == outcome:
                    family.add_metric([target], value)
            yield family


TALLY = Tally()


class WebhookNotifier:
    def __init__(self, url: str, secret: str | None, timeout: float = 10.0, queue_limit: int = 1000,
                 min_backoff: float = 1.0, events: frozenset[str] | None = None, attempts: int | None = 5,
                 source: str = SOURCE) -> None:
        self.url = url
        # for messages and the metric's label: host and port only, as the path (or a user:password@) may hold a secret
        self.where = urlparse(url).netloc.rpartition("@")[2]
        self._secret = secret
        self.timeout = timeout
        self.events = events  # None: every event
        self.source = source
        self.outbox: Outbox[bytes] = Outbox("webhook", self._deliver, limit=queue_limit, min_backoff=min_backoff,
                                            attempts=attempts, counted=lambda outcome: TALLY.count(self.where,
                                                                                                   outcome))

    def notify(self, event: Event) -> None:
        name = event_name(event)
        if name is None or (self.events is not None and name not in self.events):
            return
        self.outbox.put(json.dumps(cloudevent(event, name, self.source), sort_keys=True).encode())

    def flush(self, timeout: float = 10.0) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    def _deliver(self, body: bytes) -> None:
        headers = {"Content-Type": CONTENT_TYPE, EVENT_HEADER: json.loads(body)["type"], "User-Agent": "grayops"}
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
                raise Drop(f"webhook at {self.where} refused the event: HTTP {err.code}") from None
            raise


class WebhookSettings(NotifierSettings):
    type: Literal["webhook"]
    url: str
    secret_env: str | None = Field(None, description="environment variable holding the HMAC key")
    events: list[EventName] | None = Field(None, description="the events this target gets (default: all)")
    attempts: int = Field(5, ge=1, le=20, description="tries per event (backoff 1s, 2s, 4s, ...) before it "
                                                        "is dropped")
    source: str = Field(SOURCE, min_length=1, description="the CloudEvents `source` of every event")


def _build(settings: WebhookSettings, context: Context) -> WebhookNotifier:
    secret = context.env.get(settings.secret_env) if settings.secret_env else None
    if settings.secret_env and not secret:
        log.error("webhook notifier: environment variable %s (secretEnv) is not set; events are sent unsigned",
                  settings.secret_env)
    events = frozenset(settings.events) if settings.events is not None else None
    return WebhookNotifier(settings.url, secret, events=events, attempts=settings.attempts, source=settings.source)


NOTIFIER = NotifierAdapter("webhook", WebhookSettings, _build)
