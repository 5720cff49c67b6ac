"""The reconciler: the parts of the shell, wired, and the tick that runs them in order.

One tick: sync the revision in force -> the desired state -> observe the clusters -> decide (the pure engine,
dependencies first) -> record (commit) -> act -> notify -> push. Observing, deciding and recording go plugin by
plugin within the tick's time budget (`pacing`): a fleet too large for one tick is gone through over several. Each
plugin's transitions are committed before its effects run, so a reconciler killed at any moment restarts from a
status that never claims more than happened, and asks again (idempotently) for what it had asked. A plugin whose
handling raises is held and the others go on (`isolation`).
"""

from __future__ import annotations

import gc
import logging
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Protocol

from reconciler.adapters.gitrepo import GitError, GitRepo, RemoteUnavailable
from reconciler.adapters.ports import Clock, StrategyDriver, SystemClock
from reconciler.adapters.registry import Registry, Runtime, default_registry
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.effects import UNREACHABLE, Desired, InstanceObservation, Observations
from reconciler.core.engine import Decision, blocked_clusters, decide, situation
from reconciler.core.fleet import Fleet
from reconciler.core.model import Phase, RolloutState, Severity
from reconciler.core.plan import InstanceRef
from reconciler.core.strategy import StrategyObservation
from reconciler.shell.alerts import FleetAlerts, Holds
from reconciler.shell.artifacts import ArtifactGate
from reconciler.shell.desired import DesiredState
from reconciler.shell.divergence import Divergence
from reconciler.shell.effects import EffectRunner, noted, notify
from reconciler.shell.escalation import Escalation
from reconciler.shell.isolation import Isolation
from reconciler.shell.pacing import Pacing
from reconciler.shell.recorder import Recorder
from reconciler.shell.remote import RemoteHealth
from reconciler.shell.revisions import RevisionSource
from reconciler.shell.trust import SupplyChain

log = logging.getLogger("grayops")

# A large fleet keeps hundreds of thousands of objects alive (its clusters, plans and states); with Python's
# default thresholds (700, 10, 10) the collector walks all of them many times a tick: planning 100,000 instances
# took twice as long as with no collector. Collecting young objects every 50,000 allocations, and everything after
# 20 of those, keeps most of that away (README "Sizing"); what a collection frees is the same.
GC_THRESHOLDS = (50_000, 20, 20)
REPORT_SCAN_SECONDS = 60.0  # how often reports/ is scanned for rollouts another process finished

Observed = dict[str, Mapping[str, InstanceObservation]]


class Scope(Protocol):
    """The shards this replica holds (README "Sharding"): a tick acts only for the plugins of those shards."""

    def snapshot(self) -> frozenset[int]:
        """The shards held now."""
        ...

    def shard_of(self, plugin: str) -> int: ...

    def holds(self, shard: int) -> bool:
        """Still held right now: the fence checked before each commit."""
        ...


@dataclass(frozen=True)
class TickReport:
    states: Mapping[str, RolloutState]
    transitions: int
    invalid: tuple[str, ...] = ()  # errors of a refused revision, when the one in force is an older one
    remote_error: str | None = None


