"""The Kubernetes driver through the official client over real HTTP, against three emulated API servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.workloads import PREVIOUS_ANNOTATION, ROLLOUT_ANNOTATION
from reconciler.core.effects import InstanceObservation, SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ExecCheck, HttpCheck
from tests.conftest import wait_for
from tests.kube.emulator import Obj, Resource
from tests.kube.fleet import NAMES, Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
NAMESPACES = ("tenant-a", "tenant-b")
REFS = [InstanceRef(c, ns) for c in NAMES for ns in NAMESPACES]




def install(kube: Fleet, version: str = "1.0.0", replicas: int = 2) -> None:
    for emulator in kube.emulators.values():
        for ns in NAMESPACES:
            emulator.add_deployment(ns, "billing", f"{IMAGE}:{version}", replicas=replicas)


def changes(version: str, refs: list[InstanceRef] = REFS, previous: str = "1.0.0") -> list[SetVersion]:
    return [SetVersion("billing", r.id, version, "r-1", previous) for r in refs]


def all_ready(driver: KubernetesDriver, version: str, refs: list[InstanceRef] = REFS) -> bool:
    seen = driver.observe(plugin(), refs)
    return all(o.version == version and o.ready for o in seen.values())


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:
    d = kube.driver()
    yield d
    d.close()


def test_rolls_deployments_on_three_clusters_and_reports_readiness(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    assert all_ready(driver, "1.0.0")
    assert driver.apply(plugin(), changes("1.1.0")) == {}
    first = driver.observe(plugin(), REFS)
    assert all(o.version == "1.1.0" for o in first.values())  # the version the spec asks for, at once
    wait_for(lambda: all_ready(driver, "1.1.0"))
    for emulator in kube.emulators.values():
        deployment = emulator.get(emulator.resource("deployments"), "tenant-a", "billing")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0"
        assert deployment["metadata"]["annotations"] == {ROLLOUT_ANNOTATION: "r-1", PREVIOUS_ANNOTATION: "1.0.0"}
        assert {p[3] for p in emulator.patches} == {"grayops"}  # field manager


def test_applying_twice_changes_nothing(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    driver.apply(plugin(), changes("1.1.0"))
    patched = {name: len(e.patches) for name, e in kube.emulators.items()}
    rvs = {name: e.rv for name, e in kube.emulators.items()}
    assert driver.apply(plugin(), changes("1.1.0")) == {}
    assert {name: len(e.patches) for name, e in kube.emulators.items()} == patched
    for emulator in kube.emulators.values():
        emulator.settle()
    wait_for(lambda: all_ready(driver, "1.1.0"))
    assert all(e.rv >= rvs[n] for n, e in kube.emulators.items())


def test_progress_deadline_exceeded_fails_the_instance(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    for emulator in kube.emulators.values():
        emulator.bad_versions["2.0.0"] = "deadline"
    driver.apply(plugin(), changes("2.0.0", REFS[:1]))
    seen = wait_for(lambda: driver.observe(plugin(), REFS[:1])[REFS[0].id].failed)
    assert "ProgressDeadlineExceeded" in str(seen)


def test_stuck_rollout_is_not_ready(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    kube["kube-canary"].bad_versions["2.0.0"] = "stuck"
    driver.apply(plugin(), changes("2.0.0", REFS[:1]))
    kube["kube-canary"].settle(6)
    seen = wait_for(lambda: (o := driver.observe(plugin(), REFS[:1])[REFS[0].id]) and "pending termination" in o.message
                 and o)
    assert isinstance(seen, InstanceObservation)
    assert (seen.version, seen.ready, seen.failed) == ("2.0.0", False, None)


@pytest.mark.parametrize(("case", "expect"), [
    ("missing workload", "Deployment tenant-a/billing on cluster kube-canary: not found"),
    ("wrong container", "Deployment tenant-a/billing on cluster kube-canary: no container named 'billing' "
                        "(it has: sidecar)"),
    ("forbidden", "Deployment tenant-a/billing on cluster kube-canary: forbidden to patch: 403"),
])
def test_bad_instances_are_errors_naming_cluster_namespace_and_object(kube: Fleet, driver: KubernetesDriver,
                                                                      case: str, expect: str) -> None:
    canary = kube["kube-canary"]
    if case == "wrong container":
        canary.add_deployment("tenant-a", "billing", f"{IMAGE}:1.0.0", container="sidecar")
    elif case == "forbidden":
        canary.add_deployment("tenant-a", "billing", f"{IMAGE}:1.0.0")
        canary.forbidden.add(("patch", "deployments"))
    errors = driver.apply(plugin(), changes("1.1.0", REFS[:1]))
    assert errors[REFS[0].id].startswith(expect)
    seen = driver.observe(plugin(), REFS[:1])[REFS[0].id]
    assert seen.reachable and seen.version != "1.1.0"  # nothing changed on the cluster


def test_unknown_kube_context_is_a_clear_error_on_that_clusters_instances(kube: Fleet) -> None:
    clusters = [*kube.clusters(), KubernetesCluster(name="ghost", driver="kubernetes", kube_context="no-such-context",
                                              kubeconfig=str(kube.kubeconfig))]
    driver = KubernetesDriver(clusters)
    try:
        install(kube)
        ghost = InstanceRef("ghost", "tenant-a")
        errors = driver.apply(plugin(), changes("1.1.0", [ghost, REFS[0]]))
        assert set(errors) == {"ghost/tenant-a"}
        assert "cluster ghost: cannot use context 'no-such-context'" in errors["ghost/tenant-a"]
        seen = driver.observe(plugin(), [ghost])["ghost/tenant-a"]
        assert not seen.reachable and "no-such-context" in seen.message
        assert driver.check(plugin(), ghost, "verify", "1.1.0", []).ok is False
    finally:
        driver.close()


def test_5xx_answers_are_retried(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    driver.observe(plugin(), REFS)
    kube["kube-prod"].fail_next(2, 500)
    kube["kube-staging"].fail_next(1, 503)
    assert driver.apply(plugin(), changes("1.1.0")) == {}
    wait_for(lambda: all_ready(driver, "1.1.0"))


def test_a_server_that_keeps_failing_is_an_error_not_a_crash(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    driver.observe(plugin(), REFS)
    kube["kube-prod"].fail_next(20, 500)
    errors = driver.apply(plugin(), changes("1.1.0", [InstanceRef("kube-prod", "tenant-a")]))
    assert "kube-prod" in errors["kube-prod/tenant-a"] and "500" in errors["kube-prod/tenant-a"]


def test_a_conflict_is_re_read_and_re_applied(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    canary = kube["kube-canary"]
    deployments = canary.resource("deployments")
    original = canary.replace
    raced: list[str] = []

    def race_once(res: Resource, namespace: str, name: str, new: Obj, subresource: str = "",
                  expect_rv: str | None = None) -> Obj:
        # Another writer changes the object between grayops' read and its patch: the server answers 409.
        if expect_rv and not raced and res is deployments:
            raced.append(name)
            current = canary.get(res, namespace, name)
            current["metadata"].setdefault("labels", {})["team"] = "payments"
            original(res, namespace, name, current)
        return original(res, namespace, name, new, subresource, expect_rv)

    canary.replace = race_once  # type: ignore[method-assign]  # the emulator's own store, not the client
    assert driver.apply(plugin(), changes("1.1.0", REFS[:1])) == {}
    obj = canary.get(deployments, "tenant-a", "billing")
    assert raced and obj["metadata"]["labels"]["team"] == "payments"
    assert obj["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0"


def test_a_cluster_down_mid_rollout_is_unreachable_then_back(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    driver.apply(plugin(), changes("1.1.0", REFS[:2]))
    prod = kube["kube-prod"]
    prod.down()
    prod_refs = [r for r in REFS if r.cluster == "kube-prod"]

    def unreachable() -> bool:
        return all(not o.reachable for o in driver.observe(plugin(), prod_refs).values())

    wait_for(unreachable)
    seen = driver.observe(plugin(), REFS)
    assert "cluster kube-prod unreachable" in seen["kube-prod/tenant-a"].message
    assert seen["kube-canary/tenant-a"].reachable
    assert driver.apply(plugin(), changes("1.1.0", prod_refs)) == {}  # not an error: offline policy decides
    prod.up()
    wait_for(lambda: all(o.reachable for o in driver.observe(plugin(), prod_refs).values()))
    assert driver.apply(plugin(), changes("1.1.0", prod_refs)) == {}
    wait_for(lambda: all_ready(driver, "1.1.0", prod_refs))


def test_observing_many_instances_costs_no_request_per_instance(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    driver.observe(plugin(), REFS)
    # Reads of single objects: none (the watch caches serve them). A watch that ends and starts again on a busy
    # machine is a LIST or WATCH of the whole kind, not a request per instance, so it is not counted here.
    before = {n: e.requests["GET"] for n, e in kube.emulators.items()}
    for _ in range(20):
        driver.observe(plugin(), REFS)
    after = {n: e.requests["GET"] for n, e in kube.emulators.items()}
    assert after == before


def test_statefulset_partition_canary(kube: Fleet) -> None:
    emulator = kube["kube-canary"]
    emulator.add_statefulset("data", "redis", "redis:7.0.0", replicas=3)
    sts = plugin("redis", workload={"kind": "StatefulSet", "name": "redis", "container": "redis", "partition": 2},
                 image="redis")
    driver = kube.driver()
    ref = InstanceRef("kube-canary", "data")
    try:
        assert driver.observe(sts, [ref])[ref.id] == InstanceObservation("7.0.0", True)
        emulator.bad_versions["7.2.0"] = "stuck"
        assert driver.apply(sts, [SetVersion("redis", ref.id, "7.2.0", "r-1", "7.0.0")]) == {}
        obj = emulator.get(emulator.resource("statefulsets"), "data", "redis")
        assert obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 2  # only ordinal 2 moves first
        emulator.settle(6)
        seen = driver.observe(sts, [ref])[ref.id]
        assert not seen.ready
        status = emulator.get(emulator.resource("statefulsets"), "data", "redis")["status"]
        assert status["updatedReplicas"] == 1  # the bad version stayed on the canary ordinal
        # A good version: the canary ordinal becomes ready, grayops lowers the partition, all pods move.
        assert driver.apply(sts, [SetVersion("redis", ref.id, "7.0.1", "r-2", "7.0.0")]) == {}
        wait_for(lambda: driver.observe(sts, [ref])[ref.id] == InstanceObservation("7.0.1", True))
        obj = emulator.get(emulator.resource("statefulsets"), "data", "redis")
        assert obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"] == 0
        assert obj["status"]["currentRevision"] == obj["status"]["updateRevision"]
    finally:
        driver.close()


def test_custom_resource_version_field_and_ready_condition(kube: Fleet) -> None:
    emulator = kube["kube-canary"]
    emulator.add_resource(Resource("cache.example.com", "v1", "redisclusters", "RedisCluster"))
    res = emulator.resource("redisclusters", "cache.example.com", "v1")
    emulator.create(res, "data", {"metadata": {"name": "cache"}, "spec": {"version": "7.0.0", "shards": 3}})
    emulator.settle()
    cr = plugin("cache", workload={"kind": "RedisCluster", "name": "cache", "apiVersion": "cache.example.com/v1",
                                   "versionPath": "spec.version", "readyCondition": "Ready"}, image=None)
    driver = kube.driver()
    ref = InstanceRef("kube-canary", "data")
    try:
        assert driver.observe(cr, [ref])[ref.id] == InstanceObservation("7.0.0", True)
        assert driver.apply(cr, [SetVersion("cache", ref.id, "7.2.0", "r-1", "7.0.0")]) == {}
        wait_for(lambda: driver.observe(cr, [ref])[ref.id] == InstanceObservation("7.2.0", True))
        obj = emulator.get(res, "data", "cache")
        assert obj["spec"] == {"version": "7.2.0", "shards": 3}
        assert obj["metadata"]["annotations"][PREVIOUS_ANNOTATION] == "7.0.0"
        emulator.bad_versions["8.0.0"] = "deadline"
        driver.apply(cr, [SetVersion("cache", ref.id, "8.0.0", "r-2", "7.2.0")])
        failed = wait_for(lambda: driver.observe(cr, [ref])[ref.id].failed)
        assert "UpgradeFailed" in str(failed)
    finally:
        driver.close()


def test_http_and_exec_checks(kube: Fleet, driver: KubernetesDriver) -> None:
    install(kube)
    canary = kube["kube-canary"]
    canary.http_handler = lambda ns, service, path: (200, "ok") if path == "/health" else (404, "no")
    canary.exec_handler = lambda pod, cmd: ("PONG\n", 0) if cmd == ["redis-cli", "ping"] else ("", 127)
    ref = REFS[0]
    good: list[Check]  # the policy's checks, of any kind
    good = [HttpCheck(type="http", path="/health", port=8080), ExecCheck(type="exec", command=["redis-cli", "ping"],
                                                                          expect="PONG")]
    result = driver.check(plugin(), ref, "verify", "1.0.0", good)
    assert result.ok, result.message
    assert "answered 'PONG'" in result.message
    wrong_path = driver.check(plugin(), ref, "verify", "1.0.0", [HttpCheck(type="http", path="/nope")])
    assert not wrong_path.ok and "answered 404, expected 200" in wrong_path.message
    wrong_output = driver.check(plugin(), ref, "verify", "1.0.0",
                                [ExecCheck(type="exec", command=["redis-cli", "ping"], expect="OK")])
    assert not wrong_output.ok and "answered 'PONG', expected 'OK'" in wrong_output.message
    failing = driver.check(plugin(), ref, "verify", "1.0.0", [ExecCheck(type="exec", command=["false"])])
    assert not failing.ok and "exited 127" in failing.message
