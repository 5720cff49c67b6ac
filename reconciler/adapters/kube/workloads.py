"""What a workload reports and how it is changed: pure functions over the API's JSON objects.

Readiness follows `kubectl rollout status` (its DeploymentStatusViewer and StatefulSetStatusViewer) so that our
verdict and kubectl's agree; a custom resource is ready when its status has caught up with its generation and its
ready condition is True. Patches carry the grayops annotations and are built only when something must change, so
applying the same version twice sends nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from reconciler.core.spec import Workload
from reconciler.core.strategy import Knobs

Obj = dict[str, Any]
ROLLOUT_ANNOTATION = "grayops.dev/rollout"
PREVIOUS_ANNOTATION = "grayops.dev/previous-version"
ORIGINAL_STRATEGY_ANNOTATION = "grayops.dev/original-strategy"  # a Deployment's spec.strategy before the knobs
PARTITION_STEPS_ANNOTATION = "grayops.dev/partition-steps"  # "2,1,0": the caller lowers the partition, not observe
FIELD_MANAGER = "grayops"


@dataclass(frozen=True)
class Kind:
    """Where a workload kind lives in the API."""

    group: str
    version: str
    plural: str
    kind: str

    @property
    def builtin(self) -> bool:
        return self.group == "apps"


DEPLOYMENT = Kind("apps", "v1", "deployments", "Deployment")
STATEFULSET = Kind("apps", "v1", "statefulsets", "StatefulSet")


def plural_of(kind: str) -> str:
    """The resource name of a kind, as the API's default pluralisation makes it (Redis -> redises)."""
    lower = kind.lower()
    if lower.endswith(("s", "x", "z", "ch", "sh")):
        return lower + "es"
    if lower.endswith("y") and lower[-2:-1] not in "aeiou":
        return lower[:-1] + "ies"
    return lower + "s"


def kind_of(workload: Workload) -> Kind:
    if workload.kind == "Deployment" and not workload.api_version:
        return DEPLOYMENT
    if workload.kind == "StatefulSet" and not workload.api_version:
        return STATEFULSET
    api_version = workload.api_version or ""
    group, _, version = api_version.rpartition("/")
    return Kind(group, version, workload.plural or plural_of(workload.kind), workload.kind)


def describe(workload: Workload, namespace: str, cluster: str) -> str:
    return f"{workload.kind} {namespace}/{workload.name} on cluster {cluster}"


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reading:
    version: str | None
    ready: bool
    failed: str | None = None
    message: str = ""


def image_tag(image: str) -> str | None:
    """The tag of an image reference (registry:5000/a/b:1.2 -> 1.2); None when it has none or a digest only."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def containers(obj: Obj) -> list[Obj]:
    found: list[Obj] = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
    return found


def container_of(obj: Obj, workload: Workload) -> Obj | None:
    """The named container, or the only one when the workload names none."""
    found = containers(obj)
    if workload.container is None:
        return found[0] if len(found) == 1 else None
    return next((c for c in found if c.get("name") == workload.container), None)


def container_error(obj: Obj, workload: Workload, where: str) -> str:
    names = ", ".join(str(c.get("name")) for c in containers(obj)) or "none"
    if workload.container is None:
        return f"{where}: has {len(containers(obj))} containers ({names}); name one in the plugin's workload.container"
    return f"{where}: no container named {workload.container!r} (it has: {names})"


def field_path(path: str) -> list[str]:
    """`spec.version`, `.spec.version` or `$.spec.version` -> ["spec", "version"]."""
    return [p for p in path.removeprefix("$").split(".") if p]


def get_path(obj: Obj, path: list[str]) -> Any:
    node: Any = obj
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def read(obj: Obj, workload: Workload) -> Reading:
    kind = kind_of(workload)
    if kind == DEPLOYMENT:
        return read_deployment(obj, workload)
    if kind == STATEFULSET:
        return read_statefulset(obj, workload)
    return read_custom(obj, workload)


def _version(obj: Obj, workload: Workload) -> str | None:
    container = container_of(obj, workload)
    return image_tag(str(container.get("image", ""))) if container else None


def read_deployment(obj: Obj, workload: Workload) -> Reading:
    """kubectl's DeploymentStatusViewer: observedGeneration caught up, all updated, none old left, all available."""
    version = _version(obj, workload)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if obj["metadata"].get("generation", 0) > status.get("observedGeneration", 0):
        return Reading(version, False, message="waiting for the deployment spec update to be observed")
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return Reading(version, False, failed=f"ProgressDeadlineExceeded: {cond.get('message', '')}".strip())
    replicas = spec.get("replicas", 1)
    updated = status.get("updatedReplicas", 0)
    if updated < replicas:
        return Reading(version, False, message=f"{updated} of {replicas} new replicas updated")
    if status.get("replicas", 0) > updated:
        return Reading(version, False, message=f"{status.get('replicas', 0) - updated} old replicas pending "
                                               "termination")
    available = status.get("availableReplicas", 0)
    if available < updated:
        return Reading(version, False, message=f"{available} of {updated} updated replicas available")
    return Reading(version, True)


