"""The policy's `offline: wait|skip|fail`: what the engine does with an instance whose cluster does not answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.core.effects import Alert, Change, Desired, InstanceObservation, Observations, SetVersion
from reconciler.core.engine import decide
from reconciler.core.model import Phase, RolloutState, Step
from reconciler.core.plan import select_instances
from reconciler.core.spec import ClusterSpec, PluginSpec, PolicySpec

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
CLUSTERS = [ClusterSpec(name="canary-1", labels={"tier": "canary"}),
            ClusterSpec(name="prod-1", labels={"tier": "prod"}), ClusterSpec(name="prod-2", labels={"tier": "prod"})]
DOWN = InstanceObservation(None, False, reachable=False, message="cluster prod-2 unreachable: connection refused")


def policy(offline: str) -> PolicySpec:
    return PolicySpec.model_validate({
        "order": {"label": "tier", "values": ["canary", "prod"]},
        "batches": [{"name": "canary", "size": 1}, {"name": "all", "size": "100%"}],
        "instanceTimeout": "60s", "offline": offline})


def drive(offline: str, down_ticks: int, down_from: int = 0) -> tuple[RolloutState, list[Alert], dict[str, str]]:
    want = Desired(plugin="billing", version="1.1.0", paused=False, policy_name="p", policy=policy(offline),
                   instances=tuple(select_instances(PluginSpec(version="1.1.0"), CLUSTERS)),
                   desired_commit="c0ffee11", change=Change("c0ffee", "alice"))
    versions = {ref.id: "1.0.0" for ref in want.instances}
    state: RolloutState | None = None
    alerts: list[Alert] = []
    now = T0
    for tick in range(200):
        seen = {iid: DOWN if iid.startswith("prod-2/") and down_from <= tick < down_ticks
                else InstanceObservation(v, True)
                for iid, v in versions.items()}
        decision = decide(state, want, Observations(seen), now)
        for effect in decision.effects:
            if isinstance(effect, SetVersion) and seen[effect.instance].reachable:
                versions[effect.instance] = effect.version
            elif isinstance(effect, Alert):
                alerts.append(effect)
        state = decision.state
        assert state is not None
        if state.phase.terminal:
            return state, alerts, versions
        now += timedelta(milliseconds=250)
    raise AssertionError(f"no end: {state.phase if state else None}")


def steps(state: RolloutState) -> dict[str, Any]:
    return {iid: (inst.step, inst.message) for iid, inst in state.instances.items()}


def test_wait_holds_the_instance_with_one_alert_and_goes_on_when_the_cluster_is_back() -> None:
    state, alerts, versions = drive("wait", down_ticks=20)
    assert state.phase is Phase.SUCCEEDED
    assert set(versions.values()) == {"1.1.0"}
    offline = [a for a in alerts if a.kind == "cluster_offline"]
    assert len(offline) == 1 and "prod-2/plugins" in offline[0].message and "unreachable" in offline[0].message


def test_skip_leaves_the_instance_out_without_spending_the_failure_budget() -> None:
    state, _, versions = drive("skip", down_ticks=10_000)
    assert state.phase is Phase.SUCCEEDED  # failureBudget is 0, yet the batch passed
    step, message = steps(state)["prod-2/plugins"]
    assert step is Step.SKIPPED and message.startswith("skipped (offline: skip): cluster prod-2 unreachable")
    assert versions["prod-2/plugins"] == "1.0.0" and versions["prod-1/plugins"] == "1.1.0"


def test_fail_fails_the_instance_and_counts_it() -> None:
    state, alerts, versions = drive("fail", 10_000, down_from=1)  # down just after the rollout began
    assert state.phase in (Phase.ROLLED_BACK, Phase.FAILED)
    assert any(a.kind == "batch_failed" and "prod-2/plugins" in a.message for a in alerts)
    _, message = steps(state)["prod-2/plugins"]
    assert "offline: fail" in message
    assert versions["prod-1/plugins"] == "1.0.0"  # the batch's other instance was rolled back
