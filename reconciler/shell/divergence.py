"""When the remote and the clone diverge: a true conflict, or a history a human rewrote (README "Git as the
record").

A conflict keeps the clone's commits on a `grayops/conflict-*` branch (git's side) and pauses the rollouts whose
plugin files conflicted; a rewritten history is followed, never pushed over: what the remote lost is recorded
again in status/, and the rollouts whose files changed pause. Either alerts once, fleet-wide, when it touches no
plugin (the held rollouts alert themselves, through the engine).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from reconciler.adapters.gitrepo import ConflictInfo, Rewrite
from reconciler.core.effects import Hold
from reconciler.core.model import RolloutState, Severity
from reconciler.shell.alerts import FleetAlerts, Holds
from reconciler.shell.recorder import Recorder

log = logging.getLogger("grayops")


class Rewrites(Protocol):
    def take_rewrites(self) -> list[Rewrite]: ...


class Divergence:
    def __init__(self, rewrites: Rewrites, holds: Holds, alerts: FleetAlerts, recorder: Recorder,
                 states: Mapping[str, RolloutState]) -> None:
        self._rewrites, self._holds, self._alerts, self._recorder = rewrites, holds, alerts, recorder
        self._states = states  # the tick's rollout states, as they stand

    def conflict(self, found: ConflictInfo) -> None:
        reason = (f"git conflict with a concurrent change to {', '.join(found.files)}; local commits kept on "
                  f"{found.saved_branch}")
        log.error(reason)
        if not self._holds.on_paths([p for p in found.files if p.startswith("plugins/")], Hold(reason, "git_conflict")):
            self._alerts.alert("git_conflict", Severity.CRITICAL, reason)

    def follow_rewrites(self) -> None:
        """A human rewrote the remote's history (a force-push): follow it, never push it back. Our commits are on
        a branch; the record of what really happened is written again; the rollouts it touched pause."""
        for rewrite in self._rewrites.take_rewrites():
            reason = (f"the remote's history of {rewrite.branch} was rewritten (force-push): grayops follows it; "
                      f"{rewrite.dropped} commit(s) it no longer has are kept on {rewrite.saved_branch}")
            log.error(reason)
            self._recorder.record_again(self._states)
            if not self._holds.on_paths(rewrite.files, Hold(reason, "history_rewritten")):  # else each one alerts
                self._alerts.alert("history_rewritten", Severity.CRITICAL, reason)
