"""The recorder: each rollout's record, committed to a record store before anything is acted on.

Each plugin's transitions of a tick are one commit of status/<plugin>.yaml as the tick left it: a line for each
transition (the record keeps every reason), and the trailers of the last saying which rollout, which action, which
batch, who asked and who approved (README "Git as the record"); the one that finishes a rollout carries its report.
A `CommitSpec` (the engine's revert of spec.version, or its pause) is a commit of the plugin's file. `GitRepo` is
the store; tests use a fake.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from reconciler.core import yamledit
from reconciler.core.effects import CommitSpec, Desired
from reconciler.core.engine import ENGINE, Decision, Transition
from reconciler.core.fleet import RevisionFiles
from reconciler.core.layout import status_path, status_plugin
from reconciler.core.model import RolloutState
from reconciler.core.report import render_report, report_path
from reconciler.core.status import StatusUnreadable, dump_status, load_status
from reconciler.shell.effects import Routed

log = logging.getLogger("grayops")
Trailers = Sequence[tuple[str, str]]


class RecordStore(Protocol):
    """Where the record is kept: the fleet repository's clone (`GitRepo`), or a fake in tests."""

    def commit(self, files: Mapping[str, str | None], message: str | Sequence[str], trailers: Trailers = (), *,
               status: bool = False) -> str | None:
        """Commit `files` (status=True: into the record's location), `message` one line or several; None when
        nothing changed."""
        ...

    def read(self, path: str, rev: str = "HEAD") -> str | None: ...

    def status_files(self) -> RevisionFiles: ...

    def report_paths(self) -> list[str]: ...


class Recorder:
    def __init__(self, store: RecordStore) -> None:
        self._store = store
        self._reports_seen: set[str] = set()

    def states(self) -> dict[str, RolloutState]:
        """The rollouts status/ records. No status file can stop a start: one that cannot be read (not a regular
        file, not UTF-8, over the limits, with YAML anchors, or not a status at all) is logged and its plugin
        starts without it."""
        recorded = self._store.status_files()
        for error in recorded.errors:
            log.error("%s; its plugin starts without its recorded state", error)
        states = {}
        for path, text in recorded.items():
            plugin = status_plugin(path)
            if plugin is None:
                continue  # not a status grayops writes (status/<plugin>.yaml)
            try:
                states[plugin] = load_status(text, path)
            except StatusUnreadable as err:  # whatever a hand-made one holds
                log.error("%s; %s starts without its recorded state", err, plugin)
        return states

    def record(self, decision: Decision, want: Desired, plugin_file: str, approved: Mapping[str, str]) -> None:
        """Commit the tick's transitions as one commit (the status as the tick left it, a line for each transition,
        the trailers of the last; the report when the rollout finished) and the changes owed to the plugin's file
        (`plugin_file`). `approved`: batch -> who approved it, for the report."""
        state = decision.state
        routed = Routed.of(decision.effects)
        if decision.transitions:
            files: dict[str, str | None] = {status_path(state.plugin): dump_status(state)}
            if routed.report:
                labels = {ref.id: dict(ref.labels) for ref in want.instances}
                files[report_path(state)] = render_report(state, labels, approved)
            lines = [f"{state.plugin} {state.target_version}: {t.reason}" for t in decision.transitions]
            self._store.commit(files, lines, trailers(state, want, decision.transitions[-1]), status=True)
        for change in routed.commits:
            self._commit_spec(plugin_file, state, change)

    def _commit_spec(self, path: str, state: RolloutState, change: CommitSpec) -> None:
        text = self._store.read(path)
        if text is None:
            return
        try:
            changed = yamledit.set_field(text, ("spec", change.field), change.value)
        except ValueError as err:
            log.error("cannot record %s in %s: %s", change.action, path, err)
            return
        self._store.commit({path: changed}, f"{change.plugin}: {change.reason}",
                           [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", change.action),
                            ("Requested-By", ENGINE), ("Desired-Commit", state.desired_commit),
                            ("Grayops-Reason", change.reason)])

    def record_again(self, states: Mapping[str, RolloutState]) -> None:
        """Commit each rollout's status where a rewritten history lost it: status/ says what happened."""
        recorded = self._store.status_files()
        for name, state in sorted(states.items()):
            text = dump_status(state)
            if recorded.get(status_path(name)) != text:
                self._store.commit({status_path(name): text}, f"{name} {state.target_version}: status recorded "
                                   "again after the remote's history was rewritten",
                                   [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", "record"),
                                    ("Requested-By", ENGINE), ("Desired-Commit", state.desired_commit)], status=True)

    def record_alerts(self, state: RolloutState) -> None:
        """Commit the status with the rollout's open alerts as they stand now (README "Owners and escalation")."""
        self._store.commit({status_path(state.plugin): dump_status(state)},
                           f"{state.plugin} {state.target_version}: {len(state.open_alerts)} open alert(s)",
                           [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", "alerts"),
                            ("Requested-By", ENGINE), ("Desired-Commit", state.desired_commit)], status=True)

    def new_reports(self) -> dict[str, str]:
        """The reports not read before (path -> text): all of them the first time, then what another replica or
        process wrote. Raises GitError."""
        new = [path for path in self._store.report_paths() if path not in self._reports_seen]
        texts = {path: text for path in new if (text := self._store.read(path)) is not None}
        self._reports_seen.update(new)
        return texts


def trailers(state: RolloutState, want: Desired, last: Transition) -> list[tuple[str, str]]:
    """The trailers of a transition's commit: who asked for it is the person behind the action, else grayops."""
    if last.action == "pause":
        by = state.paused_by or ENGINE
    elif last.action == "resume":
        by = want.change.by or ENGINE
    elif last.action in ("rollback", "rolled-back"):
        by = state.rollback_by or ENGINE
    else:
        by = state.requested_by or ENGINE
    found = [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", last.action)]
    if last.batch:
        found.append(("Grayops-Batch", last.batch))
    found.append(("Requested-By", by))
    approved = next((b.approved_by for b in state.batches if b.name == last.batch and b.approved_by), None)
    if approved:
        found.append(("Approved-By", approved))
    found.append(("Desired-Commit", state.desired_commit))
    if state.artifact.get("digest"):  # the image the artifact gate pinned (README "Supply chain")
        found.append(("Grayops-Digest", state.artifact["digest"]))
    return found
