"""The strategy operations on one instance (README "Strategies"): each one reads what it changes afresh, makes one
idempotent change (a 409 is re-read and re-applied), and answers an `OperationResult`; none raises. A cluster that
does not answer is the outcome "unreachable": the same operation, asked again once it is back, finishes the job
or finds it done ("unchanged").

`observe` builds the `StrategyObservation`s from the driver's list+watch caches (no request per instance), and
`preflight` checks, by reading them, that the objects a strategy needs exist and fit together.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import checks as kube_checks
from reconciler.adapters.kube import smoke as kube_smoke
from reconciler.adapters.kube import strategies as st
from reconciler.adapters.kube import workloads as wl
from reconciler.adapters.kube.cache import Informer
from reconciler.adapters.kube.client import ClusterAccessError, ClusterApi, ClusterUnreachable, call_json, describe
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ExecCheck, HttpCheck, Plugin, Workload
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    CanaryObservation,
    Cleanup,
    CleanupResult,
    Color,
    OperationResult,
    Outcome,
    PartitionObservation,
    RestoreKnobs,
    RunSmoke,
    Scale,
    SetPartition,
    SetWeight,
    SmokeResult,
    Stage,
    StrategyObservation,
    Switch,
    Track,
    other,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SERVICES = wl.Kind("", "v1", "services", "Service")
ENDPOINTS = wl.Kind("", "v1", "endpoints", "Endpoints")
HTTPROUTE = wl.Kind(st.GATEWAY_GROUP, st.GATEWAY_VERSION, st.HTTPROUTES, "HTTPRoute")
CONFLICT_RETRIES = 3
MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"


class Refused(Exception):
    """The operation would break the instance, or lacks what it needs: the outcome "refused", with this reason."""


class Waiting(Exception):
    """A first part was made; the cluster must catch up before the rest: the outcome "waiting"."""


@dataclass
class Instance:
    """One instance as an operation sees it: its cluster's client, the plugin's workload, where it is."""

    api: ClusterApi
    plugin: Plugin
    workload: Workload
    ref: InstanceRef
    now: Callable[[], datetime]  # when a switch happened, for scaleDownDelay

    @property
    def ns(self) -> str:
        return self.ref.namespace

    def where(self, kind: str, name: str) -> str:
        return f"{kind} {self.ns}/{name} on cluster {self.ref.cluster}"

    # --- reading and writing, one object at a time -------------------------------------------------------

    def deployment(self, name: str) -> Obj | None:
        return _or_none(lambda: call_json(self.api.apps.read_namespaced_deployment, name, self.ns))

    def statefulset(self, name: str) -> Obj | None:
        return _or_none(lambda: call_json(self.api.apps.read_namespaced_stateful_set, name, self.ns))

    def service(self, name: str) -> Obj | None:
        return _or_none(lambda: call_json(self.api.core.read_namespaced_service, name, self.ns))

    def route(self, name: str) -> Obj | None:
        return _or_none(lambda: call_json(self.api.custom.get_namespaced_custom_object, st.GATEWAY_GROUP,
                                          st.GATEWAY_VERSION, self.ns, st.HTTPROUTES, name))

    def patch_deployment(self, name: str, body: Obj, content_type: str = STRATEGIC) -> Obj:
        return call_json(self.api.apps.patch_namespaced_deployment, name, self.ns, body,
                         field_manager=wl.FIELD_MANAGER, _content_type=content_type)

    def patch_service(self, name: str, body: Obj) -> Obj:
        return call_json(self.api.core.patch_namespaced_service, name, self.ns, body,
                         field_manager=wl.FIELD_MANAGER, _content_type=MERGE)

    def patch_route(self, name: str, body: Obj) -> Obj:
        return call_json(self.api.custom.patch_namespaced_custom_object, st.GATEWAY_GROUP, st.GATEWAY_VERSION,
                         self.ns, st.HTTPROUTES, name, body, field_manager=wl.FIELD_MANAGER, _content_type=MERGE)

    def scale_deployment(self, obj: Obj, replicas: int) -> Obj:
        """Scale by a patch of the Deployment that, going to 0, remembers the replicas it had (to stage them
        again even after every color was scaled down)."""
        before = str(wl.replicas_of(obj)) if replicas == 0 and wl.replicas_of(obj) > 0 else None
        body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"],
                             "annotations": {st.REPLICAS_BEFORE: before}}, "spec": {"replicas": replicas}}
        return self.patch_deployment(obj["metadata"]["name"], body, MERGE)

    def create_deployment(self, body: Obj) -> Obj:
        return call_json(self.api.apps.create_namespaced_deployment, self.ns, body, field_manager=wl.FIELD_MANAGER)

    def create_service(self, body: Obj) -> Obj:
        return call_json(self.api.core.create_namespaced_service, self.ns, body, field_manager=wl.FIELD_MANAGER)

    def delete_deployment(self, name: str) -> None:
        call_json(self.api.apps.delete_namespaced_deployment, name, self.ns, propagation_policy="Background")

    def delete_service(self, name: str) -> None:
        call_json(self.api.core.delete_namespaced_service, name, self.ns)

    # --- what every strategy needs -----------------------------------------------------------------------

    def origin(self) -> Obj:
        found = self.deployment(self.workload.name)
        if found is None:
            raise Refused(f"{self.where('Deployment', self.workload.name)}: not found")
        return found

    def front(self) -> Obj:
        """The Service the strategy works through (workload.service)."""
        name = self.workload.service or self.workload.name
        found = self.service(name)
        if found is None:
            raise Refused(f"{self.where('Service', name)}: not found")
        return found

    def track(self, obj: Obj) -> Track:
        return st.track_of(obj, self.workload, self.where("Deployment", obj["metadata"]["name"]))

    def label(self) -> tuple[str, str]:
        """What tells the plugin's own pods apart: blue for blue-green, stable for a canary."""
        return (st.COLOR, "blue") if self.workload.strategy == "blueGreen" else (st.TRACK, "stable")


