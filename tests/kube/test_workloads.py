"""Readiness and patches of workloads, by table: pure functions over the API's JSON."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.adapters.kube.workloads import image_tag, patch_for, plural_of, read_custom, read_statefulset
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
