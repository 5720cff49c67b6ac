"""The RollingUpdate knobs (README "Strategies") against emulated API servers: a Deployment's maxSurge /
maxUnavailable for the time of a change and restored after, and a StatefulSet's partition lowered step by step
by the caller, each step observable."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.workloads import ORIGINAL_STRATEGY_ANNOTATION, PARTITION_STEPS_ANNOTATION
from reconciler.core.effects import InstanceObservation, SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import PolicySpec
from reconciler.core.strategy import Knobs, OperationResult, PartitionObservation, RestoreKnobs, SetPartition
from tests.conftest import wait_for
from tests.kube.emulator import Emulator
from tests.kube.fleet import Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
REF = InstanceRef("kube-canary", "tenant-a")
STS = plugin("redis", workload={"kind": "StatefulSet", "name": "redis", "container": "redis"}, image="redis")
POLICY = PolicySpec.model_validate({"batches": [{"name": "all", "size": "100%"}], "maxSurge": 1,
                                    "maxUnavailable": 0, "partitionSteps": ["75%", "50%", 0]})


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:
    d = kube.driver()
    yield d
    d.close()


def strategy(emulator: Emulator) -> dict[str, object]:
    found: dict[str, object] = emulator.get(emulator.resource("deployments"), REF.namespace, "billing")["spec"][
        "strategy"]
    return found


@pytest.mark.parametrize("own", [
    {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
    {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": 1}},
], ids=["defaults", "the-teams-own"])
def test_surge_and_unavailable_hold_for_the_change_and_are_restored(kube: Fleet, driver: KubernetesDriver,
                                                                    own: dict[str, object]) -> None:
    emulator = kube["kube-canary"]
    deployments = emulator.resource("deployments")
    obj = emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.0.0")
    emulator.replace(deployments, REF.namespace, "billing", {**obj, "spec": {**obj["spec"], "strategy": own}})
    change = [SetVersion("billing", REF.id, "1.1.0", "r-1", "1.0.0")]
    patches = len(emulator.patches)
    assert driver.apply(plugin(), change, Knobs.of(POLICY)) == {}
    assert len(emulator.patches) == patches + 1  # image and strategy in one patch
    assert strategy(emulator) == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    notes = emulator.get(deployments, REF.namespace, "billing")["metadata"]["annotations"]
    assert json.loads(notes[ORIGINAL_STRATEGY_ANNOTATION]) == own
    assert driver.apply(plugin(), change, Knobs.of(POLICY)) == {}
    assert len(emulator.patches) == patches + 1  # applying twice changes nothing, the original stays remembered
    wait_for(lambda: driver.observe(plugin(), [REF])[REF.id] == InstanceObservation("1.1.0", True))

    restored = driver.perform(plugin(), RestoreKnobs("billing", REF.id))
    assert isinstance(restored, OperationResult) and restored.outcome == "done"
    assert strategy(emulator) == own
    assert ORIGINAL_STRATEGY_ANNOTATION not in emulator.get(deployments, REF.namespace, "billing")["metadata"][
        "annotations"]
    again = driver.perform(plugin(), RestoreKnobs("billing", REF.id))
    assert isinstance(again, OperationResult) and again.outcome == "unchanged"
    assert driver.observe(plugin(), [REF])[REF.id] == InstanceObservation("1.1.0", True)


def step_seen(driver: KubernetesDriver, ref: InstanceRef) -> PartitionObservation:
    found = driver.observe_strategy(STS, [ref])[ref.id]
    assert isinstance(found, PartitionObservation)
    return found


def test_the_partition_goes_down_one_step_at_a_time_when_the_caller_says(kube: Fleet,
                                                                         driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    ref = InstanceRef("kube-canary", "data")
    statefulsets = emulator.resource("statefulsets")
    emulator.add_statefulset("data", "redis", "redis:7.0.0", replicas=4)
    assert driver.apply(STS, [SetVersion("redis", ref.id, "7.2.0", "r-1", "7.0.0")], Knobs.of(POLICY)) == {}
    obj = emulator.get(statefulsets, "data", "redis")
    assert obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 3  # 75% of 4 pods stay: the 4th moves
    assert obj["metadata"]["annotations"][PARTITION_STEPS_ANNOTATION] == "3,2,0"

    for partition, updated in ((3, 1), (2, 2)):
        seen = wait_for(lambda: (o := step_seen(driver, ref)).step_ready and o, what=f"partition {partition} ready")
        assert (seen.partition, seen.steps, seen.updated, seen.replicas) == (partition, (3, 2, 0), updated, 4)
        emulator.settle(4)  # time passes: nothing lowers the partition but the caller
        assert emulator.get(statefulsets, "data", "redis")["spec"]["updateStrategy"]["rollingUpdate"][
            "partition"] == partition
        assert not driver.observe(STS, [ref])[ref.id].ready
        assert seen.next_step is not None
        lowered = driver.perform(STS, SetPartition("redis", ref.id, seen.next_step))
        assert isinstance(lowered, OperationResult) and lowered.outcome == "done"

    wait_for(lambda: driver.observe(STS, [ref])[ref.id] == InstanceObservation("7.2.0", True))
    final = step_seen(driver, ref)
    assert (final.partition, final.step_ready, final.next_step) == (0, True, None)
    again = driver.perform(STS, SetPartition("redis", ref.id, 0))
    assert isinstance(again, OperationResult) and again.outcome == "unchanged"


def test_a_bad_version_holds_its_step_and_without_steps_the_partition_drops_by_itself(
        kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    ref = InstanceRef("kube-canary", "data")
    emulator.add_statefulset("data", "redis", "redis:7.0.0", replicas=4)
    emulator.bad_versions["7.9.0"] = "stuck"
    driver.apply(STS, [SetVersion("redis", ref.id, "7.9.0", "r-1", "7.0.0")], Knobs.of(POLICY))
    emulator.settle(6)
    held = wait_for(lambda: (o := step_seen(driver, ref)).updated == 1 and o, what="the canary ordinal updated")
    assert (held.partition, held.step_ready) == (3, False) and "3 of 4 pods ready" in held.message
    # Without partitionSteps the workload's own partition applies, lowered to 0 once its ordinals are ready.
    emulator.bad_versions.clear()
    partitioned = plugin("redis", workload={"kind": "StatefulSet", "name": "redis", "container": "redis",
                                            "partition": 3}, image="redis")
    driver.apply(partitioned, [SetVersion("redis", ref.id, "7.2.0", "r-2", "7.0.0")])
    obj = emulator.get(emulator.resource("statefulsets"), "data", "redis")
    assert PARTITION_STEPS_ANNOTATION not in obj["metadata"]["annotations"]
    wait_for(lambda: driver.observe(partitioned, [ref])[ref.id] == InstanceObservation("7.2.0", True))