def partition_of(obj: Obj) -> int:
    rolling = ((obj.get("spec") or {}).get("updateStrategy") or {}).get("rollingUpdate") or {}
    return int(rolling.get("partition") or 0)


def read_statefulset(obj: Obj, workload: Workload) -> Reading:
    """kubectl's StatefulSetStatusViewer; a partitioned roll-out is not ready until its partition reaches 0."""
    version = _version(obj, workload)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if (spec.get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
        return Reading(version, False, failed="updateStrategy is not RollingUpdate: pods would never be replaced")
    if not status.get("observedGeneration") or obj["metadata"].get("generation", 0) > status["observedGeneration"]:
        return Reading(version, False, message="waiting for the statefulset spec update to be observed")
    replicas = spec.get("replicas", 1)
    if status.get("readyReplicas", 0) < replicas:
        return Reading(version, False, message=f"{status.get('readyReplicas', 0)} of {replicas} pods ready")
    partition = partition_of(obj)
    if partition > 0:
        updated = status.get("updatedReplicas", 0)
        if updated < replicas - partition:
            return Reading(version, False, message=f"partitioned roll-out: {updated} of {replicas - partition} "
                                                   "new pods updated")
        return Reading(version, False, message=f"partitioned roll-out done for ordinals >= {partition}")
    if status.get("updateRevision") != status.get("currentRevision"):
        return Reading(version, False, message=f"rolling update to revision {status.get('updateRevision')}: "
                                               f"{status.get('updatedReplicas', 0)} of {replicas} pods updated")
    return Reading(version, True)


def canary_done(obj: Obj) -> bool:
    """A partitioned StatefulSet whose ordinals >= partition are updated and ready: lower it to continue."""
    reading = read_statefulset(obj, Workload(kind="StatefulSet", name="x"))
    return partition_of(obj) > 0 and reading.message.startswith("partitioned roll-out done")


def read_custom(obj: Obj, workload: Workload) -> Reading:
    value = get_path(obj, field_path(workload.version_path or "spec.version"))
    version = None if value is None else str(value)
    status = obj.get("status") or {}
    if "observedGeneration" in status and obj["metadata"].get("generation", 0) > status["observedGeneration"]:
        return Reading(version, False, message="waiting for the operator to observe the change")
    wanted = workload.ready_condition or "Ready"
    cond = next((c for c in status.get("conditions") or [] if c.get("type") == wanted), None)
    if cond is None:
        return Reading(version, False, message=f"no {wanted} condition yet")
    if cond.get("status") == "True":
        return Reading(version, True)
    reason = str(cond.get("reason") or "")
    why = f"{wanted} is {cond.get('status')}: {reason} {cond.get('message', '')}".strip()
    if reason.endswith(("Failed", "Failure", "Error")):
        return Reading(version, False, failed=why)
    return Reading(version, False, message=why)


# --- changing ---------------------------------------------------------------------------------------------------


def annotations_of(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj.get("metadata", {}).get("annotations") or {}
    return found


def tag_of(version: str, digest: str | None) -> str:
    """What follows the image's name: `version`, or `version@digest` when the artifact gate pinned a digest for it
    (README "Supply chain"), so that a moved tag cannot swap content; `image_tag` still reads `version` from it."""
    return f"{version}@{digest}" if digest else version


def image_of(container: Obj, image: str | None, version: str) -> str:
    """`<image>:<version>`, the image being the plugin's or else the container's own without its tag."""
    base = image or str(container.get("image", "")).split("@", 1)[0].rsplit(":", 1)[0]
    if not base:
        raise ValueError("the plugin names no image and the container has none")
    return f"{base}:{version}"


def patch_for(obj: Obj, workload: Workload, image: str | None, version: str, rollout: str,
              previous: str | None, knobs: Knobs | None = None, digest: str | None = None) -> Obj | None:
    """The patch that makes `obj` ask for `version` (None when it already does, with the same annotations), with
    the policy's knobs: a Deployment's RollingUpdate maxSurge / maxUnavailable (the original kept in an
    annotation), a StatefulSet's first partition step. The image reference it writes (a container's, a custom
    resource's `imagePath`) carries `digest` when one is pinned.

    Raises ValueError with a readable reason when the object cannot be changed (no such container, no image).
    """
    notes: dict[str, str | None] = {ROLLOUT_ANNOTATION: rollout}
    if previous is not None:
        notes[PREVIOUS_ANNOTATION] = previous
    kind = kind_of(workload)
    knobs = knobs or Knobs()
    if kind.builtin:
        container = container_of(obj, workload)
        if container is None:
            raise ValueError("container")
        new_image = image_of(container, image, tag_of(version, digest))
        spec: Obj = {}
        if container.get("image") != new_image:
            spec = {"template": {"spec": {"containers": [{"name": container["name"], "image": new_image}]}}}
        if kind == STATEFULSET:
            steps = partition_steps(knobs.partition_steps, replicas_of(obj))
            start = steps[0] if steps else workload.partition or 0
            notes[PARTITION_STEPS_ANNOTATION] = ",".join(map(str, steps)) if steps else None
            if spec or partition_of(obj) > start:
                spec["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": start}}
        else:
            strategy, original = surge_patch(obj, knobs)
            if strategy:
                spec["strategy"] = strategy
            if original is not None:
                notes[ORIGINAL_STRATEGY_ANNOTATION] = original
    else:
        spec = _custom_spec(obj, workload, image, version, digest)
    if not spec and all(annotations_of(obj).get(k) == v for k, v in notes.items()):
        return None
    patch: Obj = {"metadata": {"annotations": notes, "resourceVersion": obj["metadata"]["resourceVersion"]}}
    if spec:
        patch["spec"] = spec
    return patch


def _custom_spec(obj: Obj, workload: Workload, image: str | None, version: str, digest: str | None) -> Obj:
    """A custom resource's spec patch: the version at `versionPath` and, with `imagePath`, the image reference
    there (README "Supply chain": the only place a custom resource can carry the pinned digest)."""
    wanted = [("versionPath", workload.version_path or "spec.version", version)]
    if workload.image_path:
        current = get_path(obj, field_path(workload.image_path))
        reference = image_of({"image": current if isinstance(current, str) else ""}, image, tag_of(version, digest))
        wanted.append(("imagePath", workload.image_path, reference))
    spec: Obj = {}
    for name, text, value in wanted:
        path = field_path(text)
        if path[:1] != ["spec"] or len(path) < 2:
            raise ValueError(f"{name} {text!r} must point inside spec")
        if get_path(obj, path) != value:
            node = spec
            for part in path[1:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
    return spec


def replicas_of(obj: Obj) -> int:
    return int((obj.get("spec") or {}).get("replicas", 1))


def partition_steps(steps: tuple[int | str, ...], replicas: int) -> tuple[int, ...]:
    """The policy's partition steps as partitions of this StatefulSet: "75%" of 4 replicas is 3 (the 4th pod moves
    first), counts above the replicas are the replicas; steps that land on the same partition are one step."""
    resolved: list[int] = []
    for step in steps:
        value = math.floor(replicas * float(step.rstrip("%")) / 100) if isinstance(step, str) else min(step, replicas)
        if not resolved or value < resolved[-1]:
            resolved.append(value)
    return tuple(resolved)


def surge_patch(obj: Obj, knobs: Knobs) -> tuple[Obj, str | None]:
    """The Deployment strategy the knobs ask for (empty when it has them already), and the original strategy to
    remember (None when it is remembered already, or nothing changes)."""
    wanted = {k: v for k, v in (("maxSurge", knobs.max_surge), ("maxUnavailable", knobs.max_unavailable))
              if v is not None}
    current = (obj.get("spec") or {}).get("strategy") or {}
    rolling = current.get("rollingUpdate") or {}
    if not wanted or (current.get("type", "RollingUpdate") == "RollingUpdate"
                      and all(rolling.get(k) == v for k, v in wanted.items())):
        return {}, None
    remembered = ORIGINAL_STRATEGY_ANNOTATION in annotations_of(obj)
    return ({"type": "RollingUpdate", "rollingUpdate": wanted},
            None if remembered else json.dumps(current, sort_keys=True))


def restore_patch(obj: Obj) -> Obj | None:
    """A merge patch that puts back the strategy the knobs replaced and forgets it; None when none was replaced."""
    text = annotations_of(obj).get(ORIGINAL_STRATEGY_ANNOTATION)
    if text is None:
        return None
    try:
        original = json.loads(text)
    except ValueError:
        original = {}
    current = (obj.get("spec") or {}).get("strategy") or {}
    return {"metadata": {"annotations": {ORIGINAL_STRATEGY_ANNOTATION: None},
                         "resourceVersion": obj["metadata"]["resourceVersion"]},
            "spec": {"strategy": merge_diff(current, original if isinstance(original, dict) else {})}}


def merge_diff(current: Any, wanted: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `current` into `wanted`."""
    if not isinstance(current, dict) or not isinstance(wanted, dict):
        return wanted
    patch: Obj = {k: None for k in current if k not in wanted}
    for key, value in wanted.items():
        if current.get(key) != value:
            patch[key] = merge_diff(current.get(key), value)
    return patch


def partition_patch(obj: Obj, partition: int) -> Obj:
    return {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "spec": {"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}}}