class Reconciler:
    """The long-lived reconciler: owns the clone, the revision in force and the rollout states."""

    def __init__(self, repo: GitRepo, workdir: Path, builtin_policies: Mapping[str, str], clock: Clock | None = None,
                 poll_interval: float | None = None, registry: Registry | None = None,
                 telemetry: Telemetry | None = None, supply: SupplyChain | None = None,
                 scope: Scope | None = None) -> None:
        self.repo = repo
        self.scope = scope  # None: every plugin is this process's
        self.clock = clock or SystemClock()
        self.telemetry = telemetry or Telemetry()
        self.registry = registry or default_registry()  # the adapters grayops.yaml may name
        self.states: dict[str, RolloutState] = {}
        self.holds = Holds()
        self.alerts = FleetAlerts(lambda: self.runtime.notifier if self.runtime else None, self.telemetry, self.clock)
        self.recorder = Recorder(repo)
        divergence = Divergence(repo, self.holds, self.alerts, self.recorder, self.states)
        self.remote = RemoteHealth(repo, self.alerts, self.telemetry, divergence)
        self.revisions = RevisionSource(repo, builtin_policies, self.registry, workdir, self.clock, self.alerts,
                                        self.remote, divergence, self.states, poll_interval, supply)
        self.desired = DesiredState(repo)
        self.artifacts = ArtifactGate(supply)
        self.runner = EffectRunner(self.telemetry)
        self.isolation = Isolation(self.holds, self.alerts)
        self.escalation = Escalation()  # README "Owners and escalation"
        self.pacing = Pacing()  # how much of the fleet one tick goes through (README "Sizing")
        self.wake = self.revisions.wake  # set by the remote watcher or a chat command: fetch now
        self.strategies: dict[str, dict[str, StrategyObservation]] = {}  # plugin -> where each instance stands
        self._next_report_scan = 0.0
        self._held: frozenset[int] = frozenset()  # the shards acted for in the last tick
        self._followed = ""  # the HEAD whose status/ the other shards' states were last read from
        self._push_deferred = False  # the last tick left its push to this one (woken meanwhile)

    @property
    def fleet(self) -> Fleet | None:
        """The revision in force (the last good one, with the brakes a refused one asks for)."""
        return self.revisions.fleet

    @property
    def runtime(self) -> Runtime | None:
        return self.revisions.runtime

    def start(self) -> None:
        """Clone (or reuse the clone) and rebuild the rollout states from status/ at HEAD."""
        gc.set_threshold(*GC_THRESHOLDS)
        self.revisions.open()
        self._count_reports()
        self.states.update(self.recorder.states())
        self.escalation.restore(self.states)  # README "Owners and escalation": open alerts survive a restart

    # --- the tick ---------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """sync -> desired -> observe -> decide -> record -> act -> notify -> push (see the module's docstring)."""
        started = time.monotonic()
        held = self._take_scope()
        self._sync()
        fleet, runtime, moved = self.revisions.fleet, self.revisions.runtime, 0
        if fleet is not None and runtime is not None:
            now = self.clock.now()
            desired = self.desired.of(fleet, self.revisions.signer, self._in_scope(fleet, held))
            recorded = self._turn(fleet, runtime, desired, now)
            acted = self._act(fleet, runtime, desired, recorded)
            self._notify(fleet, runtime, acted, now)
            moved = sum(len(decision.transitions) for decision in recorded.values())
            self._push_unless_woken(obeyed=any(name in self.pacing.changed for name in recorded))
        self._count_reports(when_due=True)
        self.telemetry.tick(time.monotonic() - started, fleet is not None)
        return TickReport(dict(self.states), moved, self.revisions.refused, self.remote.error)

    def _push_unless_woken(self, obeyed: bool) -> None:
        """Push, unless woken during this tick (a push webhook, a command) when the last tick pushed: the next
        tick, which starts at once, fetches first and pushes both ticks' commits, so a push webhook's change is
        not kept waiting on our push (README "HTTP API"). Never twice in a row: wakes cannot hold commits back.
        Never when this tick recorded what a human's change asked (`obeyed`): a pause is on the remote at the end
        of the tick that obeyed it (README "Sizing"), whatever woke us meanwhile; nor when the remote holds nothing
        new (the remote watcher sees our own pushes too)."""
        if self.wake.is_set() and not self._push_deferred and not obeyed and self.repo.remote_moved():
            self._push_deferred = True
            return
        self._push_deferred = False
        self.remote.push()

    def _sync(self) -> None:
        if self.repo.lost():
            self._clone_again()
        self.revisions.sync()

    def _turn(self, fleet: Fleet, runtime: Runtime, desired: Mapping[str, Desired], now: datetime
              ) -> dict[str, Decision]:
        """Observe, decide and record one plugin after the other, in the pacing's order, until the tick's budget is
        spent (README "Sizing"); the decisions recorded."""
        observed: Observed = {}
        looked: set[str] = set()  # observed this tick, or tried (a failure is held once, not once per dependent)
        decisions: dict[str, Decision] = {}
        recorded: dict[str, Decision] = {}
        for name in self.pacing.turn(self.pacing.order(desired, dependencies_first)):
            unseen = [dep for dep in (*desired[name].depends_on, name) if dep in desired and dep not in looked]
            looked.update(unseen)
            observed.update(self._observe(fleet, runtime, desired, unseen))  # its dependencies' readiness too
            decided = self._decide(fleet, runtime, desired, observed, now, [name], decisions)
            recorded.update(self._record(fleet, desired, decided))
        return recorded

    def _observe(self, fleet: Fleet, runtime: Runtime, desired: Mapping[str, Desired], names: list[str]
                 ) -> Observed:
        """What each instance of these plugins runs, from the driver of its cluster."""
        def one(name: str) -> Mapping[str, InstanceObservation]:
            seen: dict[str, InstanceObservation] = {}
            strategy: dict[str, StrategyObservation] = {}
            for kind, refs in _by_driver(runtime, desired[name].instances).items():
                driver = runtime.drivers[kind]
                seen.update(driver.observe(fleet.plugins[name], refs))
                if _stepped(desired[name]) and isinstance(driver, StrategyDriver):  # README "Strategies"
                    strategy.update(driver.observe_strategy(fleet.plugins[name], refs))
            self.strategies[name] = strategy
            return seen

        return self.isolation.each(names, "observing", one)

    def _decide(self, fleet: Fleet, runtime: Runtime, desired: Mapping[str, Desired], observed: Observed,
                now: datetime, names: list[str], decisions: dict[str, Decision]) -> dict[str, Decision]:
        """The engine's decision for each of these plugins that was observed. `decisions`: those of this tick so
        far, dependencies first, so a waiting rollout sees where they stand now (one that could not be observed
        counts as not ready)."""
        def one(name: str) -> Decision:
            want, results = desired[name], self.runner.take(name)
            accepted, refused = self.desired.approvals(fleet, name)
            versions = {dep: desired[dep].version for dep in want.depends_on if dep in desired}
            ready = {dep: observed.get(dep) or dict.fromkeys((ref.id for ref in desired[dep].instances), UNREACHABLE)
                     for dep in versions}
            situations = {dep: situation(decisions[dep].state if dep in decisions else self.states.get(dep),
                                         versions.get(dep)) for dep in want.depends_on}
            obs = Observations(instances=observed[name], checks=tuple(results.checks), metrics=tuple(results.metrics),
                               approvals=accepted, apply_errors=results.apply_errors, hold=self.holds.take(name),
                               blocked_clusters=blocked_clusters(want.depends_on, versions, ready, situations),
                               refused_approvals=refused, retries=fleet.retries.get(name, ()),
                               artifact=self.artifacts.observe(fleet, want, self.states.get(name), now),
                               strategy=self.strategies.get(name, {}), operations=tuple(results.operations),
                               smokes=tuple(results.smokes), cleanups=tuple(results.cleanups))
            decisions[name] = decide(noted(runtime, self.states.get(name)), want, obs, now)
            return decisions[name]

        return self.isolation.each([name for name in names if name in observed and self._acts_for(name)],
                                   "deciding", one)

    def _record(self, fleet: Fleet, desired: Mapping[str, Desired], decisions: Mapping[str, Decision]
                ) -> dict[str, Decision]:
        """Commit each decision (before any of its effects runs), then take its state as the rollout's."""
        def one(name: str) -> Decision | None:
            decision = decisions[name]
            if self.scope is not None and not self.scope.holds(self.scope.shard_of(name)):
                log.warning("%s: its shard's lease is lost; not recorded, its new holder takes over", name)
                return None  # the fence (README "Sharding"): nothing is committed for a shard no longer held
            self.recorder.record(decision, desired[name], fleet.plugin_paths[name],
                                 self.desired.approved(fleet, decision.state))
            self.states[name] = decision.state
            return decision

        recorded = self.isolation.each(decisions, "recording", one)
        return {name: decision for name, decision in recorded.items() if decision is not None}

    def _act(self, fleet: Fleet, runtime: Runtime, desired: Mapping[str, Desired],
             recorded: Mapping[str, Decision]) -> dict[str, Decision]:
        def one(name: str) -> Decision:
            self.runner.act(runtime, fleet.plugins[name], desired[name], recorded[name])
            return recorded[name]

        return self.isolation.each(recorded, "acting", one)

    def _notify(self, fleet: Fleet, runtime: Runtime, acted: Mapping[str, Decision], now: datetime) -> None:
        routed = replace(runtime, notifier=self.escalation.notifier(fleet, runtime))  # owners, escalation

        def one(name: str) -> None:
            decision = acted[name]
            notify(routed, decision, lambda: self.desired.batches_total(fleet, decision.state), now)
            self.telemetry.decision(decision, now)

        self.isolation.went_through(self.isolation.each(acted, "notifying", one))
        self.escalation.check(fleet, runtime, now)
        self._keep_open_alerts()

    def _keep_open_alerts(self) -> None:
        """Each rollout's open alerts into its status when they changed, so a restart goes on escalating them."""
        for name, state in list(self.states.items()):
            alerts = self.escalation.records(state)
            if alerts != state.open_alerts:
                kept = replace(state, open_alerts=alerts)
                self.recorder.record_alerts(kept)
                self.states[name] = kept

    # --- sharding (README "Sharding") ---------------------------------------------------------------------------

    def _take_scope(self) -> frozenset[int] | None:
        """The shards this tick acts for, taken once; a shard taken since the last tick is fetched for first, so
        its plugins go on from what their last holder pushed."""
        if self.scope is None:
            return None
        held = self.scope.snapshot()
        if held - self._held:
            self.wake.set()  # fetch now
        return held

    def _in_scope(self, fleet: Fleet, held: frozenset[int] | None) -> set[str] | None:
        """The plugins of the shards held, with the plugins they depend on (observed, not decided for); None:
        all of them. The others' states follow status/ as their holders push it."""
        if self.scope is None or held is None:
            return None
        taken = held - self._held
        self._held = held
        acting = {name for name in fleet.plugins if self.scope.shard_of(name) in held}
        head = self.repo.head()
        if taken or head != self._followed:
            self._followed = head
            recorded = self.recorder.states()
            for name in fleet.plugins:
                if name in acting and self.scope.shard_of(name) not in taken:
                    continue  # ours all along: the state in memory is the newest
                if name in recorded:
                    self.states[name] = recorded[name]
                else:
                    self.states.pop(name, None)
        return acting | {dep for name in acting for dep in fleet.plugins[name].spec.depends_on}

    def _acts_for(self, name: str) -> bool:
        return self.scope is None or self.scope.shard_of(name) in self._held

    # --- starting over, reports, and what the CLI asks ----------------------------------------------------------

    def _clone_again(self) -> None:
        """The clone was deleted under us (rm -rf of the workdir): clone again and resume from status/ at the
        remote's HEAD, as after a restart. Commits not yet pushed are gone."""
        lost = self.remote.unpushed
        log.error("the clone in %s is gone; cloning %s again (%d commit(s) not yet pushed are lost)",
                  self.repo.workdir, self.repo.remote, lost)
        try:
            self.states.clear()
            self.runner.forget()
            self.holds.clear()
            self.start()
        except RemoteUnavailable as err:
            self.remote.down(str(err))
            raise
        self.remote.unpushed = 0
        self.alerts.alert("clone_lost", Severity.CRITICAL,
                          f"the clone in {self.repo.workdir} was deleted; cloned again, {lost} commit(s) not yet "
                          "pushed are lost; the rollouts resume from status/ at the remote's HEAD")

    def _count_reports(self, when_due: bool = False) -> None:
        """Count the finished rollouts of reports/ not counted yet: all of them at start (so the success rate
        survives a restart), then what another replica or process wrote, once a minute (README "grayops' own
        metrics")."""
        if when_due and time.monotonic() < self._next_report_scan:
            return
        self._next_report_scan = time.monotonic() + REPORT_SCAN_SECONDS
        try:
            self.telemetry.count_reports(self.recorder.new_reports())
        except GitError as err:
            log.warning("cannot read reports/ for the success rate: %s", err)

    @property
    def poll_interval(self) -> float:
        return self.revisions.poll_interval

    def idle(self) -> bool:
        """Nothing is moving: every rollout settled (or waiting for dependencies that are), nothing waiting to be
        judged, nothing left to push."""
        fleet = self.revisions.fleet
        if fleet is None:
            return True
        if not all(_held(fleet, self.states, name) for name in fleet.plugins):
            return False
        if self.runner.pending or self.artifacts.pending:  # an answer on its way may still move a rollout
            return False
        return self.remote.error is not None or self.repo.unpushed() == 0

    def batch_totals(self) -> dict[str, int]:
        """How many batches each rollout has in all: the started ones plus the plan of the rest."""
        return {name: self.desired.batches_total(self.revisions.fleet, state) for name, state in self.states.items()}