def reason(err: Exception) -> str:
    return describe(err) if isinstance(err, ApiException) else str(err)


def _or_none(read: Callable[[], Obj]) -> Obj | None:
    try:
        return read()
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def attempt(operation: str, instance_id: str, work: Callable[[], tuple[Outcome, str]]) -> OperationResult:
    """Run `work` with the usual answers: a 409 re-read and re-applied, a refusal or wait reported, a cluster
    that does not answer "unreachable", any other API error "error" with the API's message."""
    for _ in range(CONFLICT_RETRIES + 1):
        try:
            outcome, message = work()
            return OperationResult(instance_id, operation, outcome, message)
        except Refused as why:
            return OperationResult(instance_id, operation, "refused", str(why))
        except Waiting as why:
            return OperationResult(instance_id, operation, "waiting", str(why))
        except ApiException as err:
            if err.status == 409:
                continue
            verb = "forbidden: " if err.status == 403 else ""
            return OperationResult(instance_id, operation, "error", f"cluster {instance_id.split('/')[0]}: "
                                                                    f"{verb}{describe(err)}")
        except ClusterUnreachable as err:
            if isinstance(err.__cause__, ApiException):
                return OperationResult(instance_id, operation, "error", f"the API server kept failing: {err}")
            return OperationResult(instance_id, operation, "unreachable",
                                   f"cluster {instance_id.split('/')[0]} unreachable: {err}")
        except ClusterAccessError as err:
            return OperationResult(instance_id, operation, "error", str(err))
        except ValueError as err:
            return OperationResult(instance_id, operation, "refused", str(err))
    return OperationResult(instance_id, operation, "error",
                           f"kept conflicting with other writers ({CONFLICT_RETRIES + 1} attempts)")


# --- operations -------------------------------------------------------------------------------------------------


def adopt(it: Instance, op: Adopt) -> tuple[Outcome, str]:
    service, origin = it.front(), it.origin()
    label = it.label()
    key, value = label
    name = service["metadata"]["name"]
    if st.selector_of(service).get(key) is not None:
        return "unchanged", f"{it.where('Service', name)} selects by {key} already"
    if not st.selects_pods_of(service, origin):
        raise Refused(f"{it.where('Service', name)} (selector {st.selector_of(service)}) does not select the pods "
                      f"of Deployment {it.ns}/{it.workload.name}: grayops would move its traffic elsewhere")
    patch = st.label_patch(origin, label)
    if patch is not None:
        it.patch_deployment(it.workload.name, patch)
        raise Waiting(f"{it.where('Deployment', it.workload.name)}: its pods get the label {key}={value} (they "
                      "restart once); ask again once it is ready")
    track = it.track(origin)
    if not track.ready:
        raise Waiting(f"waiting for the pods labelled {key}={value} to be ready: {track.message}")
    it.patch_service(name, st.selector_patch(service, label, now=it.now().isoformat(timespec="seconds"), adopting=True))
    return "done", f"{it.where('Service', name)} selects {key}={value}"


