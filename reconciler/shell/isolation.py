"""Per-plugin isolation: an exception while handling one plugin holds that rollout, and the others go on.

A plugin whose observing, deciding, recording, acting or notifying raises is left out of the rest of the tick;
its rollout gets a `Hold` of kind `internal_error` naming the error, so its next decision pauses it (recorded
as spec.paused, like any pause grayops makes) and alerts once, through the engine. When it fails again before a
hold could take effect, the alert is raised here, once per error, until the plugin goes through a tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from reconciler.adapters.gitrepo import GitError
from reconciler.core.effects import Hold
from reconciler.core.model import Severity
from reconciler.core.text import one_line
from reconciler.shell.alerts import FleetAlerts, Holds

log = logging.getLogger("grayops")

KIND = "internal_error"
T = TypeVar("T")


class Isolation:
    def __init__(self, holds: Holds, alerts: FleetAlerts) -> None:
        self._holds, self._alerts = holds, alerts
        self._failing: dict[str, str] = {}  # plugin -> what went wrong, until it goes through a tick
        self._alerted: set[tuple[str, str]] = set()

    def each(self, names: Iterable[str], doing: str, step: Callable[[str], T]) -> dict[str, T]:
        """`step` for each plugin, by name; a plugin whose step raises is held and left out of the result."""
        done: dict[str, T] = {}
        for name in names:
            try:
                done[name] = step(name)
            except Exception as err:  # one plugin's fault never ends the process or stops the others
                self.failed(name, doing, err)
        return done

    def failed(self, plugin: str, doing: str, err: Exception) -> None:
        what = f"internal error while {doing}: {type(err).__name__}: {one_line(str(err), 300)}"
        # a GitError says what git or the clone refused (a clone deleted under us, a full disk): the line is the why;
        # anything else is a defect of ours, and its traceback is what finds it
        log.error("%s: %s; its rollout is held, the other plugins go on", plugin, what,
                  exc_info=None if isinstance(err, GitError) else err)
        if plugin in self._failing and (plugin, what) not in self._alerted:  # the hold could not take effect
            self._alerted.add((plugin, what))
            self._alerts.alert(KIND, Severity.CRITICAL, f"{plugin}: {what}; it fails again before it could be "
                               f"paused", plugin=plugin)
        self._failing[plugin] = what
        self._holds.put(plugin, Hold(what, KIND))

    def went_through(self, names: Iterable[str]) -> None:
        """These plugins went through the tick: a later failure is a new one."""
        for name in names:
            if self._failing.pop(name, None) is not None:
                self._alerted = {key for key in self._alerted if key[0] != name}