def dependencies_first(desired: Mapping[str, Desired]) -> list[str]:
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


def _held(fleet: Fleet, states: Mapping[str, RolloutState], name: str, seen: frozenset[str] = frozenset()) -> bool:
    """Nothing moves for this plugin without a human or a clock: its rollout is settled, or it waits for
    dependencies (dependsOn) that are held themselves, e.g. one awaiting an approval."""
    state, plugin = states.get(name), fleet.plugins.get(name)
    if state is None or plugin is None:
        return False
    version = plugin.spec.version
    if state.target_version != version:
        return state.phase is Phase.ROLLED_BACK and version == state.from_version and not state.cleanup_pending
    if state.phase.settled:  # unless the revert is not in force yet, or cleanup is still to do
        return not (state.revert_pending and state.phase is Phase.ROLLED_BACK) and not state.cleanup_pending
    if state.waiting_for is None or name in seen:
        return False
    return all(_held(fleet, states, dep, seen | {name}) for dep in plugin.spec.depends_on)


def _by_driver(runtime: Runtime, refs: tuple[InstanceRef, ...]) -> Mapping[str, Sequence[InstanceRef]]:
    if len(runtime.drivers) == 1:  # one driver for every cluster, as most fleets have: no look-up per instance
        return {kind: refs for kind in runtime.drivers}
    groups: dict[str, list[InstanceRef]] = defaultdict(list)
    for ref in refs:
        groups[runtime.cluster_driver[ref.cluster]].append(ref)
    return groups


def _stepped(want: Desired) -> bool:
    """The engine needs the strategy observations: blue-green, a traffic canary, or partition steps."""
    return want.strategy != "inPlace" or bool(want.policy.partition_steps)