def stage(it: Instance, op: Stage) -> tuple[Outcome, str]:
    service, origin = it.front(), it.origin()
    if it.workload.strategy == "blueGreen":
        serving = st.serving_color(service)
        if serving is None:
            raise Refused(f"{it.where('Service', service['metadata']['name'])} is not adopted yet: Adopt first")
        serving_obj = it.deployment(st.color_name(it.workload, serving))
        outcome, message = _stage_color(it, op, origin, other(serving), st.wanted_replicas(serving_obj or origin))
        _ensure_service(it, service, st.preview_service(it.workload), (st.COLOR, other(serving)))
        return outcome, message
    if st.selector_of(service).get(st.TRACK) != "stable":
        raise Refused(f"{it.where('Service', service['metadata']['name'])} is not adopted yet: Adopt first")
    wanted = st.beside(origin, st.canary_name(it.workload), (st.TRACK, "canary"), it.workload, it.plugin.spec.image,
                       wl.tag_of(op.version, op.digest), st.wanted_replicas(origin), op.rollout_id, op.previous,
                       it.plugin.metadata.name)
    outcome, message = _create_or_sync(it, wanted)
    _ensure_service(it, service, st.canary_service(it.workload), (st.TRACK, "canary"))
    return outcome, message


def _stage_color(it: Instance, op: Stage, origin: Obj, color: Color, replicas: int) -> tuple[Outcome, str]:
    if color == "green":
        wanted = st.beside(origin, st.color_name(it.workload, "green"), (st.COLOR, "green"), it.workload,
                           it.plugin.spec.image, wl.tag_of(op.version, op.digest), replicas, op.rollout_id,
                           op.previous, it.plugin.metadata.name)
        return _create_or_sync(it, wanted)
    container = wl.container_of(origin, it.workload)  # blue is the plugin's own Deployment: changed in place
    if container is None:
        raise Refused(wl.container_error(origin, it.workload, it.where("Deployment", it.workload.name)))
    image = (str(container["name"]), wl.image_of(container, it.plugin.spec.image, wl.tag_of(op.version, op.digest)))
    patch = st.label_patch(origin, (st.COLOR, "blue"), replicas, image)
    notes = {wl.ROLLOUT_ANNOTATION: op.rollout_id, **({wl.PREVIOUS_ANNOTATION: op.previous} if op.previous else {})}
    if patch is None:
        return "unchanged", f"{it.where('Deployment', it.workload.name)} runs {op.version} already"
    patch["metadata"]["annotations"] = notes
    it.patch_deployment(it.workload.name, patch)
    return "done", f"{it.where('Deployment', it.workload.name)} (blue) asks for {op.version} x{replicas}"


def _create_or_sync(it: Instance, wanted: Obj) -> tuple[Outcome, str]:
    name = wanted["metadata"]["name"]
    version = wl.image_tag(str(wl.containers(wanted)[0].get("image", ""))) if wl.containers(wanted) else None
    current = it.deployment(name)
    if current is None:
        it.create_deployment(wanted)
        return "done", f"{it.where('Deployment', name)} created at {version}"
    if not st.is_managed(current):
        raise Refused(f"{it.where('Deployment', name)} exists and is not grayops' (no label "
                      f"{st.MANAGED_BY}: {st.MANAGER}): rename it, or label it to let grayops use it")
    patch = st.sync_patch(current, wanted)
    if patch is None:
        return "unchanged", f"{it.where('Deployment', name)} asks for {version} already"
    it.patch_deployment(name, patch, MERGE)
    return "done", f"{it.where('Deployment', name)} asks for {version}"


