"""The engine driving blue-green (README "Strategies") against a tiny pure world of colors, tick by tick the way
the shell does: operations and smoke tests of one tick are answered in the next tick's observations."""

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
    Observations,
    RunChecks,
    SetVersion,
)
from reconciler.core.engine import Decision, decide
from reconciler.core.model import Phase, RolloutState, from_doc, to_doc
from reconciler.core.plan import select_instances
from reconciler.core.report import render_report
from reconciler.core.spec import ClusterSpec, PluginSpec, PolicySpec
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    Cleanup,
    CleanupResult,
    Color,
    OperationResult,
    RunSmoke,
    Scale,
    SmokeResult,
    Stage,
    Switch,
    Track,
    other,
)

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
STEP = timedelta(milliseconds=250)
CLUSTERS = [ClusterSpec(name="canary-1", labels={"tier": "canary"}),
            ClusterSpec(name="prod-1", labels={"tier": "prod"}), ClusterSpec(name="prod-2", labels={"tier": "prod"})]
CANARY = "canary-1/plugins"


def policy(**overrides: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "order": {"label": "tier", "values": ["canary", "prod"]},
        "batches": [{"name": "canary", "size": 1, "bake": "3s"}, {"name": "all", "size": "100%"}],
        "instanceTimeout": "5s",
        "verify": [{"type": "http", "path": "/ready"}],
        "smoke": [{"type": "http", "path": "/health"}],
    }
    doc.update(overrides)
    return PolicySpec.model_validate(doc)


def desired(version: str, spec: PolicySpec | None = None, delay: float = 1.0) -> Desired:
    return Desired(plugin="billing", version=version, paused=False, policy_name="p", policy=spec or policy(),
                   instances=tuple(select_instances(PluginSpec(version=version), CLUSTERS)),
                   desired_commit=f"c0ffee{version.replace('.', '')}", change=Change("c0ffee", "alice"),
                   strategy="blueGreen", scale_down_delay=delay)


@dataclass
class Colors:
    serving: Color | None = None
    versions: dict[Color, str] = field(default_factory=dict)
    replicas: dict[Color, int] = field(default_factory=dict)
    ready: set[Color] = field(default_factory=set)
    switched_at: datetime | None = None


