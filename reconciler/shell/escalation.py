"""Owners and escalation in the shell (README "Owners and escalation"): the I/O around `core.escalation`.

Each tick's events go to the notifiers through `Escalation.notifier`: alerts mention the plugin's owners (their
Slack IDs from access.yaml's people), a critical alert of a rollout gets its id and is kept open, and the
notifiers that only a later level names do not hear of alerts at once. `Escalation.check`, once a tick, reads the
acknowledgements of the revision in force (`acks:` in approvals/<plugin>.yaml, each a commit) and sends what
`core.escalation.due` says is due. The open alerts of a rollout are kept in its status (`openAlerts:`, committed
by the tick when they change), and `restore` takes them back at a start: a restarted reconciler goes on
escalating them from the level they reached.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime

from reconciler.adapters.notify.fanout import FanOut
from reconciler.adapters.ports import Notifier, RolloutWatcher
from reconciler.adapters.registry import Runtime
from reconciler.core.effects import Event
from reconciler.core.escalation import OpenAlert, alert_id, due, escalation_only, raised
from reconciler.core.fleet import Fleet
from reconciler.core.model import OpenAlertRecord, RolloutState, Severity

log = logging.getLogger("grayops")


def _folded(name: str) -> str:
    return " ".join(name.split()).casefold()


def owner_mentions(fleet: Fleet, plugin: str) -> tuple[str, ...]:
    """The plugin's owners as Slack shows them: each one's Slack user ID, else their name."""
    found = fleet.plugins.get(plugin)
    if found is None:
        return ()
    people = {_folded(p.name): p for p in (fleet.access.people if fleet.access else [])}
    mentions = []
    for owner in found.spec.owners:
        person = people.get(_folded(owner))
        mentions.append(person.slack if person is not None and person.slack else owner)
    return tuple(mentions)


class Escalation:
    """The open critical alerts, across ticks and runtimes."""

    def __init__(self) -> None:
        self._open: dict[str, OpenAlert] = {}
        self._lock = threading.Lock()

    def notifier(self, fleet: Fleet, runtime: Runtime) -> Notifier:
        """Where this tick's events go (in place of `runtime.notifier`)."""
        return _Routing(self, fleet, runtime)

    def open_alerts(self) -> list[OpenAlert]:
        with self._lock:
            return sorted(self._open.values(), key=lambda a: (a.event.at, a.id))

    def check(self, fleet: Fleet, runtime: Runtime, now: datetime) -> None:
        """Close what was acknowledged; send each level that is due."""
        acks = {ack.alert: ack for records in fleet.acks.values() for ack in records}
        with self._lock:
            for alert in self._open.values():
                if alert.id in acks:
                    log.info("alert %s (%s of %s) acknowledged by %s", alert.id, alert.event.kind, alert.event.plugin,
                             acks[alert.id].by)
            still, sends = due(self._open.values(), acks, fleet.settings.escalation, now)
            self._open = {alert.id: alert for alert in still}
        for send in sends:
            target = runtime.named.get(send.notify)
            if target is None:
                log.error("alert %s cannot escalate to %s: that notifier is not running (see the log above)",
                          send.alert, send.notify)
                continue
            log.warning("alert %s (%s of %s) escalated: %s", send.alert, send.event.kind, send.event.plugin,
                        send.event.escalated)
            FanOut([target]).notify(send.event)

    def restore(self, states: Mapping[str, RolloutState]) -> None:
        """Take back the open alerts the rollouts' statuses kept (at a start)."""
        with self._lock:
            for state in states.values():
                for kept in state.open_alerts:
                    event = Event(state.plugin, state.rollout_id, state.target_version, kept.kind, Severity.CRITICAL,
                                  kept.message, kept.phase, kept.raised, batch=kept.batch,
                                  commit=state.desired_commit, alert_id=kept.id)
                    self._open.setdefault(kept.id, OpenAlert(event, kept.reached))

    def records(self, state: RolloutState) -> tuple[OpenAlertRecord, ...]:
        """The open alerts of `state`'s rollout, as its status keeps them (oldest first)."""
        with self._lock:
            mine = [a for a in self._open.values()
                    if a.event.plugin == state.plugin and a.event.rollout_id == state.rollout_id]
        return tuple(OpenAlertRecord(a.id, a.event.kind, a.event.message, a.event.at, a.event.phase, a.reached,
                                     a.event.batch) for a in sorted(mine, key=lambda a: (a.event.at, a.id)))

    def _raise(self, alert: OpenAlert) -> None:
        with self._lock:
            self._open[alert.id] = alert


class _Routing:
    def __init__(self, escalation: Escalation, fleet: Fleet, runtime: Runtime) -> None:
        self.escalation, self.fleet, self.runtime = escalation, fleet, runtime
        levels = fleet.settings.escalation
        # Slack shows every rollout and hears of every alert at once; a level naming it adds the escalation line
        later = {id(found) for name in escalation_only(levels)
                 if (found := runtime.named.get(name)) is not None and not isinstance(found, RolloutWatcher)}
        self.everyone = FanOut(runtime.notifiers)
        self.at_once = FanOut([n for n in runtime.notifiers if id(n) not in later])

    def notify(self, event: Event) -> None:
        if event.kind == "transition":  # a notifier reached only by escalation still hears when a rollout settles
            self.everyone.notify(event)
            return
        event = replace(event, mentions=owner_mentions(self.fleet, event.plugin))
        levels = self.fleet.settings.escalation
        if levels and event.severity is Severity.CRITICAL and event.rollout_id:
            event = replace(event, alert_id=alert_id(event))
            self.escalation._raise(raised(event, levels))
        self.at_once.notify(event)