def _ensure_service(it: Instance, stable: Obj, name: str, label: tuple[str, str]) -> None:
    """The preview or canary Service: created beside the stable one, or pointed at `label`."""
    current = it.service(name)
    if current is None:
        it.create_service(st.service_beside(stable, name, label, it.plugin.metadata.name))
    elif not st.is_managed(current):
        raise Refused(f"{it.where('Service', name)} exists and is not grayops' (no label "
                      f"{st.MANAGED_BY}: {st.MANAGER})")
    elif st.selector_of(current).get(label[0]) != label[1]:
        it.patch_service(name, st.selector_patch(current, label))


def switch(it: Instance, op: Switch) -> tuple[Outcome, str]:
    service = it.front()
    name = service["metadata"]["name"]
    serving = st.serving_color(service)
    if serving is None:
        raise Refused(f"{it.where('Service', name)} is not adopted yet: Adopt first")
    if serving == op.color:
        return "unchanged", f"{it.where('Service', name)} selects {op.color} already"
    target = it.deployment(st.color_name(it.workload, op.color))
    if target is None:
        raise Refused(f"no Deployment {it.ns}/{st.color_name(it.workload, op.color)} to switch to: Stage it first")
    track = it.track(target)
    if not track.ready:
        raise Refused(f"{op.color} is not ready ({track.message or f'{track.available} of {track.replicas} available'}"
                      f"): the Service stays on {serving}")
    it.patch_service(name, st.selector_patch(service, (st.COLOR, op.color), now=it.now().isoformat(timespec="seconds")))
    return "done", f"{it.where('Service', name)} switched from {serving} to {op.color} ({track.version})"


def scale(it: Instance, op: Scale) -> tuple[Outcome, str]:
    name = st.canary_name(it.workload) if op.track == "canary" else st.color_name(it.workload, op.track)
    replicas = op.replicas if op.replicas is not None else _serving_replicas(it)
    current = it.deployment(name)
    if current is None:
        if replicas == 0:
            return "unchanged", f"{it.where('Deployment', name)} does not exist"
        raise Refused(f"{it.where('Deployment', name)}: not found; Stage it first")
    if wl.replicas_of(current) == replicas:
        return "unchanged", f"{it.where('Deployment', name)} has {replicas} replicas already"
    it.scale_deployment(current, replicas)
    warning = ""
    if replicas == 0 and op.track != "canary":
        service = it.service(it.workload.service or "")
        if service is not None and st.serving_color(service) == op.track:
            warning = f"; the Service {it.ns}/{it.workload.service} selects it: no ready pods until a switch"
    return "done", f"{it.where('Deployment', name)} scaled to {replicas}{warning}"


def _serving_replicas(it: Instance) -> int:
    origin = it.origin()
    if it.workload.strategy == "blueGreen":
        serving = st.serving_color(it.front()) or "blue"
        return st.wanted_replicas(it.deployment(st.color_name(it.workload, serving)) or origin)
    return st.wanted_replicas(origin)


def set_weight(it: Instance, op: SetWeight) -> tuple[Outcome, str]:
    if not 0 <= op.weight <= 100:
        raise Refused(f"a weight is a share of traffic from 0 to 100, not {op.weight}")
    traffic, service = it.workload.traffic, it.workload.service
    assert traffic is not None and service is not None, "validated: a canary names its route and Service"
    route = it.route(traffic.gateway_route)
    if route is None:
        raise Refused(f"{it.where('HTTPRoute', traffic.gateway_route)}: not found")
    canary = st.canary_service(it.workload)
    if not st.route_refs(route, service):
        raise Refused(route_error(it, traffic.gateway_route, service))
    if op.weight > 0:
        deployment = it.deployment(st.canary_name(it.workload))
        track = it.track(deployment) if deployment else None
        if track is None or not track.ready or it.service(canary) is None:
            why = track.message if track else "not staged"
            raise Refused(f"the canary {it.ns}/{st.canary_name(it.workload)} is not ready ({why}): the HTTPRoute "
                          f"keeps sending it {st.route_weights(route, service, canary)[1]}")
    patch = st.weights_patch(route, service, canary, op.weight)
    if patch is None:
        return "unchanged", f"{it.where('HTTPRoute', traffic.gateway_route)} sends {op.weight}% to the canary already"
    it.patch_route(traffic.gateway_route, patch)
    return "done", f"{it.where('HTTPRoute', traffic.gateway_route)} sends {op.weight}% to {canary}"


def route_error(it: Instance, route: str, service: str) -> str:
    return (f"{it.where('HTTPRoute', route)} does not reference Service {it.ns}/{service}: grayops moves traffic "
            f"between a backendRef to {service} and one to {service}-canary, so the route must send to {service}")


