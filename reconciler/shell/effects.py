"""The effect runner: what a decision asks of the world, carried out after it is recorded.

`Routed.of` sorts a decision's effects by who carries them out, in one `match` (a new effect type fails the type
check until it is given a place): the recorder commits `CommitSpec` and `WriteReport`; `act` starts `SetVersion`
on each cluster's driver, runs `RunChecks` and `QueryMetrics`; `notify` tells the notifiers of each transition
and `Alert`. What the drivers, checks and metrics report comes back at the plugin's next decision (`take`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import assert_never

from reconciler.adapters.ports import StrategyDriver
from reconciler.adapters.registry import Runtime
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.effects import (
    Alert,
    CheckResult,
    CommitSpec,
    Desired,
    Effect,
    Event,
    MetricResult,
    QueryMetrics,
    RunChecks,
    SetVersion,
    WriteReport,
)
from reconciler.core.engine import Decision
from reconciler.core.model import Measurement, RolloutState, Severity
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import JobCheck, MetricSpec, Plugin
from reconciler.core.strategy import (
    Adopt,
    Cleanup,
    CleanupResult,
    Knobs,
    Operation,
    OperationResult,
    RestoreKnobs,
    RunSmoke,
    Scale,
    SetPartition,
    SetWeight,
    SmokeResult,
    Stage,
    Switch,
)


@dataclass
class Routed:
    """A decision's effects by who carries them out."""

    changes: list[SetVersion] = field(default_factory=list)  # act: the drivers
    checks: list[RunChecks] = field(default_factory=list)  # act: the drivers
    queries: list[QueryMetrics] = field(default_factory=list)  # act: the metrics source
    commits: list[CommitSpec] = field(default_factory=list)  # the recorder
    report: bool = False  # the recorder, with the last transition's commit
    alerts: list[Alert] = field(default_factory=list)  # notify
    operations: list[Operation] = field(default_factory=list)  # act: the drivers' strategies
    smokes: list[RunSmoke] = field(default_factory=list)  # act: the drivers' strategies

    @classmethod
    def of(cls, effects: Sequence[Effect]) -> Routed:
        routed = cls()
        for effect in effects:
            match effect:
                case SetVersion():
                    routed.changes.append(effect)
                case RunChecks():
                    routed.checks.append(effect)
                case QueryMetrics():
                    routed.queries.append(effect)
                case CommitSpec():
                    routed.commits.append(effect)
                case WriteReport():
                    routed.report = True
                case Alert():
                    routed.alerts.append(effect)
                case Adopt() | Stage() | Switch() | Scale() | SetWeight() | SetPartition() | RestoreKnobs() | Cleanup():
                    routed.operations.append(effect)
                case RunSmoke():
                    routed.smokes.append(effect)
                case _:
                    assert_never(effect)
        return routed


@dataclass
class Results:
    """What one plugin's effects reported, for its next decision's observations."""

    checks: list[CheckResult] = field(default_factory=list)
    metrics: list[MetricResult] = field(default_factory=list)
    apply_errors: dict[str, str] = field(default_factory=dict)
    operations: list[OperationResult] = field(default_factory=list)
    smokes: list[SmokeResult] = field(default_factory=list)
    cleanups: list[CleanupResult] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.checks or self.metrics or self.apply_errors or self.operations or self.smokes
                    or self.cleanups)


