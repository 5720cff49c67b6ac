"""Escalation of critical alerts (README "Owners and escalation"). Pure: `now` is passed in.

A critical alert of a rollout gets an id (`<plugin>-<10 hex>`, its plugin first so an acknowledgement knows the
file it goes in). grayops.yaml's `escalation` lists levels, each a notifier reached `after` the alert was raised;
a level with `after: 0` hears of it at once, like every notifier no level names. Whether a level is due is a
function of the open alerts, the acknowledgements, the levels and now: `due`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from reconciler.core.effects import Event
from reconciler.core.spec import EscalationLevel
from reconciler.core.timing import format_duration

ALERT_ID = re.compile(r"^(?P<plugin>[a-z0-9]([-a-z0-9]*[a-z0-9])?)-(?P<digest>[0-9a-f]{10})$")


def alert_id(event: Event) -> str:
    """Stable for one alert: its plugin, rollout, kind and the time it was raised."""
    key = "\n".join((event.plugin, event.rollout_id, event.kind, event.at.isoformat()))
    return f"{event.plugin}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def plugin_of_alert(alert: str) -> str | None:
    """The plugin an alert id belongs to, or None when it is not an alert id."""
    found = ALERT_ID.match(alert)
    return found.group("plugin") if found else None


def escalation_only(levels: Sequence[EscalationLevel]) -> frozenset[str]:
    """The notifiers that hear of a critical alert only when their level is reached (named by a level with an
    `after`, and by none without)."""
    at_once = {level.notify for level in levels if level.after == 0}
    return frozenset(level.notify for level in levels if level.after > 0) - at_once


@dataclass(frozen=True)
class OpenAlert:
    """A critical alert not yet acknowledged, and how far it went (the highest level index it reached)."""

    event: Event  # as first sent, with its alert_id
    reached: int

    @property
    def id(self) -> str:
        assert self.event.alert_id is not None
        return self.event.alert_id


def raised(event: Event, levels: Sequence[EscalationLevel]) -> OpenAlert:
    """A new alert: every level with `after: 0` heard of it with the notifiers no level names."""
    at_once = [index for index, level in enumerate(levels) if level.after == 0]
    return OpenAlert(event, max(at_once, default=-1))


@dataclass(frozen=True)
class Escalate:
    """Send `event` (the alert, marked escalated) to the level's notifier."""

    alert: str
    level: int
    notify: str
    event: Event


def due(alerts: Iterable[OpenAlert], acknowledged: Collection[str], levels: Sequence[EscalationLevel],
        now: datetime) -> tuple[list[OpenAlert], list[Escalate]]:
    """(the alerts still open, the escalations to send now). An acknowledged alert is closed; one past its last
    level too. Levels are reached in order, each once, however late the check."""
    still: list[OpenAlert] = []
    sends: list[Escalate] = []
    for alert in alerts:
        if alert.id in acknowledged:
            continue
        age = (now - alert.event.at).total_seconds()
        reached = alert.reached
        for index in range(alert.reached + 1, len(levels)):
            level = levels[index]
            if level.after > age:
                break
            why = f"not acknowledged after {format_duration(level.after)}: level {index + 1}, {level.notify}"
            sends.append(Escalate(alert.id, index, level.notify,
                                  replace(alert.event, escalated=why, mentions=tuple(level.mention))))
            reached = index
        if reached < len(levels) - 1:
            still.append(replace(alert, reached=reached))
    return still, sends
