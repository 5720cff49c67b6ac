"""The Slack notifier: one message per rollout, kept current with chat.update, details and alerts in its thread.

The reconciler calls `observe(state, batches_total)` and `notify(event)`; both only queue (bounded) and
return at once. One background thread talks to Slack: it posts the rollout's message the first time, then
edits it in place when what it shows changes, and posts each transition and alert as a thread reply
(critical alerts are also broadcast to the channel). A 429 waits its Retry-After; Slack down is retried with
backoff while the queue keeps the newest events. The message's channel and ts go back to the reconciler as
the rollout's `notes`, which it keeps in the status file, so a restarted reconciler edits the same message.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.render import event_blocks, event_line, rollout_message
from reconciler.adapters.notify.outbox import Drop, Outbox, RetryAfter
from reconciler.adapters.ports import Notifier, RolloutWatcher
from reconciler.core.effects import Event
from reconciler.core.model import RolloutState, Severity

log = logging.getLogger(__name__)

CHANNEL_NOTE, TS_NOTE = "slackChannel", "slackTs"


def route(default: str, plugin_channels: Mapping[str, str], tier_channels: Mapping[str, str], plugin: str,
          tiers: set[str]) -> str:
    """The plugin's own channel; else the first tier channel (in grayops.yaml order) among the rollout's tiers."""
    if plugin in plugin_channels:
        return plugin_channels[plugin]
    for tier, channel in tier_channels.items():
        if tier in tiers:
            return channel
    return default


def call(method: Any, **kwargs: Any) -> Any:
    """One Web API call with Slack's faults mapped for the outbox: 429 -> RetryAfter, 4xx errors -> Drop,
    5xx and connection failures raise (retried)."""
    try:
        return method(**kwargs)
    except SlackApiError as err:
        status = err.response.status_code
        if status == 429:
            headers = {k.lower(): v for k, v in err.response.headers.items()}
            raise RetryAfter(float(headers.get("retry-after", 1))) from None
        if status >= 500:
            raise
        raise Drop(f"Slack refused {getattr(method, '__name__', 'the call')}: {err.response.get('error')}") from None


@dataclass
class _Message:
    channel: str
    ts: str | None = None
    shown: str | None = None  # the blocks last sent, to skip updates that change nothing


@dataclass(frozen=True)
class _Observed:
    state: RolloutState
    batches_total: int


class SlackNotifier:
    def __init__(self, client: WebClient, channel: str, plugin_channels: Mapping[str, str] | None = None,
                 tier_channels: Mapping[str, str] | None = None, cluster_tiers: Mapping[str, str] | None = None,
                 queue_limit: int = 1000, min_backoff: float = 1.0, dashboard_url: str | None = None) -> None:
        self.client = client
        self.dashboard_url = dashboard_url
        self.channel = channel
        self.plugin_channels = dict(plugin_channels or {})
        self.tier_channels = dict(tier_channels or {})
        self.cluster_tiers = dict(cluster_tiers or {})
        self._lock = threading.Lock()
        self._messages: dict[str, _Message] = {}  # rollout id -> its message
        self._latest: dict[str, _Observed] = {}  # rollout id -> the newest state seen
        self._rollout_of: dict[str, str] = {}  # plugin -> its newest rollout id
        self.outbox: Outbox[tuple[str, Any]] = Outbox("slack", self._deliver, limit=queue_limit,
                                                       min_backoff=min_backoff)

    # --- what the reconciler calls (never blocks) -------------------------------------------------------------

    def observe(self, state: RolloutState, batches_total: int) -> None:
        with self._lock:
            self._adopt(state)
            self._latest[state.rollout_id] = _Observed(state, batches_total)
            self._rollout_of[state.plugin] = state.rollout_id
        self.outbox.put(("state", state.rollout_id))

    def notify(self, event: Event) -> None:
        self.outbox.put(("event", event))

    def notes(self, state: RolloutState) -> Mapping[str, str]:
        """What to keep in the status file: the rollout message's channel and ts, once Slack gave them."""
        with self._lock:
            self._adopt(state)
            message = self._messages.get(state.rollout_id)
            if message is None or message.ts is None:
                return state.notes
            return {**state.notes, CHANNEL_NOTE: message.channel, TS_NOTE: message.ts}

    def thread_of(self, plugin: str) -> tuple[str, str] | None:
        """(channel, ts) of the plugin's newest rollout message, when posted."""
        with self._lock:
            message = self._messages.get(self._rollout_of.get(plugin, ""))
            return (message.channel, message.ts) if message and message.ts else None

    def flush(self, timeout: float = 10.0) -> bool:
        return self.outbox.flush(timeout)

    def close(self) -> None:
        self.outbox.close()

    def _adopt(self, state: RolloutState) -> None:
        """A message recorded in the status file (before a restart) is the one to keep editing."""
        ts, channel = state.notes.get(TS_NOTE), state.notes.get(CHANNEL_NOTE)
        if ts and channel and state.rollout_id not in self._messages:
            self._messages[state.rollout_id] = _Message(channel, ts)
            self._rollout_of.setdefault(state.plugin, state.rollout_id)

    # --- the sender thread ------------------------------------------------------------------------------------

    def _deliver(self, item: tuple[str, Any]) -> None:
        kind, payload = item
        if kind == "state":
            self._show(payload)
        else:
            self._event(payload)

    def _channel_for(self, state: RolloutState | None, plugin: str) -> str:
        tiers = set()
        if state is not None:
            tiers = {self.cluster_tiers[c] for c in (i.split("/", 1)[0] for i in state.instances)
                     if c in self.cluster_tiers}
        return route(self.channel, self.plugin_channels, self.tier_channels, plugin, tiers)

    def _show(self, rollout_id: str) -> None:
        with self._lock:
            observed = self._latest.get(rollout_id)
            message = self._messages.get(rollout_id)
        if observed is None:
            return
        text, blocks = rollout_message(observed.state, observed.batches_total, self.dashboard_url)
        shown = json.dumps(blocks, sort_keys=True)
        if message is not None and message.ts is not None:
            if message.shown == shown:
                return
            try:
                call(self.client.chat_update, channel=message.channel, ts=message.ts, text=text, blocks=blocks)
            except Drop as err:
                if "message_not_found" not in str(err):
                    raise
                log.warning("the Slack message of rollout %s is gone; posting a new one", rollout_id)
                message = None
            else:
                with self._lock:
                    message.shown = shown
                return
        channel = message.channel if message else self._channel_for(observed.state, observed.state.plugin)
        response = call(self.client.chat_postMessage, channel=channel, text=text, blocks=blocks)
        with self._lock:
            self._messages[rollout_id] = _Message(str(response["channel"]), str(response["ts"]), shown)

    def _event(self, event: Event) -> None:
        line = event_line(event)
        if event.plugin == "*" or not event.rollout_id:
            call(self.client.chat_postMessage, channel=self.channel, text=line)
            return
        with self._lock:
            message = self._messages.get(event.rollout_id)
        if message is None or message.ts is None:
            self._show(event.rollout_id)
            with self._lock:
                message = self._messages.get(event.rollout_id)
        if message is None or message.ts is None:  # never observed: a message of its own
            channel = self._channel_for(None, event.plugin)
            response = call(self.client.chat_postMessage, channel=channel,
                            text=f"{event.plugin} {event.version}: {event.phase.value}")
            message = _Message(str(response["channel"]), str(response["ts"]))
            with self._lock:
                self._messages[event.rollout_id] = message
                self._rollout_of.setdefault(event.plugin, event.rollout_id)
        blocks = event_blocks(event)
        extra = {"blocks": blocks} if blocks else {}
        call(self.client.chat_postMessage, channel=message.channel, thread_ts=message.ts, text=line,
             reply_broadcast=event.severity is Severity.CRITICAL, **extra)


if TYPE_CHECKING:  # the reconciler calls it through these Protocols (reconciler/adapters/ports.py): mypy checks it
    _notifier: type[Notifier] = SlackNotifier
    _watcher: type[RolloutWatcher] = SlackNotifier