class EffectRunner:
    def __init__(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        self._results: dict[str, Results] = {}

    @property
    def pending(self) -> bool:
        """Results are waiting to be judged: something is still moving."""
        return bool(self._results)

    def take(self, plugin: str) -> Results:
        """What the plugin's last effects reported (each result is given once)."""
        return self._results.pop(plugin, None) or Results()

    def forget(self) -> None:
        self._results.clear()

    def act(self, runtime: Runtime, plugin: Plugin, want: Desired, decision: Decision) -> None:
        """Start the version changes (one call per driver), run the checks, read the metrics."""
        routed = Routed.of(decision.effects)
        refs = {ref.id: ref for ref in want.instances}
        results = Results()
        changes: dict[str, list[SetVersion]] = defaultdict(list)
        for change in routed.changes:
            if change.instance in refs:
                changes[runtime.cluster_driver[refs[change.instance].cluster]].append(change)
        for kind, batch in changes.items():
            driver = runtime.drivers[kind]
            if isinstance(driver, StrategyDriver):  # README "Strategies": the knobs for the time of the change
                results.apply_errors.update(driver.apply(plugin, batch, Knobs.of(want.policy)))
            else:
                results.apply_errors.update(driver.apply(plugin, batch))
        for run in routed.checks:
            if run.instance in refs:
                ref = refs[run.instance]
                driver = runtime.drivers[runtime.cluster_driver[ref.cluster]]
                results.checks.append(driver.check(plugin, ref, run.stage, run.version, run.checks))
        for query in routed.queries:
            results.metrics.extend(self._measure(runtime, plugin, refs, query))
        self._strategies(runtime, plugin, refs, routed, results)
        if results:
            self._results[want.plugin] = results

    @staticmethod
    def _strategies(runtime: Runtime, plugin: Plugin, refs: Mapping[str, InstanceRef], routed: Routed,
                    results: Results) -> None:
        """The strategy operations (one call per driver) and the smoke tests (README "Strategies")."""
        by_driver: dict[str, list[Operation]] = defaultdict(list)
        for operation in routed.operations:
            if operation.instance in refs:
                by_driver[runtime.cluster_driver[refs[operation.instance].cluster]].append(operation)
        for kind, operations in by_driver.items():
            driver = runtime.drivers[kind]
            if not isinstance(driver, StrategyDriver):
                results.operations.extend(OperationResult(o.instance, type(o).__name__, "refused",
                                                          f"driver {kind} runs no strategies") for o in operations)
                continue
            for done in driver.perform_all(plugin, operations):
                if isinstance(done, CleanupResult):
                    results.cleanups.append(done)
                else:
                    results.operations.append(done)
        for request in routed.smokes:
            if request.instance in refs:
                results.smokes.append(smoke(runtime, plugin, refs[request.instance], request))

    def _measure(self, runtime: Runtime, plugin: Plugin, refs: Mapping[str, InstanceRef],
                 query: QueryMetrics) -> list[MetricResult]:
        batch = [refs[i] for i in query.instances if i in refs]
        baseline = [refs[i] for i in query.baseline if i in refs]
        found = []
        for metric in query.metrics:
            window = metric.interval or query.window_seconds  # a metric read less often looks further back
            measured = runtime.metrics.measure(plugin, query.version, metric, batch, window)
            if metric.max_increase is not None and query.baseline_version and measured.value is not None:
                measured = with_baseline(runtime, plugin, metric, measured, baseline, query.baseline_version, window)
            if measured.error is not None:
                self._telemetry.query_error(query.plugin, metric.name)
            found.append(MetricResult(query.rollout_id, query.batch, metric.name, measured))
        return found


def notify(runtime: Runtime, decision: Decision, batches_total: Callable[[], int], now: datetime) -> None:
    """Each transition and alert to the notifiers; the whole rollout to the watchers when either happened."""
    state, alerts = decision.state, Routed.of(decision.effects).alerts
    if runtime.watchers and (decision.transitions or alerts):
        total = batches_total()  # this rollout's only: a tick may notify for every plugin
        for watcher in runtime.watchers:
            watcher.observe(state, total)
    for transition in decision.transitions:
        runtime.notifier.notify(Event(state.plugin, state.rollout_id, state.target_version, "transition",
                                      Severity.INFO, transition.reason, transition.phase, now, transition.batch,
                                      transition.action, state.desired_commit))
    for alert in alerts:
        runtime.notifier.notify(Event(state.plugin, state.rollout_id, state.target_version, alert.kind,
                                      alert.severity, alert.message, state.phase, now,
                                      state.batches[-1].name if state.batches else None,
                                      commit=state.desired_commit))


def noted(runtime: Runtime, state: RolloutState | None) -> RolloutState | None:
    """The state with the notes its watchers keep (e.g. the Slack message's ts), carried into the next commit."""
    if state is None or not runtime.watchers:
        return state
    notes = dict(state.notes)
    for watcher in runtime.watchers:
        notes.update(watcher.notes(state))
    return state if notes == state.notes else replace(state, notes=notes)


def smoke(runtime: Runtime, plugin: Plugin, ref: InstanceRef, request: RunSmoke) -> SmokeResult:
    """One instance's smoke tests: by a strategy driver, or, on another driver, its http and exec checks as a
    verify runs them (a Job smoke test needs Kubernetes)."""
    kind = runtime.cluster_driver[ref.cluster]
    driver = runtime.drivers[kind]
    if isinstance(driver, StrategyDriver):
        return driver.smoke(plugin, request)
    if any(isinstance(check, JobCheck) for check in request.checks):
        return SmokeResult(request.instance, request.version, request.after, False,
                           f"driver {kind} runs no Job smoke tests (README \"Strategies\")")
    checks = [check for check in request.checks if not isinstance(check, JobCheck)]
    found = driver.check(plugin, ref, "verify", request.version, checks)
    return SmokeResult(request.instance, request.version, request.after, found.ok, found.message)


def with_baseline(runtime: Runtime, plugin: Plugin, metric: MetricSpec, measured: Measurement,
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
