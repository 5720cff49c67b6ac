"""The pinned digest on Kubernetes (README "Supply chain"): every instance of a gated rollout gets
`image:version@digest`, whether changed in place, staged as a blue-green color or a canary beside it, or a custom
resource with an `imagePath`, so a tag moved mid-rollout cannot swap content; grayops still reads the version."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.core.effects import InstanceObservation, SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Plugin
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    CanaryObservation,
    Color,
    Operation,
    OperationResult,
    Stage,
    Switch,
)
from tests.conftest import wait_for
from tests.kube.conftest import kube  # noqa: F401  (the emulated clusters, as the driver's tests use them)
from tests.kube.emulator import Emulator, Resource
from tests.kube.fleet import NAMES, Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
DIGEST = "sha256:" + "cd" * 32
LATER = "sha256:" + "ef" * 32
REFS = [InstanceRef(c, "tenant-a") for c in NAMES]


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:  # noqa: F811
    made = kube.driver()
    yield made
    made.close()


def test_a_pinned_digest_is_what_every_deployment_runs(kube: Fleet, driver: KubernetesDriver) -> None:  # noqa: F811
    for emulator in kube.emulators.values():
        emulator.add_deployment("tenant-a", "billing", f"{IMAGE}:1.0.0", replicas=2)
    changes = [SetVersion("billing", ref.id, "1.1.0", "r-1", "1.0.0", DIGEST) for ref in REFS]
    assert driver.apply(plugin(), changes) == {}
    for emulator in kube.emulators.values():
        deployment = emulator.get(emulator.resource("deployments"), "tenant-a", "billing")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0@{DIGEST}"
    wait_for(lambda: all(o.version == "1.1.0" and o.ready for o in driver.observe(plugin(), REFS).values()),
             what="the pinned version ready")
    assert driver.apply(plugin(), changes) == {}  # applying twice changes nothing


REF = InstanceRef("kube-canary", "tenant-a")
BLUE_GREEN = plugin(workload={"kind": "Deployment", "name": "billing", "container": "billing",
                              "strategy": "blueGreen", "service": "billing"})
CANARY = plugin(workload={"kind": "Deployment", "name": "billing", "container": "billing", "strategy": "canary",
                          "service": "billing", "traffic": {"gatewayRoute": "billing", "steps": [10, 50, 100]}})


def install(emulator: Emulator) -> None:
    emulator.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.0.0", replicas=2)
    emulator.add_service(REF.namespace, "billing", {"app": "billing"})
    emulator.add_httproute(REF.namespace, "billing", "billing")
    emulator.settle()


def perform(driver: KubernetesDriver, of: Plugin, op: Operation) -> OperationResult:
    result = driver.perform(of, op)
    assert isinstance(result, OperationResult)
    return result


def image_of(emulator: Emulator, name: str) -> str:
    found: str = emulator.get(emulator.resource("deployments"), REF.namespace, name)["spec"]["template"]["spec"][
        "containers"][0]["image"]
    return found


def adopted(driver: KubernetesDriver, of: Plugin) -> None:
    wait_for(lambda: perform(driver, of, Adopt("billing", REF.id, "r-1")).ok, what="adopted")


def color_ready(driver: KubernetesDriver, color: Color, version: str) -> bool:
    seen = driver.observe_strategy(BLUE_GREEN, [REF])[REF.id]
    assert isinstance(seen, BlueGreenObservation)
    track = seen.colors.get(color)
    return track is not None and track.ready and track.version == version


def test_each_blue_green_color_is_staged_at_the_pinned_digest(kube: Fleet, driver: KubernetesDriver) -> None:  # noqa: F811
    emulator = kube["kube-canary"]
    install(emulator)
    adopted(driver, BLUE_GREEN)
    stage = Stage("billing", REF.id, "1.1.0", "r-1", "1.0.0", DIGEST)
    assert perform(driver, BLUE_GREEN, stage).outcome == "done"
    assert image_of(emulator, "billing-green") == f"{IMAGE}:1.1.0@{DIGEST}"
    wait_for(lambda: color_ready(driver, "green", "1.1.0"), what="green ready, read as 1.1.0")
    assert perform(driver, BLUE_GREEN, stage).outcome == "unchanged"  # asking twice changes nothing
    assert perform(driver, BLUE_GREEN, Switch("billing", REF.id, "green")).outcome == "done"

    # The next change stages blue, the plugin's own Deployment, at its own pinned digest.
    assert perform(driver, BLUE_GREEN, Stage("billing", REF.id, "1.2.0", "r-2", "1.1.0", LATER)).outcome == "done"
    assert image_of(emulator, "billing") == f"{IMAGE}:1.2.0@{LATER}"
    wait_for(lambda: color_ready(driver, "blue", "1.2.0"), what="blue ready, read as 1.2.0")


def test_a_canary_is_staged_at_the_pinned_digest(kube: Fleet, driver: KubernetesDriver) -> None:  # noqa: F811
    emulator = kube["kube-canary"]
    install(emulator)
    adopted(driver, CANARY)
    assert perform(driver, CANARY, Stage("billing", REF.id, "1.1.0", "r-1", "1.0.0", DIGEST)).outcome == "done"
    assert image_of(emulator, "billing-canary") == f"{IMAGE}:1.1.0@{DIGEST}"

    def canary_ready() -> bool:
        seen = driver.observe_strategy(CANARY, [REF])[REF.id]
        assert isinstance(seen, CanaryObservation)
        return seen.canary is not None and seen.canary.ready and seen.canary.version == "1.1.0"

    wait_for(canary_ready, what="the canary ready, read as 1.1.0")


def test_a_custom_resource_gets_the_pinned_digest_in_its_image_field(kube: Fleet,  # noqa: F811
                                                                     driver: KubernetesDriver) -> None:
    emulator = kube["kube-canary"]
    emulator.add_resource(Resource("cache.example.com", "v1", "redisclusters", "RedisCluster"))
    res = emulator.resource("redisclusters", "cache.example.com", "v1")
    emulator.create(res, "data", {"metadata": {"name": "cache"},
                                  "spec": {"version": "7.0.0", "image": f"{IMAGE}:7.0.0", "shards": 3}})
    emulator.settle()
    cr = plugin("cache", image=IMAGE, workload={"kind": "RedisCluster", "name": "cache",
                                                 "apiVersion": "cache.example.com/v1", "versionPath": "spec.version",
                                                 "imagePath": "spec.image"})
    ref = InstanceRef("kube-canary", "data")
    change = SetVersion("cache", ref.id, "7.2.0", "r-1", "7.0.0", DIGEST)
    assert driver.apply(cr, [change]) == {}
    assert emulator.get(res, "data", "cache")["spec"] == {"version": "7.2.0", "image": f"{IMAGE}:7.2.0@{DIGEST}",
                                                          "shards": 3}
    wait_for(lambda: driver.observe(cr, [ref])[ref.id] == InstanceObservation("7.2.0", True), what="7.2.0 ready")
    assert driver.apply(cr, [change]) == {}  # applying twice changes nothing
    assert driver.apply(cr, [SetVersion("cache", ref.id, "7.0.0", "r-1", "7.2.0")]) == {}  # no digest: the tag
    assert emulator.get(res, "data", "cache")["spec"]["image"] == f"{IMAGE}:7.0.0"


def test_image_path_is_for_custom_resources_only() -> None:
    with pytest.raises(ValidationError, match="imagePath is for custom resources"):
        plugin(workload={"kind": "Deployment", "name": "billing", "imagePath": "spec.image"})