def set_partition(it: Instance, op: SetPartition) -> tuple[Outcome, str]:
    obj = it.statefulset(it.workload.name)
    where = it.where("StatefulSet", it.workload.name)
    if obj is None:
        raise Refused(f"{where}: not found")
    if wl.partition_of(obj) == op.partition:
        return "unchanged", f"{where}: partition {op.partition} already"
    call_json(it.api.apps.patch_namespaced_stateful_set, it.workload.name, it.ns, wl.partition_patch(obj, op.partition),
              field_manager=wl.FIELD_MANAGER, _content_type=STRATEGIC)
    return "done", f"{where}: partition lowered to {op.partition}"


def restore_knobs(it: Instance, op: RestoreKnobs | Cleanup) -> tuple[Outcome, str]:
    obj = it.deployment(it.workload.name) if wl.kind_of(it.workload) == wl.DEPLOYMENT else None
    patch = wl.restore_patch(obj) if obj else None
    if patch is None:
        return "unchanged", "no RollingUpdate settings to restore"
    it.patch_deployment(it.workload.name, patch, MERGE)
    return "done", f"{it.where('Deployment', it.workload.name)}: RollingUpdate settings restored"


def cleanup(it: Instance, op: Cleanup) -> CleanupResult:
    """Remove what grayops created and no longer serves; scale an idle plugin Deployment (blue) to 0."""
    removed: list[str] = []
    scaled: list[str] = []
    notes: list[str] = []

    def ended(outcome: Outcome, message: str) -> CleanupResult:
        return CleanupResult(it.ref.id, tuple(removed), tuple(scaled), outcome, message)

    for _ in range(CONFLICT_RETRIES + 1):  # each step is idempotent: after a 409, all of them again
        try:
            if it.workload.strategy == "blueGreen":
                _cleanup_blue_green(it, removed, scaled, notes)
            elif it.workload.strategy == "canary":
                _cleanup_canary(it, removed, notes)
            _cleanup_jobs(it, removed)
            result = attempt("RestoreKnobs", it.ref.id, lambda: restore_knobs(it, op))
            if result.outcome == "done":
                notes.append(result.message)
            elif not result.ok:
                return ended(result.outcome, result.message)
            return ended("done" if removed or scaled or notes else "unchanged", "; ".join(notes))
        except Refused as why:
            return ended("refused", str(why))
        except ClusterUnreachable as err:
            return ended("unreachable", f"cluster {it.ref.cluster} unreachable: {err}")
        except ApiException as err:
            if err.status != 409:
                return ended("error", f"cluster {it.ref.cluster}: {reason(err)}")
        except ClusterAccessError as err:
            return ended("error", str(err))
    return ended("error", f"kept conflicting with other writers ({CONFLICT_RETRIES + 1} attempts)")


def _cleanup_blue_green(it: Instance, removed: list[str], scaled: list[str], notes: list[str]) -> None:
    service = it.front()
    serving = st.serving_color(service)
    if serving is None:
        return
    idle = other(serving)
    name = st.color_name(it.workload, idle)
    obj = it.deployment(name)
    if idle == "green" and obj is not None:
        _remove_deployment(it, obj, removed, notes)
    elif idle == "blue" and obj is not None and wl.replicas_of(obj) > 0:
        it.scale_deployment(obj, 0)  # the plugin's own Deployment: kept, at 0, for the next change
        scaled.append(f"Deployment {it.ns}/{name}")
    preview = it.service(st.preview_service(it.workload))
    if preview is not None:
        _remove_service(it, preview, removed, notes)


def _cleanup_canary(it: Instance, removed: list[str], notes: list[str]) -> None:
    traffic, service = it.workload.traffic, it.workload.service
    assert traffic is not None and service is not None
    canary = st.canary_service(it.workload)
    route = it.route(traffic.gateway_route)
    if route is not None:
        weight = st.route_weights(route, service, canary)[1]
        if weight > 0:
            where = it.where("HTTPRoute", traffic.gateway_route)
            raise Refused(f"the canary still receives weight {weight} in {where}: set its weight to 0 first")
        patch = st.unroute_patch(route, service, canary)
        if patch is not None:
            it.patch_route(traffic.gateway_route, patch)
            notes.append(f"HTTPRoute {it.ns}/{traffic.gateway_route}: the canary backendRef removed")
    deployment = it.deployment(st.canary_name(it.workload))
    if deployment is not None:
        _remove_deployment(it, deployment, removed, notes)
    found = it.service(canary)
    if found is not None:
        _remove_service(it, found, removed, notes)