@dataclass
class World:
    instances: dict[str, Colors] = field(default_factory=dict)
    never_ready: set[str] = field(default_factory=set)  # versions whose color never gets ready
    failing_smokes: set[str] = field(default_factory=set)  # "upgrade 1.1.0", "rollback 1.0.0"
    failing_verify: set[str] = field(default_factory=set)  # versions
    pending: set[tuple[str, Color]] = field(default_factory=set)  # changed this tick: ready at the next
    results: list[Any] = field(default_factory=list)
    log: list[tuple[str, object]] = field(default_factory=list)  # (instance, effect) in order

    def __post_init__(self) -> None:
        for cluster in CLUSTERS:
            self.instances[f"{cluster.name}/plugins"] = Colors(None, {"blue": "1.0.0"}, {"blue": 2}, {"blue"})

    def observe(self) -> Observations:
        for iid, color in self.pending:
            it = self.instances[iid]
            if it.versions.get(color) not in self.never_ready and it.replicas.get(color, 0) > 0:
                it.ready.add(color)
        self.pending = set()
        strategy, serving = {}, {}
        for iid, it in self.instances.items():
            tracks = {c: Track("billing" if c == "blue" else "billing-green", v, it.replicas[c],
                               it.replicas[c] if c in it.ready else 0, c in it.ready)
                      for c, v in it.versions.items()}
            strategy[iid] = BlueGreenObservation(iid, "billing", it.serving, tracks, it.switched_at)
            shown = tracks[it.serving or "blue"]
            serving[iid] = InstanceObservation(shown.version, shown.ready)
        results, self.results = self.results, []
        return Observations(instances=serving, checks=tuple(r for r in results if isinstance(r, CheckResult)),
                            strategy=strategy,
                            operations=tuple(r for r in results if isinstance(r, OperationResult)),
                            smokes=tuple(r for r in results if isinstance(r, SmokeResult)),
                            cleanups=tuple(r for r in results if isinstance(r, CleanupResult)))

    def act(self, decision: Decision, now: datetime) -> None:
        for effect in decision.effects:
            assert not isinstance(effect, SetVersion), "a blue-green instance is never changed in place"
            if isinstance(effect, Adopt | Stage | Switch | Scale | Cleanup | RunSmoke | RunChecks):
                self.log.append((effect.instance, effect))
                self.results.append(self._do(effect, now))

    def _do(self, effect: Adopt | Stage | Switch | Scale | Cleanup | RunSmoke | RunChecks, now: datetime) -> object:
        if isinstance(effect, RunChecks):
            ok = effect.version not in self.failing_verify
            return CheckResult(effect.instance, effect.stage, effect.version, ok, "" if ok else "HTTP 500")
        if isinstance(effect, RunSmoke):
            ok = f"{effect.after} {effect.version}" not in self.failing_smokes
            return SmokeResult(effect.instance, effect.version, effect.after, ok, "" if ok else "Job failed: boom")
        it = self.instances[effect.instance]
        if isinstance(effect, Adopt):
            it.serving = "blue"
        elif isinstance(effect, Stage):
            idle = other(it.serving or "blue")
            it.versions[idle], it.replicas[idle] = effect.version, it.replicas[it.serving or "blue"]
            it.ready.discard(idle)
            self.pending.add((effect.instance, idle))
        elif isinstance(effect, Switch):
            if effect.color not in it.ready:
                return OperationResult(effect.instance, "Switch", "refused", f"{effect.color} is not ready")
            it.serving, it.switched_at = effect.color, now
        elif isinstance(effect, Scale):
            assert effect.track != "canary"
            it.replicas[effect.track] = effect.replicas if effect.replicas is not None else 2
            it.ready.discard(effect.track)
            self.pending.add((effect.instance, effect.track))
        elif isinstance(effect, Cleanup):
            idle = other(it.serving or "blue")
            removed: tuple[str, ...] = ()
            if idle == "green" and "green" in it.versions:
                del it.versions["green"], it.replicas["green"]
                it.ready.discard("green")
                removed = ("Deployment plugins/billing-green",)
            elif idle == "blue":
                it.replicas["blue"] = 0
                it.ready.discard("blue")
            return CleanupResult(effect.instance, (*removed, "Service plugins/billing-preview"),
                                 ("Deployment plugins/billing",) if idle == "blue" else ())
        return OperationResult(effect.instance, type(effect).__name__, "done")

    def serves(self) -> dict[str, str]:
        return {iid: it.versions[it.serving or "blue"] for iid, it in self.instances.items()}

    def ops(self, iid: str) -> list[str]:
        """The operations an instance was asked, repeats folded."""
        names: list[str] = []
        for instance, effect in self.log:
            label = type(effect).__name__ + (f" {effect.color}" if isinstance(effect, Switch) else "") + (
                f" {effect.after}/{effect.target}" if isinstance(effect, RunSmoke) else "")
            if instance == iid and (not names or names[-1] != label):
                names.append(label)
        return names


def run(world: World, want: Desired, state: RolloutState | None = None, until: Phase | None = None,
        ticks: int = 200) -> tuple[RolloutState, list[Alert], list[Decision]]:
    now, alerts, decisions = T0, [], []
    for _ in range(ticks):
        decision = decide(state, want, world.observe(), now)
        decisions.append(decision)
        world.act(decision, now)
        alerts += [e for e in decision.effects if isinstance(e, Alert)]
        state = decision.state
        if until is not None and state.phase is until and not state.cleanup_pending and not world.results:
            break
        now += STEP
    assert state is not None
    return state, alerts, decisions


def test_blue_green_adopts_stages_smokes_switches_then_scales_down_and_cleans_up() -> None:
    world = World()
    state, alerts, decisions = run(world, desired("1.1.0"), until=Phase.SUCCEEDED)
    assert state.phase is Phase.SUCCEEDED, state.reason
    assert set(world.serves().values()) == {"1.1.0"} and not alerts
    # the old color is scaled down during the canary's 3s bake, once the 1s delay is over; cleanup at the end
    assert world.ops(CANARY) == ["Adopt", "Stage", "RunSmoke upgrade/staged", "Switch green", "RunChecks", "Scale",
                                 "Cleanup"]
    assert world.instances[CANARY].replicas["blue"] == 0
    assert all(it.serving == "green" for it in world.instances.values())
    assert state.cleanup == {iid: "removed Service plugins/billing-preview; scaled Deployment plugins/billing to 0"
                             for iid in world.instances}
    last = decisions[-1] if decisions[-1].transitions else next(d for d in reversed(decisions) if d.transitions)
    assert last.transitions[-1].action == "cleanup"
    assert "## Cleanup" in render_report(state)
    back = from_doc(to_doc(state))  # what the smoke tests passed and the cleanup survive a restart
    assert back.cleanup == state.cleanup and to_doc(back) == to_doc(state)
    assert {inst.smoked for inst in back.instances.values()} == {"upgrade 1.1.0"}
    assert "- canary-1/plugins: removed Service plugins/billing-preview" in render_report(state)


