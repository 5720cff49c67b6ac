"""Blue-green through the official client over real HTTP against emulated API servers: adopt, stage the new color
beside the old, switch the Service's selector, scale down, roll back by switching back or by redeploying."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.strategies import COLOR, MANAGED_BY
from reconciler.core.effects import InstanceObservation
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Plugin
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    Cleanup,
    CleanupResult,
    Color,
    Operation,
    OperationResult,
    Scale,
    Stage,
    Switch,
)
from tests.conftest import wait_for
from tests.kube.emulator import Emulator
from tests.kube.fleet import Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
REF = InstanceRef("kube-canary", "tenant-a")
BLUE_GREEN = plugin(workload={"kind": "Deployment", "name": "billing", "container": "billing",
                              "strategy": "blueGreen", "service": "billing", "scaleDownDelay": "10m"})


def install(emulator: Emulator, version: str = "1.0.0", replicas: int = 2) -> None:
    emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:{version}", replicas=replicas)
    emulator.add_service(REF.namespace, "billing", {"app": "billing"})
    emulator.settle()


def served(emulator: Emulator) -> set[tuple[str, str]]:
    """(color, image) of every ready pod behind the Service: where its traffic goes."""
    return {(p["metadata"]["labels"].get(COLOR, "-"), p["spec"]["containers"][0]["image"])
            for p in emulator.serving(REF.namespace, "billing")}


def selector(emulator: Emulator) -> dict[str, str]:
    found: dict[str, str] = emulator.get(emulator.resource("services", "", "v1"), REF.namespace,
                                         "billing")["spec"]["selector"]
    return found


def perform(driver: KubernetesDriver, op: Operation, plugin: Plugin = BLUE_GREEN) -> OperationResult:
    result = driver.perform(plugin, op)
    assert isinstance(result, OperationResult)
    return result


def until_done(driver: KubernetesDriver, op: Operation) -> OperationResult:
    """Ask again, as the engine does each tick, until the operation is done."""
    return wait_for(lambda: (r := perform(driver, op)).ok and r, what=f"{op} done")


def seen(driver: KubernetesDriver) -> BlueGreenObservation:
    found = driver.observe_strategy(BLUE_GREEN, [REF])[REF.id]
    assert isinstance(found, BlueGreenObservation)
    return found


def color_ready(driver: KubernetesDriver, color: Color, version: str) -> bool:
    track = seen(driver).colors.get(color)
    return track is not None and track.ready and track.version == version


def adopt_and_stage(driver: KubernetesDriver, emulator: Emulator, version: str = "1.1.0") -> None:
    until_done(driver, Adopt("billing", REF.id, "r-1"))
    wait_for(lambda: seen(driver).serving == "blue")
    assert perform(driver, Stage("billing", REF.id, version, "r-1", "1.0.0")).outcome == "done"


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:
    d = kube.driver()
    yield d
    d.close()


def test_the_new_color_is_made_ready_beside_the_old_then_the_service_switches(kube: Fleet,
                                                                              driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    first = seen(driver)
    assert (first.adopted, first.version, first.idle) == (False, "1.0.0", "green")

    adopted = until_done(driver, Adopt("billing", REF.id, "r-1"))
    assert adopted.outcome == "done" and selector(emulator) == {"app": "billing", COLOR: "blue"}
    wait_for(lambda: served(emulator) == {("blue", f"{IMAGE}:1.0.0")}, what="the blue pods behind the Service")

    staged = perform(driver, Stage("billing", REF.id, "1.1.0", "r-1", "1.0.0"))
    assert staged.outcome == "done", staged.message
    green = emulator.get(emulator.resource("deployments"), REF.namespace, "billing-green")
    blue = emulator.get(emulator.resource("deployments"), REF.namespace, "billing")
    assert green["metadata"]["labels"][MANAGED_BY] == "grayops" and green["spec"]["replicas"] == 2
    assert green["spec"]["selector"]["matchLabels"] == {"app": "billing", COLOR: "green"}
    template, original = green["spec"]["template"], blue["spec"]["template"]
    assert template["metadata"]["labels"] == {**original["metadata"]["labels"], COLOR: "green"}
    assert template["spec"]["containers"] == [{**original["spec"]["containers"][0], "image": f"{IMAGE}:1.1.0"}]
    wait_for(lambda: color_ready(driver, "green", "1.1.0"), what="green ready")
    assert served(emulator) == {("blue", f"{IMAGE}:1.0.0")}  # ready, yet no traffic before the switch
    assert driver.observe(BLUE_GREEN, [REF])[REF.id] == InstanceObservation("1.0.0", True)

    before = datetime.now(UTC).replace(microsecond=0)
    switched = perform(driver, Switch("billing", REF.id, "green"))
    assert switched.outcome == "done" and "from blue to green (1.1.0)" in switched.message
    assert selector(emulator) == {"app": "billing", COLOR: "green"}
    wait_for(lambda: served(emulator) == {("green", f"{IMAGE}:1.1.0")}, what="the green pods behind the Service")
    after = wait_for(lambda: (o := seen(driver)).serving == "green" and o)
    assert after.switched_at is not None and after.switched_at >= before and after.endpoints_ready == 2
    assert after.rollback_path("1.0.0") == "switch"  # the old color still runs: a rollback is a switch back
    wait_for(lambda: driver.observe(BLUE_GREEN, [REF])[REF.id] == InstanceObservation("1.1.0", True))
    assert perform(driver, Switch("billing", REF.id, "green")).outcome == "unchanged"

    scaled = perform(driver, Scale("billing", REF.id, "blue", 0))
    assert scaled.outcome == "done"
    assert emulator.get(emulator.resource("deployments"), REF.namespace, "billing")["spec"]["replicas"] == 0
    wait_for(lambda: seen(driver).rollback_path("1.0.0") == "scale-up")


def test_a_rollback_within_the_delay_is_one_selector_patch(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    adopt_and_stage(driver, emulator)
    wait_for(lambda: color_ready(driver, "green", "1.1.0"))
    assert perform(driver, Switch("billing", REF.id, "green")).ok
    wait_for(lambda: served(emulator) == {("green", f"{IMAGE}:1.1.0")})

    requests = sum(emulator.requests.values()) - emulator.requests["WATCH"]
    back = perform(driver, Switch("billing", REF.id, "blue"))
    assert back.outcome == "done" and "from green to blue (1.0.0)" in back.message
    assert sum(emulator.requests.values()) - emulator.requests["WATCH"] - requests == 3  # read Service, blue; patch
    wait_for(lambda: served(emulator) == {("blue", f"{IMAGE}:1.0.0")}, what="traffic back on blue")


def test_a_rollback_after_the_old_color_is_gone_redeploys_it_as_seed_002_says(kube: Fleet,
                                                                              driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    adopt_and_stage(driver, emulator)  # green 1.1.0
    wait_for(lambda: color_ready(driver, "green", "1.1.0"))
    assert perform(driver, Switch("billing", REF.id, "green")).ok
    assert perform(driver, Stage("billing", REF.id, "1.2.0", "r-2", "1.1.0")).outcome == "done"  # blue 1.2.0
    wait_for(lambda: color_ready(driver, "blue", "1.2.0"))
    assert perform(driver, Switch("billing", REF.id, "blue")).ok
    cleaned = driver.perform(BLUE_GREEN, Cleanup("billing", REF.id))
    assert isinstance(cleaned, CleanupResult)
    assert cleaned.removed == ("Deployment tenant-a/billing-green", "Service tenant-a/billing-preview")
    wait_for(lambda: "green" not in seen(driver).colors)
    assert seen(driver).rollback_path("1.1.0") == "redeploy"

    # README "Strategies", the rollback flow: scale down the new pods, deploy the previous image, wait for ready,
    # switch the selector.
    assert perform(driver, Scale("billing", REF.id, "blue", 0)).message.endswith("no ready pods until a switch")
    assert perform(driver, Stage("billing", REF.id, "1.1.0", "r-2", "1.2.0")).outcome == "done"
    green = emulator.get(emulator.resource("deployments"), REF.namespace, "billing-green")
    assert green["spec"]["replicas"] == 2  # as many as blue ran before it was scaled down
    wait_for(lambda: color_ready(driver, "green", "1.1.0"))
    assert perform(driver, Switch("billing", REF.id, "green")).outcome == "done"
    wait_for(lambda: served(emulator) == {("green", f"{IMAGE}:1.1.0")}, what="the previous version serving")


def test_a_new_color_that_never_gets_ready_never_receives_the_service(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    emulator.bad_versions["2.0.0"] = "stuck"
    adopt_and_stage(driver, emulator, "2.0.0")
    emulator.settle(6)
    refused = perform(driver, Switch("billing", REF.id, "green"))
    assert refused.outcome == "refused"
    assert refused.message.startswith("green is not ready (Deployment tenant-a/billing-green on cluster kube-canary")
    assert refused.message.endswith("the Service stays on blue")
    assert selector(emulator)[COLOR] == "blue"
    assert served(emulator) == {("blue", f"{IMAGE}:1.0.0")}


def test_a_cluster_lost_between_the_switch_and_the_scale_down(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    adopt_and_stage(driver, emulator)
    wait_for(lambda: color_ready(driver, "green", "1.1.0"))
    assert perform(driver, Switch("billing", REF.id, "green")).ok
    emulator.down()
    lost = perform(driver, Scale("billing", REF.id, "blue", 0))
    assert lost.outcome == "unreachable" and "cluster kube-canary unreachable" in lost.message
    away = wait_for(lambda: not (o := seen(driver)).reachable and o)
    assert "cluster kube-canary unreachable" in away.message
    assert not driver.observe(BLUE_GREEN, [REF])[REF.id].reachable

    emulator.up()
    assert until_done(driver, Scale("billing", REF.id, "blue", 0)).outcome == "done"
    assert perform(driver, Scale("billing", REF.id, "blue", 0)).outcome == "unchanged"
    assert perform(driver, Switch("billing", REF.id, "green")).outcome == "unchanged"
    assert emulator.get(emulator.resource("deployments"), REF.namespace, "billing")["spec"]["replicas"] == 0
    assert selector(emulator)[COLOR] == "green"


def test_nothing_is_switched_or_staged_before_the_plugin_is_adopted(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube["kube-canary"])
    for op in (Stage("billing", REF.id, "1.1.0", "r-1", "1.0.0"), Switch("billing", REF.id, "green")):
        refused = perform(driver, op)
        assert refused.outcome == "refused" and refused.message.endswith("is not adopted yet: Adopt first")
    assert driver.apply(BLUE_GREEN, []) == {}


def test_a_service_that_does_not_select_the_plugin_is_refused(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.0.0")
    emulator.add_service(REF.namespace, "billing", {"app": "payments"})
    refused = perform(driver, Adopt("billing", REF.id, "r-1"))
    assert refused.outcome == "refused"
    assert "(selector {'app': 'payments'}) does not select the pods of Deployment tenant-a/billing" in refused.message
    (error,) = driver.preflight(BLUE_GREEN, [REF])[REF.id].errors
    assert error == ("Service tenant-a/billing on cluster kube-canary (selector {'app': 'payments'}) does not select "
                     "the pods of Deployment tenant-a/billing")
    missing = driver.preflight(BLUE_GREEN, [InstanceRef("kube-canary", "tenant-b")])["kube-canary/tenant-b"]
    assert missing.errors == ("Deployment tenant-b/billing on cluster kube-canary: not found",
                              "Service tenant-b/billing on cluster kube-canary: not found")


def test_a_green_deployment_grayops_did_not_create_is_left_alone(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    emulator.add_deployment(REF.namespace, "billing-green", f"{IMAGE}:0.9.0")  # a team's own, by that name
    until_done(driver, Adopt("billing", REF.id, "r-1"))
    refused = perform(driver, Stage("billing", REF.id, "1.1.0", "r-1", "1.0.0"))
    assert refused.outcome == "refused" and "exists and is not grayops'" in refused.message
    cleaned = driver.perform(BLUE_GREEN, Cleanup("billing", REF.id))
    assert isinstance(cleaned, CleanupResult) and cleaned.removed == ()
    assert "Deployment tenant-a/billing-green kept: it is not labelled grayops.dev/managed-by: grayops" in \
        cleaned.message
    emulator.get(emulator.resource("deployments"), REF.namespace, "billing-green")  # still there


def test_apply_refuses_a_blue_green_plugin_in_place(kube: Fleet, driver: KubernetesDriver) -> None:
    from reconciler.core.effects import SetVersion

    install(kube["kube-canary"])
    errors = driver.apply(BLUE_GREEN, [SetVersion("billing", REF.id, "1.1.0", "r-1", "1.0.0")])
    assert errors[REF.id] == ("Deployment tenant-a/billing on cluster kube-canary: strategy blueGreen is changed by "
                              "Stage and Switch, not in place (README \"Strategies\")")


def test_operations_on_many_clusters_run_in_parallel_and_keep_their_order(kube: Fleet,
                                                                          driver: KubernetesDriver) -> None:
    refs = [InstanceRef(name, "tenant-a") for name in kube.emulators]
    for name in kube.emulators:
        install(kube[name])
    results = driver.perform_all(BLUE_GREEN, [Adopt("billing", r.id, "r-1") for r in refs])
    assert [r.instance for r in results] == [r.id for r in refs]
    assert {r.outcome for r in results} == {"waiting"}
    wait_for(lambda: all(isinstance(r, OperationResult) and r.ok
                         for r in driver.perform_all(BLUE_GREEN, [Adopt("billing", r.id, "r-1") for r in refs])))


def test_the_kubernetes_driver_is_a_strategy_driver(driver: KubernetesDriver) -> None:
    from reconciler.adapters.ports import StrategyDriver

    assert isinstance(driver, StrategyDriver)  # what the shell checks before it asks for a strategy
