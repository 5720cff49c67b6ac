"""One reconcile tick: sync the repository -> observe -> decide -> record -> act -> notify -> push.

The shell is the only place that joins the pure core to the adapters. Its order is what makes a crash safe:
each plugin's transition is committed to git *before* its effects run, so a reconciler killed at any moment
restarts from a status that never claims more than happened, and re-issues (idempotent) what it had asked for.
Results of effects (checks, metric readings, refused changes) are fed to the next tick's observations.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from reconciler.adapters.gitrepo import GitError, GitRepo, RemoteUnavailable, Rewrite
from reconciler.adapters.ports import Clock, SystemClock
from reconciler.adapters.registry import Registry, Runtime, default_registry
from reconciler.adapters.telemetry import Telemetry
from reconciler.core import yamledit
from reconciler.core.brakes import with_brakes
from reconciler.core.effects import (
    Alert,
    Change,
    CheckResult,
    CommitSpec,
    Desired,
    Event,
    Hold,
    InstanceObservation,
    MetricResult,
    Observations,
    QueryMetrics,
    RunChecks,
    SetVersion,
    WriteReport,
)
from reconciler.core.engine import ENGINE, Decision, Transition, blocked_clusters, decide, situation
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import SETTINGS_PATH, approvals_files, owner, status_branch, status_path, status_plugin
from reconciler.core.model import Measurement, Phase, RolloutState, Severity
from reconciler.core.people import ApprovalEvidence, Directory, Judged, judge_approvals
from reconciler.core.plan import InstanceRef, select_instances
from reconciler.core.report import batches_total, render_report, report_path
from reconciler.core.spec import MetricSpec, Plugin
from reconciler.core.status import StatusUnreadable, dump_status, load_status

log = logging.getLogger("grayops")
REPORT_SCAN_SECONDS = 60.0  # how often reports/ is scanned for rollouts another process finished

ALERTED_ERRORS = 5  # the root errors an invalid_revision alert carries (the log has every one)
LOOK_BACK = 100  # first-parent commits searched for the last good revision when a start finds HEAD refused


def judge_plugin_approvals(repo: GitRepo, fleet: Fleet, plugin: str) -> Judged:
    """The plugin's approvals split by the two-person rule, with what git says about each: who committed the
    version it approves, and who changed the approvals file since (README "The two-person rule")."""
    records = tuple(fleet.approvals.get(plugin, ()))
    evidence = {}
    for commit in dict.fromkeys(r.desired_commit for r in records):
        version = repo.change_of(commit)
        edits = tuple(repo.history(approvals_files(plugin), since=version.commit)) if version else ()
        evidence[commit] = ApprovalEvidence(version, edits)
    return judge_approvals(records, evidence, Directory.of(fleet.access), (repo.author_name, repo.author_email))


@dataclass
class _Results:
    """What the last tick's effects reported, for the next tick's observations."""

    checks: list[CheckResult] = field(default_factory=list)
    metrics: list[MetricResult] = field(default_factory=list)
    apply_errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TickReport:
    states: Mapping[str, RolloutState]
    transitions: int
    invalid: tuple[str, ...] = ()  # errors of a refused revision, when the one in force is an older one
    remote_error: str | None = None


class Reconciler:
    """The long-lived reconciler: owns the clone, the revision in force and the rollout states."""

    def __init__(
        self,
        repo: GitRepo,
        workdir: Path,
        builtin_policies: Mapping[str, str],
        clock: Clock | None = None,
        poll_interval: float | None = None,
        registry: Registry | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.repo = repo
        self.telemetry = telemetry or Telemetry()
        self.workdir = workdir
        self.builtins = builtin_policies
        self.clock = clock or SystemClock()
        self.poll_override = poll_interval
        self.registry = registry or default_registry()  # the adapters grayops.yaml may name
        self.fleet: Fleet | None = None  # in force: the last good revision, with brakes a refused one asks for
        self._good: Fleet | None = None  # the last good revision as it is
        self.runtime: Runtime | None = None
        self.states: dict[str, RolloutState] = {}
        self.wake = threading.Event()  # set by the remote watcher or a chat command: fetch now
        self._fleet_key: int | None = None
        self._refused_key: int | None = None
        self._refused: tuple[str, ...] = ()
        self._changes: tuple[str, dict[str, Change]] = ("", {})
        self._results: dict[str, _Results] = defaultdict(_Results)
        self._holds: dict[str, Hold] = {}
        self._next_fetch = 0.0
        self._remote_error: str | None = None  # why commits are not being pushed, while that lasts
        self._troubles: dict[str, str] = {}  # remote_unreachable / push_refused -> git's message: alerted once
        self._push_due = True  # a refused push is tried again after each fetch, not on every tick
        self._unpushed = 0  # commits not yet pushed, as of the last push: what a deleted clone loses
        self._selected_in: Fleet | None = None
        self._selected: dict[str, tuple[InstanceRef, ...]] = {}
        self._judged: dict[str, tuple[object, Judged]] = {}
        self._reports_seen: set[str] = set()
        self._next_report_scan = 0.0

    # --- start ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Clone (or reuse the clone) and rebuild the rollout states from status/ at HEAD.

        No status file can stop the start: one that cannot be read (not a regular file, not UTF-8, over the
        limits, with YAML anchors, or not a status at all) is logged and its plugin starts without it.
        """
        self.repo.ensure_clone()
        if self.repo.status_branch is None:  # else given on the command line
            self.repo.use_status_branch(status_branch(self.repo.read(SETTINGS_PATH)))
        self._count_reports()
        recorded = self.repo.status_files()
        for error in recorded.errors:
            log.error("%s; its plugin starts without its recorded state", error)
        for path, text in recorded.items():
            plugin = status_plugin(path)
            if plugin is None:
                continue  # not a status grayops writes (status/<plugin>.yaml)
            try:
                self.states[plugin] = load_status(text, path)
            except StatusUnreadable as err:  # whatever a hand-made one holds
                log.error("%s; %s starts without its recorded state", err, plugin)

    @property
    def poll_interval(self) -> float:
        if self.poll_override is not None:
            return self.poll_override
        return self.fleet.settings.git.poll_interval if self.fleet else 5.0

    # --- the tick ---------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        started = time.monotonic()
        report = self._tick()
        if started >= self._next_report_scan:
            self._count_reports()
        self.telemetry.tick(time.monotonic() - started, self.fleet is not None)
        return report

    def _count_reports(self) -> None:
        """Count the finished rollouts of reports/ not counted yet: all of them at start (so the success rate
        survives a restart), then what another replica or process wrote, once a minute (README "grayops' own
        metrics")."""
        self._next_report_scan = time.monotonic() + REPORT_SCAN_SECONDS
        try:
            new = [path for path in self.repo.report_paths() if path not in self._reports_seen]
            texts = {path: text for path in new if (text := self.repo.read(path)) is not None}
        except GitError as err:
            log.warning("cannot read reports/ for the success rate: %s", err)
            return
        self._reports_seen.update(new)
        self.telemetry.count_reports(texts)

    def _tick(self) -> TickReport:
        self._sync()
        fleet, runtime = self.fleet, self.runtime
        if fleet is None or runtime is None:
            return TickReport(dict(self.states), 0, self._refused, self._remote_error)
        now = self.clock.now()
        desired = self._desired(fleet)
        observed = self._observe(fleet, runtime, desired)
        versions = {name: d.version for name, d in desired.items()}
        decisions: dict[str, Decision] = {}
        for name in _dependencies_first(desired):  # so a waiting rollout sees where its dependencies stand now
            want = desired[name]
            results = self._results.pop(name, _Results())
            accepted, refused = self._approvals(fleet, name)
            situations = {dep: situation(decisions[dep].state if dep in decisions else self.states.get(dep),
                                         versions.get(dep)) for dep in want.depends_on}
            obs = Observations(
                instances=observed[name],
                checks=tuple(results.checks),
                metrics=tuple(results.metrics),
                approvals=accepted,
                blocked_clusters=blocked_clusters(want.depends_on, versions, observed, situations),
                apply_errors=results.apply_errors,
                hold=self._holds.pop(name, None),
                refused_approvals=refused,
                retries=fleet.retries.get(name, ()),
            )
            decisions[name] = decide(_noted(runtime, self.states.get(name)), want, obs, now)

        transitions = 0
        for name, decision in decisions.items():
            assert decision.state is not None
            self._record(fleet, desired[name], decision)
            self.states[name] = decision.state
            transitions += len(decision.transitions)
        for name, decision in decisions.items():
            self._act(fleet, runtime, desired[name], decision)
            self._notify(runtime, decision, now)
            self.telemetry.decision(decision, now)
        self._push()
        return TickReport(dict(self.states), transitions, self._refused, self._remote_error)

    def idle(self) -> bool:
        """Nothing is moving: every rollout settled (or waiting for dependencies that are), nothing waiting to be
        judged, nothing left to push."""
        if self.fleet is None:
            return True
        if not all(self._held(name) for name in self.fleet.plugins):
            return False
        if self._results:
            return False
        return self._remote_error is not None or self.repo.unpushed() == 0

    def _held(self, name: str, seen: frozenset[str] = frozenset()) -> bool:
        """Nothing moves for this plugin without a human or a clock: its rollout is settled, or it waits for
        dependencies (dependsOn) that are held themselves, e.g. one awaiting an approval."""
        assert self.fleet is not None
        state, plugin = self.states.get(name), self.fleet.plugins.get(name)
        if state is None or plugin is None:
            return False
        version = plugin.spec.version
        if state.target_version != version:
            return state.phase is Phase.ROLLED_BACK and version == state.from_version
        if state.phase.settled:
            return not (state.revert_pending and state.phase is Phase.ROLLED_BACK)  # the revert is not in force yet
        if state.waiting_for is None or name in seen:
            return False
        return all(self._held(dep, seen | {name}) for dep in plugin.spec.depends_on)

    def batch_totals(self) -> dict[str, int]:
        """How many batches each rollout has in all: the started ones plus the plan of the rest."""
        return {name: self.batch_total(state) for name, state in self.states.items()}

    def batch_total(self, state: RolloutState) -> int:
        """How many batches this rollout has in all: the started ones plus the plan of the rest."""
        fleet = self.fleet
        plugin = fleet.plugins.get(state.plugin) if fleet else None
        if fleet is None or plugin is None or plugin.spec.version != state.target_version:
            return len(state.batches)
        return batches_total(fleet, state, self._instances_of(fleet, state.plugin))

    # --- sync -------------------------------------------------------------------------------------------------

    def _sync(self) -> None:
        if self.repo.lost():
            self._reclone()
        due = time.monotonic() >= self._next_fetch
        if due or self.wake.is_set():
            self.wake.clear()
            self._next_fetch = time.monotonic() + self.poll_interval
            try:
                self.repo.fetch()
                self._remote_back()
                self._push_due = True
            except RemoteUnavailable as err:
                self._remote_down(str(err))
                self._push_due = False  # a push would wait for the same remote
            conflict = self.repo.integrate()
            if conflict is not None:
                self._conflict(conflict.files, conflict.saved_branch)
            self._rewritten(self.repo.take_rewrites())
        try:
            files = self.repo.desired_files()
            if files.key == self._fleet_key:
                self._refused_key, self._refused = None, ()  # back to the revision in force
                return
            if files.key == self._refused_key:
                return
            fleet = load_fleet(files, self.builtins, adapters=self.registry.models)
        except FleetInvalid as err:
            self._refuse(files.key, [str(e) for e in err.errors], files)
            return
        except Exception as err:  # reading a revision never ends the process: it is refused
            if self.repo.lost():  # the clone went away under us (rm -rf): cloned again next tick, no revision fault
                log.warning("the clone disappeared while reading the revision: %s", " ".join(str(err).split()))
                return
            reason = f"the revision could not be read: {' '.join(str(err).split())}"
            if self._refused != (reason,):
                log.exception("reading the revision at HEAD failed")
                self._refuse(None, [reason])
            return
        self._put_in_force(fleet, files.key)

    def _refuse(self, key: int | None, errors: Sequence[str], files: Mapping[str, str] | None = None) -> None:
        """Refuse HEAD's revision: log every error, alert with the root errors, keep the last good one in force.

        Nothing in force yet (a start over a refused HEAD): the newest first-parent ancestor that is valid is put
        in force, so a restart comes up as the process that was stopped, with the rollouts in force.
        """
        self._refused_key, self._refused = key, tuple(errors)
        history = self.repo.first_parents(LOOK_BACK if self.fleet is None else 1)
        head = history[0][:12] if history else "(none yet)"
        found = self._last_good(key, history[1:]) if self.fleet is None else None
        if found is not None:
            kept = f"the last good revision ({found[:12]}) is in force"
        else:
            kept = "the last good revision stays in force" if self.fleet else "nothing is in force yet"
        log.error("revision %s refused (%d error(s)); %s:\n  %s", head, len(errors), kept, "\n  ".join(errors))
        shown = "; ".join(errors[:ALERTED_ERRORS]) + (
            f"; and {len(errors) - ALERTED_ERRORS} more" if len(errors) > ALERTED_ERRORS else "")
        self._alert_all("invalid_revision", Severity.CRITICAL,
                        f"revision {head} refused, {kept}: {len(errors)} error(s): {shown}")
        if files is not None:
            self._take_brakes(files, head)

    def _last_good(self, refused: int | None, ancestors: Sequence[str]) -> str | None:
        """Put in force the newest valid revision among `ancestors` (newest first); its commit, or None."""
        tried = {refused}
        for commit in ancestors:
            files = self.repo.desired_files(commit)
            if files.key in tried:
                continue  # e.g. grayops' own status commits over the refused revision
            tried.add(files.key)
            try:
                fleet = load_fleet(files, self.builtins, adapters=self.registry.models)
            except FleetInvalid:
                continue
            self._put_in_force(fleet, files.key, commit)
            return commit
        return None

    def _put_in_force(self, fleet: Fleet, key: int, commit: str | None = None) -> None:
        wanted = fleet.settings.status.branch
        if self.fleet is not None and wanted and wanted != self.repo.status_branch:
            log.warning("status.branch changed to %s: restart grayops to move the record there", wanted)
        if self.fleet is None or fleet.settings != self.fleet.settings or self.runtime is None:
            if self.runtime is not None:
                self.runtime.close()
            self.runtime = self.registry.build_runtime(fleet.settings, self.workdir, self.clock)
        if commit is None:
            self._refused_key, self._refused = None, ()
        self.fleet, self._fleet_key, self._good = fleet, key, fleet
        log.info("revision %s in force: %d plugin(s), %d cluster(s)", (commit or self.repo.head())[:12],
                 len(fleet.plugins), len(fleet.settings.clusters))

    def _take_brakes(self, files: Mapping[str, str], head: str) -> None:
        """At a refused revision, obey the pauses and rollbacks its own plugin files ask for (README "Pause and
        rollback at an invalid HEAD"); the last good revision stays in force for everything else."""
        if self._good is None:
            return
        self.fleet, taken = with_brakes(self._good, files, self.states)
        for brake in taken:
            log.warning("revision %s is refused, but %s: obeyed", head, brake)

    def _conflict(self, files: tuple[str, ...], saved: str) -> None:
        reason = f"git conflict with a concurrent change to {', '.join(files)}; local commits kept on {saved}"
        log.error(reason)
        if not self._hold([p for p in files if p.startswith("plugins/")], Hold(reason, "git_conflict")):
            self._alert_all("git_conflict", Severity.CRITICAL, reason)

    def _hold(self, paths: Sequence[str], hold: Hold) -> bool:
        """Pause the rollouts of the plugins these paths belong to, at the next decision (the engine records it and
        alerts, once per rollout); False when no path belongs to a plugin."""
        held = False
        for path in paths:
            plugin = owner(path)
            if plugin is not None:
                self._holds[plugin] = hold
                held = True
        return held

    def _rewritten(self, rewrites: Sequence[Rewrite]) -> None:
        """A human rewrote the remote's history (a force-push): follow it, never push it back. Our commits are on
        a branch; the record of what really happened is written again; the rollouts it touched pause."""
        for rewrite in rewrites:
            reason = (f"the remote's history of {rewrite.branch} was rewritten (force-push): grayops follows it; "
                      f"{rewrite.dropped} commit(s) it no longer has are kept on {rewrite.saved_branch}")
            log.error(reason)
            self._record_again()
            if not self._hold(rewrite.files, Hold(reason, "history_rewritten")):  # else each held rollout alerts
                self._alert_all("history_rewritten", Severity.CRITICAL, reason)

    def _record_again(self) -> None:
        """Commit each rollout's status where the rewritten history lost it: status/ says what happened."""
        recorded = self.repo.status_files()
        for name, state in sorted(self.states.items()):
            text = dump_status(state)
            if recorded.get(status_path(name)) != text:
                self.repo.commit({status_path(name): text}, f"{name} {state.target_version}: status recorded again "
                                 "after the remote's history was rewritten",
                                 [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", "record"),
                                  ("Requested-By", ENGINE), ("Desired-Commit", state.desired_commit)], status=True)

    def _reclone(self) -> None:
        """The clone was deleted under us (rm -rf of the workdir): clone again and resume from status/ at the
        remote's HEAD, as after a restart. Commits not yet pushed are gone."""
        lost = self._unpushed
        log.error("the clone in %s is gone; cloning %s again (%d commit(s) not yet pushed are lost)",
                  self.repo.workdir, self.repo.remote, lost)
        try:
            self.states = {}
            self._results.clear()
            self._holds.clear()
            self.start()
        except RemoteUnavailable as err:
            self._remote_down(str(err))
            raise
        self._unpushed = 0
        self._alert_all("clone_lost", Severity.CRITICAL,
                        f"the clone in {self.repo.workdir} was deleted; cloned again, {lost} commit(s) not yet pushed "
                        "are lost; the rollouts resume from status/ at the remote's HEAD")

    # --- desired state and observation ------------------------------------------------------------------------

    def _desired(self, fleet: Fleet) -> dict[str, Desired]:
        head = self.repo.head()
        if self._changes[0] != head:
            paths = [fleet.plugin_paths[name] for name in fleet.plugins]
            self._changes = (head, self.repo.last_changes(paths))
        changes = self._changes[1]
        desired = {}
        for name, plugin in fleet.plugins.items():
            spec = plugin.spec
            change = changes.get(fleet.plugin_paths[name]) or Change(head)
            desired[name] = Desired(
                plugin=name,
                version=spec.version,
                paused=spec.paused,
                policy_name=spec.policy,
                policy=fleet.policies[spec.policy],
                instances=self._instances_of(fleet, name),
                desired_commit=change.commit,
                change=change,
                depends_on=tuple(spec.depends_on),
            )
        return desired

    def _approvals(self, fleet: Fleet, name: str) -> Judged:
        """The plugin's approvals split by the two-person rule (README "The two-person rule"): git says who
        committed each approved version and who wrote each approval. Judged again only when they change."""
        records = tuple(fleet.approvals.get(name, ()))
        if not records:
            return (), ()
        key = (records, fleet.access, tuple(self.repo.read(p) for p in approvals_files(name)))
        cached = self._judged.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        judged = judge_plugin_approvals(self.repo, fleet, name)
        for refused in judged[1]:
            log.warning("approvals/%s.yaml: the approval of batch %s by %s is refused: %s", name,
                        refused.record.batch, refused.record.by, refused.reason)
        self._judged[name] = (key, judged)
        return judged

    def _instances_of(self, fleet: Fleet, name: str) -> tuple[InstanceRef, ...]:
        """The plugin's instances in the revision in force, selected once per revision (a hot path at scale)."""
        if self._selected_in is not fleet:  # a new revision: forget the old one's selections
            self._selected_in, self._selected = fleet, {}
        found = self._selected.get(name)
        if found is None:
            found = self._selected[name] = tuple(select_instances(fleet.plugins[name].spec, fleet.settings.clusters))
        return found

    def _observe(self, fleet: Fleet, runtime: Runtime, desired: Mapping[str, Desired]
                 ) -> dict[str, Mapping[str, InstanceObservation]]:
        observed: dict[str, Mapping[str, InstanceObservation]] = {}
        for name, want in desired.items():
            merged: dict[str, InstanceObservation] = {}
            for kind, refs in _by_driver(runtime, want.instances).items():
                merged.update(runtime.drivers[kind].observe(fleet.plugins[name], refs))
            observed[name] = merged
        return observed

    # --- record, act, notify ----------------------------------------------------------------------------------

    def _record(self, fleet: Fleet, want: Desired, decision: Decision) -> None:
        """Commit each transition (status as it stood right after it; the report with the last one) and the
        changes owed to the plugin's file."""
        state = decision.state
        assert state is not None
        path = status_path(state.plugin)
        for index, transition in enumerate(decision.transitions):
            last = index == len(decision.transitions) - 1
            snapshot = state if last or transition.state is None else transition.state
            files: dict[str, str | None] = {path: dump_status(snapshot)}
            if last and any(isinstance(e, WriteReport) for e in decision.effects):
                labels = {ref.id: dict(ref.labels) for ref in want.instances}
                approvals = {a.batch: a.by for a in self._approvals(fleet, state.plugin)[0]
                             if a.version == state.target_version}
                files[report_path(state)] = render_report(state, labels, approvals)
            message = f"{state.plugin} {state.target_version}: {transition.reason}"
            self.repo.commit(files, message, _trailers(snapshot, want, transition), status=True)
        for effect in decision.effects:
            if isinstance(effect, CommitSpec):
                self._commit_spec(fleet, state, effect)

    def _commit_spec(self, fleet: Fleet, state: RolloutState, effect: CommitSpec) -> None:
        path = fleet.plugin_paths[effect.plugin]
        text = self.repo.read(path)
        if text is None:
            return
        try:
            changed = yamledit.set_field(text, ("spec", effect.field), effect.value)
        except ValueError as err:
            log.error("cannot record %s in %s: %s", effect.action, path, err)
            return
        trailers = [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", effect.action),
                    ("Requested-By", ENGINE), ("Desired-Commit", state.desired_commit),
                    ("Grayops-Reason", effect.reason)]
        self.repo.commit({path: changed}, f"{effect.plugin}: {effect.reason}", trailers)

    def _act(self, fleet: Fleet, runtime: Runtime, want: Desired, decision: Decision) -> None:
        plugin = fleet.plugins[want.plugin]
        refs = {ref.id: ref for ref in want.instances}
        results = _Results()
        changes: dict[str, list[SetVersion]] = defaultdict(list)
        for effect in decision.effects:
            if isinstance(effect, SetVersion) and effect.instance in refs:
                changes[runtime.cluster_driver[refs[effect.instance].cluster]].append(effect)
        for kind, batch in changes.items():
            results.apply_errors.update(runtime.drivers[kind].apply(plugin, batch))
        for effect in decision.effects:
            if isinstance(effect, RunChecks) and effect.instance in refs:
                ref = refs[effect.instance]
                driver = runtime.drivers[runtime.cluster_driver[ref.cluster]]
                results.checks.append(driver.check(plugin, ref, effect.stage, effect.version, effect.checks))
            elif isinstance(effect, QueryMetrics):
                batch_refs = [refs[i] for i in effect.instances if i in refs]
                baseline_refs = [refs[i] for i in effect.baseline if i in refs]
                for metric in effect.metrics:
                    window = metric.interval or effect.window_seconds  # a metric read less often looks further
                    measured = runtime.metrics.measure(plugin, effect.version, metric, batch_refs, window)
                    if metric.max_increase is not None and effect.baseline_version and measured.value is not None:
                        measured = _with_baseline(runtime, plugin, metric, measured, baseline_refs,
                                                  effect.baseline_version, window)
                    if measured.error is not None:
                        self.telemetry.query_error(want.plugin, metric.name)
                    results.metrics.append(MetricResult(effect.rollout_id, effect.batch, metric.name, measured))
        if results.checks or results.metrics or results.apply_errors:
            self._results[want.plugin] = results

    def _notify(self, runtime: Runtime, decision: Decision, now: datetime) -> None:
        state = decision.state
        assert state is not None
        if runtime.watchers and (decision.transitions or any(isinstance(e, Alert) for e in decision.effects)):
            total = self.batch_total(state)  # this rollout's only: a tick may notify for every plugin
            for watcher in runtime.watchers:
                watcher.observe(state, total)
        for transition in decision.transitions:
            runtime.notifier.notify(Event(state.plugin, state.rollout_id, state.target_version, "transition",
                                          Severity.INFO, transition.reason, transition.phase, now, transition.batch))
        for effect in decision.effects:
            if isinstance(effect, Alert):
                runtime.notifier.notify(Event(state.plugin, state.rollout_id, state.target_version, effect.kind,
                                              effect.severity, effect.message, state.phase, now,
                                              state.batches[-1].name if state.batches else None))

    def _alert_all(self, kind: str, severity: Severity, message: str) -> None:
        if self.runtime is None:
            return
        now = self.clock.now()
        self.telemetry.alert("*", kind)
        self.runtime.notifier.notify(Event("*", "", "", kind, severity, message, Phase.PENDING, now))

    def _push(self) -> None:
        """Push what was committed. While the remote is unreachable or refuses our pushes, try again only after a
        fetch succeeds (each poll), not on every tick."""
        self._unpushed = self.repo.unpushed()
        if self._unpushed == 0:
            self._remote_back("push_refused", "nothing left to push")
            return
        if not self._push_due:
            return
        result = self.repo.push()
        self._unpushed = result.pending
        self._push_due = result.pending == 0  # else wait for the next fetch
        if result.conflict is not None or result.error:
            self.telemetry.push_failed()
        if result.conflict is not None:
            self._conflict(result.conflict.files, result.conflict.saved_branch)
        elif result.error and result.pending and result.failure in ("refused", "unreachable"):
            self._remote_down(result.error, "push_refused" if result.failure == "refused" else "remote_unreachable")
        elif result.error and result.pending:
            log.warning("%d commit(s) not pushed yet, tried again after the next fetch: %s", result.pending,
                        result.error)
        else:
            self._remote_back("push_refused", "accepted again")
            self._remote_back("remote_unreachable")
        self._rewritten(self.repo.take_rewrites())  # a retried push may have found the remote rewritten

    def _remote_down(self, error: str, cause: str = "remote_unreachable") -> None:
        """Alert once per cause (the remote unreachable, or refusing our pushes) until it clears: a remote that
        stays down, or a hook that declines every push, is one alert, not one per fetch."""
        if cause not in self._troubles:
            pending = self.repo.unpushed()
            if cause == "push_refused":
                message = (f"git push refused by the remote, {pending} commit(s) kept in the clone and tried again "
                           f"after each fetch until it takes them: {error}")
                log.error(message)
                self._alert_all(cause, Severity.CRITICAL, message)
            else:
                log.warning("git remote unreachable; working on the local clone (%d commit(s) to push): %s", pending,
                            error)
                self._alert_all(cause, Severity.WARNING,
                                f"git remote unreachable, {pending} commit(s) kept locally until it is back: {error}")
        self._troubles[cause] = error
        self._remote_error = next(iter(self._troubles.values()))

    def _remote_back(self, cause: str = "remote_unreachable", how: str = "") -> None:
        """The cause cleared: one log line says so (the next one alerts again)."""
        if self._troubles.pop(cause, None) is not None:
            if cause == "push_refused":
                log.info("git push no longer refused: %s", how)
            else:
                log.info("git remote reachable again; pushing %d commit(s)", self.repo.unpushed())
        self._remote_error = next(iter(self._troubles.values()), None)


