"""Traffic canaries through the official client against emulated API servers: a canary Deployment and Service
beside the stable ones, the Gateway API HTTPRoute's backendRef weights moved step by step, promotion, rollback."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.strategies import MANAGED_BY, TRACK
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.strategy import (
    Adopt,
    CanaryObservation,
    Cleanup,
    CleanupResult,
    Operation,
    OperationResult,
    SetWeight,
    Stage,
)
from tests.conftest import wait_for
from tests.kube.emulator import Emulator, Obj, Resource
from tests.kube.fleet import Fleet, clusters_for, plugin

IMAGE = "registry.example.com/plugins/billing"
REF = InstanceRef("kube-canary", "tenant-a")
CANARY = plugin(workload={"kind": "Deployment", "name": "billing", "container": "billing", "strategy": "canary",
                          "service": "billing", "traffic": {"gatewayRoute": "billing", "steps": [10, 50, 100]}})


def install(emulator: Emulator, route_to: str = "billing") -> None:
    emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.0.0", replicas=2)
    emulator.add_service(REF.namespace, "billing", {"app": "billing"})
    emulator.add_httproute(REF.namespace, "billing", route_to)
    emulator.settle()


def perform(driver: KubernetesDriver, op: Operation) -> OperationResult:
    result = driver.perform(CANARY, op)
    assert isinstance(result, OperationResult)
    return result


def seen(driver: KubernetesDriver) -> CanaryObservation:
    found = driver.observe_strategy(CANARY, [REF])[REF.id]
    assert isinstance(found, CanaryObservation)
    return found


def weight_seen(driver: KubernetesDriver, weight: int) -> bool:
    return seen(driver).weight == weight


def staged(driver: KubernetesDriver, emulator: Emulator, version: str = "1.1.0") -> None:
    wait_for(lambda: perform(driver, Adopt("billing", REF.id, "r-1")).ok, what="adopted")
    assert perform(driver, Stage("billing", REF.id, version, "r-1", "1.0.0")).outcome == "done"


def tracks(emulator: Emulator, service: str) -> set[tuple[str, str]]:
    return {(p["metadata"]["labels"].get(TRACK, "-"), p["spec"]["containers"][0]["image"])
            for p in emulator.serving(REF.namespace, service)}


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:
    d = kube.driver()
    yield d
    d.close()


def test_weights_move_step_by_step_then_promotion_takes_everything_back(kube: Fleet,
                                                                       driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    assert seen(driver).adopted is False and seen(driver).stable_weight == 1
    staged(driver, emulator)
    canary = emulator.get(emulator.resource("deployments"), REF.namespace, "billing-canary")
    assert canary["metadata"]["labels"][MANAGED_BY] == "grayops" and canary["spec"]["replicas"] == 2
    service = emulator.get(emulator.resource("services", "", "v1"), REF.namespace, "billing-canary")
    assert service["spec"]["selector"] == {"app": "billing", TRACK: "canary"}
    wait_for(lambda: (c := seen(driver).canary) is not None and c.ready and c.version == "1.1.0", what="canary ready")
    # The stable Service never sends to the canary's pods, even though they share app=billing.
    wait_for(lambda: tracks(emulator, "billing") == {("stable", f"{IMAGE}:1.0.0")})
    wait_for(lambda: tracks(emulator, "billing-canary") == {("canary", f"{IMAGE}:1.1.0")},
             what="the canary's pods behind its Service")  # their endpoints may trail the Deployment on a busy machine

    for step in (10, 50, 100):
        assert perform(driver, SetWeight("billing", REF.id, step)).outcome == "done"
        assert emulator.route_weights(REF.namespace, "billing") == {"billing": 100 - step, "billing-canary": step}
        wait_for(partial(weight_seen, driver, step), what=f"weight {step} observed")
        assert perform(driver, SetWeight("billing", REF.id, step)).outcome == "unchanged"

    # Promotion: the stable Deployment takes the version in place, then all traffic goes back to it.
    assert driver.apply(CANARY, [SetVersion("billing", REF.id, "1.1.0", "r-1", "1.0.0")]) == {}
    wait_for(lambda: (s := seen(driver).stable) is not None and s.ready and s.version == "1.1.0", what="promoted")
    assert perform(driver, SetWeight("billing", REF.id, 0)).outcome == "done"
    assert emulator.route_weights(REF.namespace, "billing") == {"billing": 100, "billing-canary": 0}
    cleaned = driver.perform(CANARY, Cleanup("billing", REF.id))
    assert isinstance(cleaned, CleanupResult)
    assert cleaned.removed == ("Deployment tenant-a/billing-canary", "Service tenant-a/billing-canary"), cleaned
    assert emulator.route_weights(REF.namespace, "billing") == {"billing": 1}  # as the team wrote it
    assert wait_for(lambda: (o := seen(driver)).canary is None and o).version == "1.1.0"


def test_a_rollback_takes_all_traffic_back_at_once(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    staged(driver, emulator)
    wait_for(lambda: (c := seen(driver).canary) is not None and c.ready)
    assert perform(driver, SetWeight("billing", REF.id, 50)).ok
    patches = len(emulator.patches)
    assert perform(driver, SetWeight("billing", REF.id, 0)).outcome == "done"
    assert len(emulator.patches) == patches + 1  # one patch of the route, from 50 to 0
    assert emulator.route_weights(REF.namespace, "billing") == {"billing": 100, "billing-canary": 0}


def test_a_canary_that_is_not_ready_gets_no_traffic(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    emulator.bad_versions["2.0.0"] = "stuck"
    staged(driver, emulator, "2.0.0")
    emulator.settle(6)
    refused = perform(driver, SetWeight("billing", REF.id, 10))
    assert refused.outcome == "refused"
    assert refused.message.startswith("the canary tenant-a/billing-canary is not ready (Deployment tenant-a/"
                                      "billing-canary on cluster kube-canary: 0 of 2 updated replicas available)")
    assert emulator.route_weights(REF.namespace, "billing") == {"billing": 1}
    refused_cleanup = driver.perform(CANARY, Cleanup("billing", REF.id))
    assert isinstance(refused_cleanup, CleanupResult) and refused_cleanup.removed == (
        "Deployment tenant-a/billing-canary", "Service tenant-a/billing-canary")  # no weight: nothing to wait for


def test_cleanup_refuses_while_the_canary_takes_traffic(kube: Fleet, driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator)
    staged(driver, emulator)
    wait_for(lambda: (c := seen(driver).canary) is not None and c.ready)
    assert perform(driver, SetWeight("billing", REF.id, 10)).ok
    cleaned = driver.perform(CANARY, Cleanup("billing", REF.id))
    assert isinstance(cleaned, CleanupResult) and cleaned.outcome == "refused" and cleaned.removed == ()
    assert cleaned.message.startswith("the canary still receives weight 10 in HTTPRoute tenant-a/billing")
    emulator.get(emulator.resource("deployments"), REF.namespace, "billing-canary")  # still there


def test_a_route_that_does_not_send_to_the_stable_service_is_a_preflight_error(kube: Fleet,
                                                                              driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    install(emulator, route_to="checkout")
    expected = ("HTTPRoute tenant-a/billing on cluster kube-canary does not reference Service tenant-a/billing: "
                "grayops moves traffic between a backendRef to billing and one to billing-canary, so the route must "
                "send to billing")
    assert driver.preflight(CANARY, [REF])[REF.id].errors == (expected,)
    staged(driver, emulator)
    wait_for(lambda: (c := seen(driver).canary) is not None and c.ready)
    assert perform(driver, SetWeight("billing", REF.id, 10)).message == expected
    assert seen(driver).stable_weight is None


def test_a_cluster_without_the_gateway_api(tmp_path: Path) -> None:
    emulator = Emulator("no-gateway", gateway_api=False).start()
    try:
        emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.0.0")
        emulator.add_service(REF.namespace, "billing", {"app": "billing"})
        driver = KubernetesDriver(clusters_for([emulator], tmp_path))
        ref = InstanceRef("no-gateway", "tenant-a")
        try:
            found = driver.observe_strategy(CANARY, [ref])[ref.id]
            assert found.reachable and found.message == (
                "cluster no-gateway serves no HTTPRoute (gateway.networking.k8s.io/v1): install the Gateway API to "
                "use strategy canary")
            (error,) = driver.preflight(CANARY, [ref])[ref.id].errors
            assert error.startswith("HTTPRoute tenant-a/billing on cluster no-gateway: not found (is the Gateway API")
        finally:
            driver.close()
    finally:
        emulator.stop()


def test_a_route_written_by_its_gateway_controller_meanwhile_is_re_read(kube: Fleet,
                                                                         driver: KubernetesDriver) -> None:
    """The Gateway controller writes the route's status between grayops' read and its patch: the server answers
    409 to the stale resourceVersion, and grayops reads again and patches again."""
    emulator = kube["kube-canary"]
    install(emulator)
    staged(driver, emulator)
    wait_for(lambda: (c := seen(driver).canary) is not None and c.ready)
    assert perform(driver, SetWeight("billing", REF.id, 10)).ok
    routes = emulator.resource("httproutes", "gateway.networking.k8s.io", "v1")
    original = emulator.replace
    armed: list[str] = []  # the next write to the route races with the controller once
    raced: list[str] = []

    def status_first(res: Resource, namespace: str, name: str, new: Obj, subresource: str = "",
                     expect_rv: str | None = None) -> Obj:
        if res is routes and expect_rv and armed:
            raced.append(armed.pop())
            current = emulator.get(res, namespace, name)
            current["status"]["parents"][0]["conditions"][0]["message"] = f"reconciled {len(raced)}"
            original(res, namespace, name, current, "status")
        return original(res, namespace, name, new, subresource, expect_rv)

    emulator.replace = status_first  # type: ignore[method-assign]  # the emulator's own store, not the client
    armed.append("SetWeight")
    assert perform(driver, SetWeight("billing", REF.id, 0)).outcome == "done"
    armed.append("Cleanup")
    cleaned = driver.perform(CANARY, Cleanup("billing", REF.id))
    assert isinstance(cleaned, CleanupResult) and cleaned.outcome == "done", cleaned
    assert raced == ["SetWeight", "Cleanup"]  # one stale write each, re-read and re-applied
    assert emulator.route_weights(REF.namespace, "billing") == {"billing": 1}
