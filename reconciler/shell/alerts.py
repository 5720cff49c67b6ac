"""Alerts about the fleet as a whole, and the holds the shell puts on rollouts for reasons of its own.

A fleet-wide alert (an invalid revision, the remote unreachable, a git conflict outside any plugin) is an event
of plugin "*", to every notifier of the runtime in force and to the alert counter. A hold is how the shell stops
one rollout (a git conflict on its files, a rewritten history, an internal error): the engine pauses it at its
next decision and alerts with the hold's kind, once per rollout (README "Git as the record").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reconciler.adapters.ports import Clock, Notifier
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.effects import Event, Hold
from reconciler.core.layout import owner
from reconciler.core.model import Phase, Severity


class FleetAlerts:
    """Says what concerns the whole fleet: nothing before a runtime (and so a notifier) is in force."""

    def __init__(self, notifier: Callable[[], Notifier | None], telemetry: Telemetry, clock: Clock) -> None:
        self._notifier, self._telemetry, self._clock = notifier, telemetry, clock

    def alert(self, kind: str, severity: Severity, message: str, plugin: str = "*") -> None:
        notifier = self._notifier()
        if notifier is None:
            return
        self._telemetry.alert(plugin, kind)
        notifier.notify(Event(plugin, "", "", kind, severity, message, Phase.PENDING, self._clock.now()))


class Holds:
    """Rollouts to pause at their next decision, by plugin; the engine is given each hold once."""

    def __init__(self) -> None:
        self._held: dict[str, Hold] = {}

    def put(self, plugin: str, hold: Hold) -> None:
        self._held[plugin] = hold

    def on_paths(self, paths: Iterable[str], hold: Hold) -> bool:
        """Hold the plugins these paths belong to; False when none belongs to a plugin."""
        held = False
        for path in paths:
            plugin = owner(path)
            if plugin is not None:
                self._held[plugin] = hold
                held = True
        return held

    def take(self, plugin: str) -> Hold | None:
        return self._held.pop(plugin, None)

    def clear(self) -> None:
        self._held.clear()