def _remove_deployment(it: Instance, obj: Obj, removed: list[str], notes: list[str]) -> None:
    name = obj["metadata"]["name"]
    if not st.is_managed(obj):
        notes.append(f"Deployment {it.ns}/{name} kept: it is not labelled {st.MANAGED_BY}: {st.MANAGER}")
        return
    it.delete_deployment(name)
    removed.append(f"Deployment {it.ns}/{name}")


def _remove_service(it: Instance, obj: Obj, removed: list[str], notes: list[str]) -> None:
    name = obj["metadata"]["name"]
    if not st.is_managed(obj):
        notes.append(f"Service {it.ns}/{name} kept: it is not labelled {st.MANAGED_BY}: {st.MANAGER}")
        return
    it.delete_service(name)
    removed.append(f"Service {it.ns}/{name}")


def _cleanup_jobs(it: Instance, removed: list[str]) -> None:
    """Smoke Jobs left by a run that could not delete them (the cluster went away), once they finished."""
    selector = f"{st.MANAGED_BY}={st.MANAGER},{st.PLUGIN_LABEL}={it.plugin.metadata.name}"
    jobs = call_json(it.api.batch.list_namespaced_job, it.ns, label_selector=selector)
    for job in jobs.get("items") or []:
        if kube_smoke.finished(job) and st.is_managed(job):
            call_json(it.api.batch.delete_namespaced_job, job["metadata"]["name"], it.ns,
                      propagation_policy="Background")
            removed.append(f"Job {it.ns}/{job['metadata']['name']}")


# --- smoke tests ------------------------------------------------------------------------------------------------


def run_smoke(it: Instance, op: RunSmoke) -> SmokeResult:
    """Each check in order against what serves or what was staged; the first failure is the verdict."""
    try:
        service, target = _smoke_target(it, op)
        passed: list[str] = []
        for check in op.checks:
            if isinstance(check, HttpCheck):
                ok, message = kube_checks.run_http(it.api, it.ref, it.plugin, it.workload, op.version, check, service)
            elif isinstance(check, ExecCheck):
                named = it.workload.model_copy(update={"name": target["metadata"]["name"]})
                ok, message = kube_checks.run_exec(it.api, it.ref, named, target, check)
            else:
                job = kube_smoke.SmokeJob(it.ref.cluster, it.ns, it.plugin.metadata.name, op.version, op.rollout_id,
                                          op.after, service)
                ok, message = kube_smoke.run_job(it.api, job, check)
            if not ok:
                return SmokeResult(it.ref.id, op.version, op.after, False, message)
            passed.append(message)
        return SmokeResult(it.ref.id, op.version, op.after, True, "; ".join(passed) or "no smoke tests")
    except Refused as why:
        return SmokeResult(it.ref.id, op.version, op.after, False, str(why))
    except ClusterUnreachable as err:
        return SmokeResult(it.ref.id, op.version, op.after, False, f"cluster {it.ref.cluster} unreachable: {err}",
                           reachable=False)
    except (ApiException, ClusterAccessError) as err:
        return SmokeResult(it.ref.id, op.version, op.after, False, f"cluster {it.ref.cluster}: {reason(err)}")


def _smoke_target(it: Instance, op: RunSmoke) -> tuple[str, Obj]:
    """(the Service that reaches what is tested, the Deployment whose pods exec checks run in)."""
    workload = it.workload
    if workload.strategy == "blueGreen":
        service = it.front()
        serving = st.serving_color(service) or "blue"
        if op.target == "serving":
            return service["metadata"]["name"], _must(it, st.color_name(workload, serving))
        preview = it.service(st.preview_service(workload))
        staged = st.selector_of(preview).get(st.COLOR) if preview else None
        if preview is None or staged not in ("blue", "green"):
            raise Refused(f"nothing staged to smoke-test: no Service {it.ns}/{st.preview_service(workload)}")
        return preview["metadata"]["name"], _must(it, st.color_name(workload, staged))  # type: ignore[arg-type]
    if workload.strategy == "canary" and op.target == "staged":
        return st.canary_service(workload), _must(it, st.canary_name(workload))
    return workload.service or workload.name, _must(it, workload.name)