def _dependencies_first(desired: Mapping[str, Desired]) -> list[str]:
    """Plugin names with each one's dependencies (dependsOn) before it; cycles are refused by validation."""
    ordered: dict[str, None] = {}

    def visit(name: str, path: frozenset[str]) -> None:
        if name in ordered or name in path or name not in desired:
            return
        for dep in desired[name].depends_on:
            visit(dep, path | {name})
        ordered[name] = None

    for name in desired:
        visit(name, frozenset())
    return list(ordered)


def _noted(runtime: Runtime, state: RolloutState | None) -> RolloutState | None:
    """The state with the notes its watchers keep (e.g. the Slack message's ts), carried into the next commit."""
    if state is None or not runtime.watchers:
        return state
    notes = dict(state.notes)
    for watcher in runtime.watchers:
        notes.update(watcher.notes(state))
    return state if notes == state.notes else replace(state, notes=notes)


def _with_baseline(runtime: Runtime, plugin: Plugin, metric: MetricSpec, measured: Measurement,
                   baseline: list[InstanceRef], version: str, window: float) -> Measurement:
    """The same query over the instances still on the old version, for the metric's maxIncrease."""
    if not baseline:
        return measured  # none left to compare with: the absolute thresholds decide alone
    base = runtime.metrics.measure(plugin, version, metric, baseline, window)
    if base.error is not None:
        return replace(measured, baseline_missing=f"baseline query failed: {base.error}")
    if base.value is None:
        return replace(measured, baseline_missing=f"no data for the baseline ({len(baseline)} instance(s) on "
                                                  f"{version})")
    return replace(measured, baseline=base.value)


def _by_driver(runtime: Runtime, refs: tuple[InstanceRef, ...]) -> dict[str, list[InstanceRef]]:
    groups: dict[str, list[InstanceRef]] = defaultdict(list)
    for ref in refs:
        groups[runtime.cluster_driver[ref.cluster]].append(ref)
    return groups


def _trailers(state: RolloutState, want: Desired, last: Transition) -> list[tuple[str, str]]:
    if last.action == "pause":
        by = state.paused_by or ENGINE
    elif last.action == "resume":
        by = want.change.by or ENGINE
    elif last.action in ("rollback", "rolled-back"):
        by = state.rollback_by or ENGINE
    else:
        by = state.requested_by or ENGINE
    trailers = [("Grayops-Rollout", state.rollout_id), ("Grayops-Action", last.action)]
    if last.batch:
        trailers.append(("Grayops-Batch", last.batch))
    trailers.append(("Requested-By", by))
    approved = next((b.approved_by for b in state.batches if b.name == last.batch and b.approved_by), None)
    if approved:
        trailers.append(("Approved-By", approved))
    trailers.append(("Desired-Commit", state.desired_commit))
    return trailers