def test_a_new_color_never_ready_is_never_switched_to_and_the_batch_fails() -> None:
    world = World(never_ready={"2.0.0"})
    state, alerts, _ = run(world, desired("2.0.0"), until=Phase.ROLLED_BACK)
    assert state.phase is Phase.ROLLED_BACK, state.reason
    assert "not ready and verified within 5s" in state.instances[CANARY].message or \
        "not ready and verified within 5s" in " ".join(h.reason for h in state.history)
    assert not any(isinstance(e, Switch) for _, e in world.log)  # nothing switched, anywhere
    assert world.serves() == dict.fromkeys(world.instances, "1.0.0")
    assert {a.kind for a in alerts} == {"batch_failed", "no_retry"}  # no_retry: spec.version is not reverted here
    assert "removed Deployment plugins/billing-green" in state.cleanup[CANARY]  # the idle new color goes


def test_a_smoke_test_failing_on_the_staged_color_fails_the_batch_before_any_switch() -> None:
    world = World(failing_smokes={"upgrade 1.1.0"})
    state, _, _ = run(world, desired("1.1.0"), until=Phase.ROLLED_BACK)
    assert state.phase is Phase.ROLLED_BACK
    reasons = " ".join(h.reason for h in state.history)
    assert ("batch canary failed: canary-1/plugins: smoke tests on the staged color before the switch to 1.1.0 "
            "failed: Job failed: boom") in reasons
    assert not any(isinstance(e, Switch) for _, e in world.log)


def test_a_rollback_within_the_delay_switches_back_and_a_failing_smoke_test_escalates() -> None:
    world = World(failing_verify={"1.1.0"}, failing_smokes={"rollback 1.0.0"})
    state, alerts, _ = run(world, desired("1.1.0", delay=600), until=Phase.FAILED)
    assert state.phase is Phase.FAILED, state.reason
    assert world.ops(CANARY)[:6] == ["Adopt", "Stage", "RunSmoke upgrade/staged", "Switch green", "RunChecks",
                                     "Switch blue"]
    assert world.serves()[CANARY] == "1.0.0"  # back on blue by one switch, no redeploy
    escalated = [a for a in alerts if a.kind == "rollback_smoke_failed"]
    assert len(escalated) == 1 and escalated[0].severity == "critical"
    assert escalated[0].message.startswith("billing 1.1.0: canary-1/plugins: smoke tests after rollback to 1.0.0 "
                                           "failed: Job failed: boom")
    assert not state.cleanup  # a failed rollback is left as it is for a human


def test_a_rollback_after_the_old_color_was_removed_stages_the_previous_version_again() -> None:
    world = World()
    first, _, _ = run(world, desired("1.1.0"), until=Phase.SUCCEEDED)  # serves green 1.1.0, blue at 0
    second, _, _ = run(world, desired("1.2.0"), state=first, until=Phase.SUCCEEDED)  # blue 1.2.0, green removed
    assert "green" not in world.instances[CANARY].versions
    world.log.clear()
    state, alerts, _ = run(world, desired("1.1.0"), state=second, until=Phase.ROLLED_BACK)  # grayops rollback
    assert state.phase is Phase.ROLLED_BACK, state.reason
    # the platform teams' rollback flow: deploy the previous version again, wait for ready, switch, smoke tests
    assert world.ops(CANARY) == ["Stage", "Switch green", "RunChecks", "RunSmoke rollback/serving", "Cleanup"]
    assert world.serves() == dict.fromkeys(world.instances, "1.1.0") and not alerts


def test_the_staged_color_runs_the_pinned_digest_and_a_rollback_stages_the_one_recorded() -> None:
    """README "Supply chain": blue-green stages `image:version@digest`; going back to a removed color stages the
    digest pinned when that version rolled out, however its tag moved since."""
    world, want, digest = World(), desired("1.1.0"), "sha256:" + "1" * 64
    started = decide(None, want, world.observe(), T0)
    world.act(started, T0)
    first, _, _ = run(world, want, state=replace(started.state, artifact={"digest": digest}), until=Phase.SUCCEEDED)
    assert {e.digest for _, e in world.log if isinstance(e, Stage)} == {digest}
    second, _, _ = run(world, desired("1.2.0"), state=first, until=Phase.SUCCEEDED)  # no digest pinned for 1.2.0
    world.log.clear()
    state, _, _ = run(world, desired("1.1.0"), state=second, until=Phase.ROLLED_BACK)
    assert state.phase is Phase.ROLLED_BACK, state.reason
    staged = [e for _, e in world.log if isinstance(e, Stage)]
    assert staged and {e.digest for e in staged} == {digest}