def _must(it: Instance, name: str) -> Obj:
    found = it.deployment(name)
    if found is None:
        raise Refused(f"{it.where('Deployment', name)}: not found")
    return found


# --- preflight --------------------------------------------------------------------------------------------------


def preflight(it: Instance) -> list[str]:
    """What the strategy needs on this instance and does not find, each as one readable line."""
    workload = it.workload
    if workload.strategy == "inPlace":
        return []
    errors: list[str] = []
    service, origin = it.service(workload.service or ""), it.deployment(workload.name)
    if origin is None:
        errors.append(f"{it.where('Deployment', workload.name)}: not found")
    if service is None:
        errors.append(f"{it.where('Service', workload.service or '')}: not found")
    elif origin is not None and not st.selects_pods_of(service, origin):
        errors.append(f"{it.where('Service', workload.service or '')} (selector {st.original_selector(service)}) "
                      f"does not select the pods of Deployment {it.ns}/{workload.name}")
    extra = st.preview_service(workload) if workload.strategy == "blueGreen" else st.canary_service(workload)
    if len(extra) > 63:
        errors.append(f"Service name {extra!r} (which grayops creates) is longer than 63 characters: shorten "
                      f"{workload.service!r}")
    if workload.strategy == "canary" and workload.traffic is not None:
        try:
            route = it.route(workload.traffic.gateway_route)
        except ApiException as err:
            route = None
            if err.status != 404:
                raise
        if route is None:
            errors.append(f"{it.where('HTTPRoute', workload.traffic.gateway_route)}: not found (is the Gateway API "
                          "installed, with the route in this namespace?)")
        elif not st.route_refs(route, workload.service or ""):
            errors.append(route_error(it, workload.traffic.gateway_route, workload.service or ""))
    return errors


# --- observing ------------------------------------------------------------------------------------------------


def observe_one(plugin: Plugin, workload: Workload, ref: InstanceRef, caches: Mapping[str, Informer]
                ) -> StrategyObservation:
    """One instance from the caches: `deployments`, `services`, `endpoints` (blue-green), `httproutes` (canary),
    `statefulsets` (partition steps)."""
    ns = ref.namespace

    def track(name: str) -> Track | None:
        obj = caches["deployments"].get(ns, name)
        return st.track_of(obj, workload, f"Deployment {ns}/{name} on cluster {ref.cluster}") if obj else None

    if workload.strategy == "blueGreen":
        service = caches["services"].get(ns, workload.service or "")
        colors = {c: t for c in ("blue", "green") if (t := track(st.color_name(workload, c))) is not None}
        endpoints = caches["endpoints"].get(ns, workload.service or "")
        subsets = (endpoints or {}).get("subsets") or []
        ready = None if endpoints is None else sum(len(s.get("addresses") or []) for s in subsets)
        missing = _missing(ref, service, workload.service, colors.get("blue"), workload.name) or \
            _no_container(caches["deployments"].get(ns, workload.name), workload, ref)
        return BlueGreenObservation(ref.id, workload.service or "", st.serving_color(service) if service else None,
                                    colors, _switched_at(service), ready, message=missing,  # type: ignore[arg-type]
                                    missing=missing)
    if workload.strategy == "canary":
        assert workload.traffic is not None
        service = caches["services"].get(ns, workload.service or "")
        route = caches["httproutes"].get(ns, workload.traffic.gateway_route)
        stable_weight, canary_weight = st.route_weights(route, workload.service or "", st.canary_service(workload)) \
            if route else (None, 0)
        stable = track(workload.name)
        missing = _missing(ref, service, workload.service, stable, workload.name)
        if route is None:
            missing = missing or f"HTTPRoute {ns}/{workload.traffic.gateway_route} on cluster {ref.cluster}: not found"
        adopted = service is not None and st.selector_of(service).get(st.TRACK) == "stable"
        return CanaryObservation(ref.id, workload.traffic.gateway_route, workload.service or "", stable,
                                 track(st.canary_name(workload)), stable_weight, canary_weight, adopted,
                                 message=missing)
    obj = caches["statefulsets"].get(ns, workload.name)
    where = f"StatefulSet {ns}/{workload.name} on cluster {ref.cluster}"
    if obj is None:
        return PartitionObservation(ref.id, 0, (), 0, 0, 0, False, message=f"{where}: not found")
    return partition_observation(ref, obj, where)


