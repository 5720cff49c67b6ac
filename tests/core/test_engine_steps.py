"""The engine driving traffic canaries and partition steps (README "Strategies") against a tiny pure world, tick by
tick the way the shell does: each step baked and judged by the batch's metrics, promotion, rollback, restart."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.effects import (
    Alert,
    Change,
    CheckResult,
    Desired,
    InstanceObservation,
    MetricResult,
    Observations,
    QueryMetrics,
    RunChecks,
    SetVersion,
)
from reconciler.core.engine import Decision, decide
from reconciler.core.model import Measurement, Phase, RolloutState, fmt_time, from_doc, to_doc
from reconciler.core.plan import select_instances
from reconciler.core.spec import ClusterSpec, PluginSpec, PolicySpec, RetryRecord
from reconciler.core.strategy import (
    Adopt,
    CanaryObservation,
    Cleanup,
    CleanupResult,
    OperationResult,
    PartitionObservation,
    RestoreKnobs,
    RunSmoke,
    SetPartition,
    SetWeight,
    SmokeResult,
    Stage,
    Track,
)

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=250)
CLUSTERS = [ClusterSpec(name="canary-1", labels={"tier": "canary"}),
            ClusterSpec(name="prod-1", labels={"tier": "prod"}), ClusterSpec(name="prod-2", labels={"tier": "prod"})]
CANARY = "canary-1/plugins"


def policy(**overrides: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "order": {"label": "tier", "values": ["canary", "prod"]},
        "batches": [{"name": "canary", "size": 1, "bake": "1s"}, {"name": "all", "size": "100%", "bake": "1s"}],
        "instanceTimeout": "5s",
        "verify": [{"type": "http", "path": "/ready"}],
        "analysis": {"interval": "250ms", "metrics": [{"name": "error_rate", "max": 0.05}]},
    }
    doc.update(overrides)
    return PolicySpec.model_validate(doc)


def desired(version: str, spec: PolicySpec | None = None, strategy: str = "canary") -> Desired:
    return Desired(plugin="billing", version=version, paused=False, policy_name="p", policy=spec or policy(),
                   instances=tuple(select_instances(PluginSpec(version=version), CLUSTERS)),
                   desired_commit=f"c0ffee{version.replace('.', '')}", change=Change("c0ffee", "alice"),
                   strategy=strategy, traffic_steps=(10, 50, 100) if strategy == "canary" else ())


@dataclass
class Canary:
    stable: str = "1.0.0"
    stable_ready: bool = True
    canary: str | None = None
    canary_ready: bool = False
    weight: int = 0
    adopted: bool = False


@dataclass
class CanaryWorld:
    instances: dict[str, Canary] = field(default_factory=lambda: {f"{c.name}/plugins": Canary() for c in CLUSTERS})
    bad: dict[str, float] = field(default_factory=dict)  # version -> error rate while it takes traffic
    results: list[Any] = field(default_factory=list)
    weights: dict[str, list[int]] = field(default_factory=dict)  # each instance's weights, in order
    log: list[object] = field(default_factory=list)
    retries: tuple[RetryRecord, ...] = ()

    def observe(self) -> Observations:
        strategy, instances = {}, {}
        for iid, it in self.instances.items():
            stable = Track("billing", it.stable, 2, 2 if it.stable_ready else 0, it.stable_ready)
            canary = Track("billing-canary", it.canary, 2, 2 if it.canary_ready else 0, it.canary_ready) \
                if it.canary else None
            strategy[iid] = CanaryObservation(iid, "billing", "billing", stable, canary, 100 - it.weight, it.weight,
                                              it.adopted)
            instances[iid] = InstanceObservation(it.stable, it.stable_ready)
        for it in self.instances.values():  # what changed last tick is ready now
            it.stable_ready, it.canary_ready = True, it.canary is not None
        results, self.results = self.results, []
        return replace(observations(instances, strategy, results), retries=self.retries)

    def act(self, decision: Decision) -> None:
        for effect in decision.effects:
            self.log.append(effect)
            if isinstance(effect, QueryMetrics):
                rate = max((self.bad.get(effect.version, 0.001) for iid in effect.instances
                            if self.instances[iid].weight > 0 or self.instances[iid].stable == effect.version),
                           default=0.001)
                self.results += [MetricResult(effect.rollout_id, effect.batch, m.name, Measurement(rate))
                                 for m in effect.metrics]
            elif isinstance(effect, RunChecks | RunSmoke):
                self.results.append(answer(effect))
            elif isinstance(effect, Adopt | Stage | SetWeight | SetVersion | Cleanup):
                self.results.append(self._do(effect))

    def _do(self, effect: Adopt | Stage | SetWeight | SetVersion | Cleanup) -> object:
        it = self.instances[effect.instance]
        if isinstance(effect, SetVersion):
            it.stable, it.stable_ready = effect.version, False
            return None
        if isinstance(effect, Adopt):
            it.adopted = True
        elif isinstance(effect, Stage):
            it.canary, it.canary_ready = effect.version, False
        elif isinstance(effect, SetWeight):
            if effect.weight > 0 and not it.canary_ready:
                return OperationResult(effect.instance, "SetWeight", "refused", "the canary is not ready")
            if it.weight != effect.weight:
                self.weights.setdefault(effect.instance, []).append(effect.weight)
            it.weight = effect.weight
        elif isinstance(effect, Cleanup):
            assert it.weight == 0
            it.canary = None
            return CleanupResult(effect.instance, ("Deployment plugins/billing-canary",))
        return OperationResult(effect.instance, type(effect).__name__, "done")


def answer(effect: RunChecks | RunSmoke) -> CheckResult | SmokeResult:
    if isinstance(effect, RunChecks):
        return CheckResult(effect.instance, effect.stage, effect.version, True, "")
    return SmokeResult(effect.instance, effect.version, effect.after, True, "")


def observations(instances: dict[str, InstanceObservation], strategy: dict[str, Any], results: list[Any]
                 ) -> Observations:
    return Observations(instances=instances, strategy=strategy,
                        checks=tuple(r for r in results if isinstance(r, CheckResult)),
                        metrics=tuple(r for r in results if isinstance(r, MetricResult)),
                        operations=tuple(r for r in results if isinstance(r, OperationResult)),
                        smokes=tuple(r for r in results if isinstance(r, SmokeResult)),
                        cleanups=tuple(r for r in results if isinstance(r, CleanupResult)))


def run(world: CanaryWorld | PartitionWorld, want: Desired, state: RolloutState | None = None,
        until: Any = None, ticks: int = 400, now: datetime = T0
        ) -> tuple[RolloutState, list[Alert], list[Decision], datetime]:
    alerts: list[Alert] = []
    decisions: list[Decision] = []
    for _ in range(ticks):
        decision = decide(state, want, world.observe(), now)
        decisions.append(decision)
        world.act(decision)
        alerts += [e for e in decision.effects if isinstance(e, Alert)]
        state = decision.state
        now += STEP
        if until is not None and until(state) and (not state.phase.terminal or (not state.cleanup_pending
                                                                                 and not world.results)):
            break
    assert state is not None
    return state, alerts, decisions, now


def settled(phase: Phase) -> Any:
    return lambda state: state.phase is phase


def test_a_canary_moves_10_50_100_each_step_baked_then_promotion_and_cleanup() -> None:
    world = CanaryWorld()
    state, alerts, decisions, _ = run(world, desired("1.1.0", policy(smoke=[{"type": "http", "path": "/h"}])),
                                      until=settled(Phase.SUCCEEDED))
    assert state.phase is Phase.SUCCEEDED, state.reason
    assert not alerts
    assert world.weights == {iid: [10, 50, 100, 0] for iid in world.instances}
    assert all(it.stable == "1.1.0" and it.canary is None for it in world.instances.values())
    reasons = [t.reason for d in decisions for t in d.transitions]
    for step in ("the canary at 10%", "the canary at 50%", "the canary at 100%"):  # each step baked, per batch
        assert sum(f"({step}); baking 1s" in r for r in reasons) == 2, reasons
    assert "batch canary: the canary at 100% passed its bake; next: promotion (1 instance(s))" in reasons
    assert not any("baking" in r and "canary" not in r for r in reasons)  # no bake again after the promotion
    smokes = [e for e in world.log if isinstance(e, RunSmoke)]  # once, on the canary, before any traffic
    assert {(e.instance, e.target) for e in smokes} == {(iid, "staged") for iid in world.instances}
    # the stable Deployment is changed once, by the promotion, after the canary took 100%
    promoted = [e for e in world.log if isinstance(e, SetVersion) and e.instance == CANARY]
    assert {e.version for e in promoted} == {"1.1.0"}
    assert state.cleanup[CANARY] == "removed Deployment plugins/billing-canary"


def test_a_failing_metric_at_10_percent_takes_the_weight_back_to_0_at_once() -> None:
    world = CanaryWorld(bad={"2.0.0": 0.3})
    state, alerts, decisions, _ = run(world, desired("2.0.0"), until=settled(Phase.ROLLED_BACK))
    assert state.phase is Phase.ROLLED_BACK, state.reason
    assert world.weights == {CANARY: [10, 0]}  # never 50; the other batch never started
    failing = next(d for d in decisions if any(t.action == "rollback" for t in d.transitions))
    assert SetWeight("billing", CANARY, 0) in failing.effects  # in the decision that fails the batch
    assert not any(isinstance(e, SetVersion) for e in world.log)  # the stable Deployment served throughout
    assert world.instances[CANARY].stable == "1.0.0" and world.instances[CANARY].canary is None
    assert "batch_failed" in {a.kind for a in alerts}


def test_a_restart_resumes_at_the_same_step() -> None:
    world = CanaryWorld()
    want = desired("1.1.0")
    state, _, _, now = run(world, want, until=lambda s: s.instances[CANARY].at_step == 1 and
                           world.instances[CANARY].weight == 50)
    assert world.weights[CANARY] == [10, 50]
    restarted = from_doc(to_doc(state))  # what status/billing.yaml keeps
    assert restarted.instances[CANARY].at_step == 1
    state, _, _, _ = run(world, want, state=restarted, until=settled(Phase.SUCCEEDED), now=now)
    assert state.phase is Phase.SUCCEEDED, state.reason
    assert world.weights[CANARY] == [10, 50, 100, 0]  # not back to 10


def test_a_retry_of_a_batch_that_failed_at_a_step_judges_that_step_again() -> None:
    world = CanaryWorld(bad={"2.0.0": 0.3})
    want = desired("2.0.0", policy(rollback={"onFailure": False}))
    state, _, _, now = run(world, want, until=settled(Phase.PAUSED))
    assert state.phase is Phase.PAUSED and "batch canary failed" in state.reason, state.reason
    assert world.weights == {CANARY: [10]}  # rollback off: the canary keeps its 10% for a human to look at
    failed = state.batches[-1]
    assert failed.ended is not None
    world.bad.clear()  # fixed outside grayops; then `grayops retry billing`
    world.retries = (RetryRecord(version="2.0.0", rollout_id=state.rollout_id, batch="canary",
                                 failed_at=fmt_time(failed.ended), by="alice", at=fmt_time(now)),)
    state, _, decisions, _ = run(world, want, state=state, until=settled(Phase.SUCCEEDED), now=now)
    assert state.phase is Phase.SUCCEEDED, state.reason
    assert world.weights[CANARY] == [10, 50, 100, 0]  # judged at 10% again, then on
    reasons = [t.reason for d in decisions for t in d.transitions]
    assert "batch canary: the canary at 10% passed its bake; next: the canary to 50% (1 instance(s))" in reasons


# --- partition steps -------------------------------------------------------------------------------------------


@dataclass
class StatefulSet:
    version: str = "1.0.0"
    partition: int = 0
    steps: tuple[int, ...] = ()
    updated: int = 4  # ordinals at the version, counted from the top
    fresh: bool = False  # changed this tick


@dataclass
class PartitionWorld:
    instances: dict[str, StatefulSet] = field(
        default_factory=lambda: {f"{c.name}/plugins": StatefulSet() for c in CLUSTERS})
    bad: dict[tuple[str, int], float] = field(default_factory=dict)  # (version, partition) -> error rate
    results: list[Any] = field(default_factory=list)
    partitions: dict[str, list[int]] = field(default_factory=dict)
    log: list[object] = field(default_factory=list)

    def observe(self) -> Observations:
        strategy, instances = {}, {}
        for iid, it in self.instances.items():
            if not it.fresh:
                it.updated = 4 - it.partition
            it.fresh = False
            done = it.updated == 4 - it.partition
            strategy[iid] = PartitionObservation(iid, it.partition, it.steps, 4, it.updated, 4, done)
            instances[iid] = InstanceObservation(it.version, done and it.partition == 0)
        results, self.results = self.results, []
        return observations(instances, strategy, results)

    def act(self, decision: Decision) -> None:
        for effect in decision.effects:
            self.log.append(effect)
            if isinstance(effect, QueryMetrics):
                rate = max((self.bad.get((effect.version, self.instances[iid].partition), 0.001)
                            for iid in effect.instances), default=0.001)
                self.results += [MetricResult(effect.rollout_id, effect.batch, m.name, Measurement(rate))
                                 for m in effect.metrics]
            elif isinstance(effect, RunChecks | RunSmoke):
                self.results.append(answer(effect))
            elif isinstance(effect, SetVersion):  # the driver applies the knobs: the first step with the version
                it = self.instances[effect.instance]
                it.version, it.steps, it.updated, it.fresh = effect.version, (3, 2, 0), 0, True
                self._lower(effect.instance, 3)
            elif isinstance(effect, SetPartition):
                self._lower(effect.instance, effect.partition)
                self.instances[effect.instance].fresh = True
                self.results.append(OperationResult(effect.instance, "SetPartition", "done"))

    def _lower(self, iid: str, partition: int) -> None:
        if self.instances[iid].partition != partition:
            self.partitions.setdefault(iid, []).append(partition)
        self.instances[iid].partition = partition


def test_partition_steps_are_lowered_one_by_one_each_verified_and_baked() -> None:
    world = PartitionWorld()
    want = desired("1.1.0", policy(partitionSteps=["75%", "50%", 0], maxSurge=1), strategy="inPlace")
    state, alerts, decisions, _ = run(world, want, until=settled(Phase.SUCCEEDED))
    assert state.phase is Phase.SUCCEEDED, state.reason
    assert not alerts
    assert world.partitions == {iid: [3, 2, 0] for iid in world.instances}
    reasons = [t.reason for d in decisions for t in d.transitions]
    assert "batch canary: partition 3 passed its bake; next: partition 2 (1 instance(s))" in reasons
    assert "batch canary: partition 2 passed its bake; next: partition 0 (1 instance(s))" in reasons
    verifies = [e for e in world.log if isinstance(e, RunChecks) and e.instance == CANARY]
    assert len(verifies) == 3  # verify at each step
    assert [e for e in world.log if isinstance(e, RestoreKnobs)]  # the knobs are put back once it is done


def test_a_failing_metric_at_a_partition_step_rolls_every_pod_back_at_once() -> None:
    world = PartitionWorld(bad={("2.0.0", 2): 0.3})
    want = desired("2.0.0", policy(partitionSteps=["75%", "50%", 0]), strategy="inPlace")
    state, _, _, _ = run(world, want, until=settled(Phase.ROLLED_BACK))
    assert state.phase is Phase.ROLLED_BACK, state.reason
    assert world.partitions[CANARY] == [3, 2, 3, 0]  # the rollback sets its first step, then 0 at once
    assert world.instances[CANARY].version == "1.0.0"
