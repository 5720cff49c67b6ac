"""Readiness and patches of workloads, by table: pure functions over the API's JSON."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.adapters.kube.strategies import COLOR, MANAGED_BY, beside, route_weights, unroute_patch, weights_patch
from reconciler.adapters.kube.workloads import (
    image_tag,
    merge_diff,
    partition_steps,
    patch_for,
    plural_of,
    read_custom,
    read_statefulset,
)
from reconciler.core.spec import Workload

STS = Workload(kind="StatefulSet", name="redis", container="redis")
CR = Workload(kind="RedisCluster", name="cache", api_version="cache.example.com/v1",
              version_path="$.spec.redis.version", ready_condition="Available")


def sts(partition: int = 0, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "redis", "generation": 2, "resourceVersion": "7"},
            "spec": {"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                                                       "rollingUpdate": {"partition": partition}},
                     "template": {"spec": {"containers": [{"name": "redis", "image": "redis:7.2.0"}]}}},
            "status": {"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 3, "currentRevision": "a",
                       "updateRevision": "a", **status}}


@pytest.mark.parametrize(("name", "obj", "ready", "message"), [
    ("complete", sts(), True, ""),
    ("spec not observed", sts(observedGeneration=1), False, "spec update to be observed"),
    ("pods not ready", sts(readyReplicas=2), False, "2 of 3 pods ready"),
    ("canary ordinals moving", sts(2, updatedReplicas=0, updateRevision="b"), False, "0 of 1 new pods"),
    ("canary ordinals done", sts(2, updatedReplicas=1, updateRevision="b"), False, "partitioned roll-out done"),
    ("rolling the rest", sts(0, updatedReplicas=2, updateRevision="b"), False, "2 of 3 pods updated"),
])
def test_statefulset_readiness(name: str, obj: dict[str, Any], ready: bool, message: str) -> None:
    reading = read_statefulset(obj, STS)
    assert reading.version == "7.2.0" and reading.ready is ready and message in reading.message


def cr(conditions: list[dict[str, str]], observed: int = 3) -> dict[str, Any]:
    return {"metadata": {"name": "cache", "generation": 3, "resourceVersion": "9"},
            "spec": {"redis": {"version": "7.2.0"}}, "status": {"observedGeneration": observed,
                                                                "conditions": conditions}}


@pytest.mark.parametrize(("name", "obj", "ready", "failed"), [
    ("available", cr([{"type": "Available", "status": "True"}]), True, False),
    ("not observed", cr([{"type": "Available", "status": "True"}], observed=2), False, False),
    ("no condition", cr([]), False, False),
    ("progressing", cr([{"type": "Available", "status": "False", "reason": "Upgrading"}]), False, False),
    ("failed", cr([{"type": "Available", "status": "False", "reason": "UpgradeFailed"}]), False, True),
])
def test_custom_resource_readiness(name: str, obj: dict[str, Any], ready: bool, failed: bool) -> None:
    reading = read_custom(obj, CR)
    assert (reading.version, reading.ready, reading.failed is not None) == ("7.2.0", ready, failed)


@pytest.mark.parametrize(("image", "tag"), [
    ("redis:7.2.0", "7.2.0"), ("registry:5000/team/app:1.2", "1.2"), ("registry:5000/team/app", None),
    ("app@sha256:abc", None), ("app:1.0@sha256:abc", "1.0"),
])
def test_image_tags(image: str, tag: str | None) -> None:
    assert image_tag(image) == tag


def test_plurals() -> None:
    assert [plural_of(k) for k in ("RedisCluster", "Redis", "Policy", "Gateway")] == [
        "redisclusters", "redises", "policies", "gateways"]


def test_patches_are_built_only_when_something_changes() -> None:
    obj = sts()
    assert patch_for(obj, STS, None, "7.2.0", "r-1", None) is not None  # annotations missing
    obj["metadata"]["annotations"] = {"grayops.dev/rollout": "r-1"}
    assert patch_for(obj, STS, None, "7.2.0", "r-1", None) is None
    patch = patch_for(obj, STS, "mirror.example.com/redis", "7.4.0", "r-2", "7.2.0")
    assert patch is not None
    assert patch["spec"]["template"]["spec"]["containers"] == [{"name": "redis", "image":
                                                                "mirror.example.com/redis:7.4.0"}]
    assert patch["metadata"]["resourceVersion"] == "7"  # a stale write is refused with 409, never lost
    custom = patch_for(cr([]), CR, None, "7.4.0", "r-2", "7.2.0")
    assert custom is not None and custom["spec"] == {"redis": {"version": "7.4.0"}}


# --- strategies' objects, by table ---------------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "replicas", "partitions"), [
    (("75%", "50%", 0), 4, (3, 2, 0)),
    (("75%", "50%", 0), 3, (2, 1, 0)),  # 2.25 and 1.5 round down: at least the share moves
    (("75%", "50%", 0), 1, (0,)),  # steps landing on the same partition are one step
    ((5, 2, 0), 3, (3, 2, 0)),  # a count above the replicas holds every pod back
    (("0%",), 4, (0,)),
])
def test_partition_steps_of_a_statefulset(steps: tuple[int | str, ...], replicas: int,
                                          partitions: tuple[int, ...]) -> None:
    assert partition_steps(steps, replicas) == partitions


@pytest.mark.parametrize(("current", "wanted", "patch"), [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 2}}, {"b": {"d": None}}),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, {}, {"type": None, "rollingUpdate": None}),
    ({"a": [1, 2]}, {"a": [1]}, {"a": [1]}),
    ({"a": 1}, {"a": 1}, {}),
])
def test_merge_diff_turns_one_document_into_the_other(current: dict[str, Any], wanted: dict[str, Any],
                                                       patch: dict[str, Any]) -> None:
    from tests.kube.emulator import merge_patch

    assert merge_diff(current, wanted) == patch
    assert merge_patch(current, patch) == wanted


def route(*rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "shop", "resourceVersion": "4"},
            "spec": {"rules": [{"backendRefs": refs} for refs in rules]}}


def test_weights_move_on_every_rule_that_sends_to_the_stable_service_and_come_back() -> None:
    from tests.kube.emulator import merge_patch

    original = route([{"name": "billing", "port": 8080}], [{"name": "static", "port": 80}],
                     [{"name": "billing", "port": 9090, "weight": 3}])
    moved = weights_patch(original, "billing", "billing-canary", 10)
    assert moved is not None
    at_10 = merge_patch(original, moved)
    assert [r["backendRefs"] for r in at_10["spec"]["rules"]] == [
        [{"name": "billing", "port": 8080, "weight": 90}, {"name": "billing-canary", "port": 8080, "weight": 10}],
        [{"name": "static", "port": 80}],
        [{"name": "billing", "port": 9090, "weight": 90}, {"name": "billing-canary", "port": 9090, "weight": 10}]]
    assert route_weights(at_10, "billing", "billing-canary") == (90, 10)
    assert weights_patch(at_10, "billing", "billing-canary", 10) is None
    at_0 = merge_patch(at_10, weights_patch(at_10, "billing", "billing-canary", 0))
    assert route_weights(at_0, "billing", "billing-canary") == (100, 0)
    back = unroute_patch(at_0, "billing", "billing-canary")
    assert back is not None
    restored = merge_patch(at_0, back)
    assert restored["spec"] == original["spec"]  # as the team wrote it, weights and all
    assert "grayops.dev/original-backends" not in restored["metadata"].get("annotations", {})
    assert weights_patch(original, "billing", "billing-canary", 0) is None  # no canary yet: nothing to take back


def test_a_backend_ref_to_another_namespace_or_kind_is_not_the_stable_service() -> None:
    elsewhere = route([{"name": "billing", "namespace": "payments", "port": 8080}])
    other_kind = route([{"name": "billing", "kind": "ServiceImport", "group": "multicluster.x-k8s.io"}])
    assert route_weights(elsewhere, "billing", "billing-canary") == (None, 0)
    assert route_weights(other_kind, "billing", "billing-canary") == (None, 0)
    assert route_weights(route([{"name": "billing", "namespace": "shop"}]), "billing", "billing-canary") == (1, 0)


def test_a_deployment_beside_the_plugins_own_is_its_copy_with_a_label_and_the_image() -> None:
    origin: dict[str, Any]  # a Deployment as the API returns it
    origin = {"metadata": {"name": "billing", "namespace": "shop", "labels": {"team": "pay"}},
              "spec": {"replicas": 3, "paused": True, "selector": {"matchLabels": {"app": "billing"}},
                       "template": {"metadata": {"labels": {"app": "billing", COLOR: "blue"}},
                                    "spec": {"containers": [{"name": "billing", "image": "r/billing:1.0",
                                                             "env": [{"name": "A", "value": "1"}]}]}}}}
    made = beside(origin, "billing-green", (COLOR, "green"), Workload(name="billing", container="billing"), None,
                  "1.1", 3, "r-1", "1.0", "billing")
    assert made["metadata"]["labels"] == {"team": "pay", MANAGED_BY: "grayops", "grayops.dev/plugin": "billing",
                                          COLOR: "green"}
    assert made["spec"]["selector"] == {"matchLabels": {"app": "billing", COLOR: "green"}}
    assert made["spec"]["template"]["metadata"]["labels"] == {"app": "billing", COLOR: "green"}
    assert made["spec"]["template"]["spec"]["containers"] == [
        {"name": "billing", "image": "r/billing:1.1", "env": [{"name": "A", "value": "1"}]}]
    assert "paused" not in made["spec"] and origin["spec"]["template"]["metadata"]["labels"][COLOR] == "blue"