def partition_observation(ref: InstanceRef, obj: Obj, where: str) -> PartitionObservation:
    status = obj.get("status") or {}
    text = wl.annotations_of(obj).get(wl.PARTITION_STEPS_ANNOTATION) or ""
    steps = tuple(int(s) for s in text.split(",") if s.strip().isdigit())
    reading = wl.read_statefulset(obj, Workload(kind="StatefulSet", name=obj["metadata"]["name"]))
    step_ready = reading.ready or reading.message.startswith("partitioned roll-out done")
    return PartitionObservation(ref.id, wl.partition_of(obj), steps, wl.replicas_of(obj),
                                int(status.get("updatedReplicas", 0)), int(status.get("readyReplicas", 0)),
                                step_ready, message=f"{where}: {reading.message}" if reading.message else "")


def _missing(ref: InstanceRef, service: Obj | None, service_name: str | None, origin: Track | None,
             name: str) -> str:
    if service is None:
        return f"Service {ref.namespace}/{service_name} on cluster {ref.cluster}: not found"
    if origin is None:
        return f"Deployment {ref.namespace}/{name} on cluster {ref.cluster}: not found"
    return ""


def _no_container(origin: Obj | None, workload: Workload, ref: InstanceRef) -> str:
    """The plugin's own Deployment lacks the container it names (grayops stages copies of it, never creates it)."""
    if origin is None or wl.container_of(origin, workload) is not None:
        return ""
    return wl.container_error(origin, workload, f"Deployment {ref.namespace}/{workload.name} on cluster {ref.cluster}")


def _switched_at(service: Obj | None) -> datetime | None:
    text = wl.annotations_of(service).get(st.SWITCHED_AT) if service else None
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def unobserved(workload: Workload, ref: InstanceRef, why: str, reachable: bool = False) -> StrategyObservation:
    """An instance that could not be observed: its cluster unreachable, or lacking an API the strategy needs."""
    if workload.strategy == "blueGreen":
        return BlueGreenObservation(ref.id, workload.service or "", None, {}, reachable=reachable, message=why)
    if workload.strategy == "canary":
        route = workload.traffic.gateway_route if workload.traffic else ""
        return CanaryObservation(ref.id, route, workload.service or "", None, None, None, reachable=reachable,
                                 message=why)
    return PartitionObservation(ref.id, 0, (), 0, 0, 0, False, reachable=reachable, message=why)


def kinds_for(workload: Workload) -> dict[str, wl.Kind]:
    if workload.strategy == "blueGreen":
        return {"deployments": wl.DEPLOYMENT, "services": SERVICES, "endpoints": ENDPOINTS}
    if workload.strategy == "canary":
        return {"deployments": wl.DEPLOYMENT, "services": SERVICES, "httproutes": HTTPROUTE}
    return {"statefulsets": wl.STATEFULSET}


Dispatch = Mapping[type, Callable[[Instance, Any], tuple[Outcome, str]]]
OPERATIONS: Dispatch = {Adopt: adopt, Stage: stage, Switch: switch, Scale: scale, SetWeight: set_weight,
                        SetPartition: set_partition, RestoreKnobs: restore_knobs}


def for_all(items: Sequence[Any], cluster_of: Callable[[Any], str], work: Callable[[Any], Any],
            per_cluster: int) -> list[Any]:
    """`work` on every item, clusters in parallel (16 at most) and up to `per_cluster` at once on each; the
    results in the items' order."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, item in enumerate(items):
        groups[cluster_of(item)].append(index)
    results: list[Any] = [None] * len(items)

    def one_cluster(indexes: list[int]) -> None:
        with ThreadPoolExecutor(max_workers=min(per_cluster, len(indexes))) as pool:
            for index, result in zip(indexes, pool.map(lambda i: work(items[i]), indexes), strict=True):
                results[index] = result

    if groups:
        with ThreadPoolExecutor(max_workers=min(16, len(groups))) as pool:
            list(pool.map(one_cluster, groups.values()))
    return results
