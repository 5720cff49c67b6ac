"""`KubernetesDriver`: the `ClusterDriver` port over real clusters, one API client and one informer per cluster
and workload kind, changes made with bounded parallelism per cluster.

Errors are per instance and name the cluster, namespace and object: a missing kube context, workload or
container, or a forbidden patch comes back from `apply` as that instance's error (the engine fails it and counts
it against the batch's budget). A cluster that does not answer is not an error of `apply`: its instances are
observed unreachable, and the policy's `offline` setting decides.

Strategies (README "Strategies"): `observe_strategy` reports where each instance of a blue-green, canary or
partition-stepped plugin stands, `perform` runs one operation of `core.strategy` on one instance (`perform_all`
on many, clusters in parallel), `smoke` runs smoke tests, `preflight` checks the objects a strategy needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube import checks as kube_checks
from reconciler.adapters.kube import operations as ops
from reconciler.adapters.kube import workloads as wl
from reconciler.adapters.kube.cache import Informer
from reconciler.adapters.kube.client import (
    ClusterAccessError,
    ClusterApi,
    ClusterUnreachable,
    call_json,
    connect,
    describe,
)
from reconciler.adapters.ports import Clock, MetricsSource, SystemClock
from reconciler.core.effects import CheckResult, CheckStage, InstanceObservation, SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ExecCheck, HttpCheck, Plugin, Workload
from reconciler.core.strategy import (
    BlueGreenObservation,
    Cleanup,
    CleanupResult,
    Knobs,
    Operation,
    OperationResult,
    Preflight,
    RunSmoke,
    SmokeResult,
    StrategyObservation,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PARALLEL_PER_CLUSTER = 8
SYNC_TIMEOUT = 10.0  # how long the first observation of a cluster waits for its first LIST
CONFLICT_RETRIES = 3


def workload_of(plugin: Plugin) -> Workload:
    """The plugin's workload; by default a Deployment and container named after the plugin."""
    name = plugin.metadata.name
    return plugin.spec.workload or Workload(kind="Deployment", name=name, container=name)


class KubernetesDriver:
    """Implements `ClusterDriver` for the clusters whose `driver` is `kubernetes`. Thread-safe."""

    def __init__(self, clusters: Sequence[KubernetesCluster], metrics: MetricsSource | None = None,
                 parallel: int = PARALLEL_PER_CLUSTER, sync_timeout: float = SYNC_TIMEOUT,
                 clock: Clock | None = None) -> None:
        self.clusters = {c.name: c for c in clusters}
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.parallel = parallel
        self.sync_timeout = sync_timeout
        self.requests: Counter[str] = Counter()  # requests this driver started, by verb (for the benchmark)
        self._apis: dict[str, ClusterApi] = {}
        self._informers: dict[tuple[str, wl.Kind], Informer] = {}
        self._lock = threading.Lock()

    # --- plumbing -----------------------------------------------------------------------------------------------

    def api(self, cluster: str) -> ClusterApi:
        """The cluster's client, built once; raises ClusterAccessError with a clear reason."""
        with self._lock:
            found = self._apis.get(cluster)
            if found is not None:
                return found
            spec = self.clusters.get(cluster)
            if spec is None:
                raise ClusterAccessError(f"cluster {cluster} is not a kubernetes cluster in grayops.yaml")
            found = self._apis[cluster] = connect(spec)
            return found

    def informer(self, cluster: str, kind: wl.Kind) -> Informer:
        api = self.api(cluster)
        with self._lock:
            found = self._informers.get((cluster, kind))
            if found is None:
                found = Informer(api, kind.group, kind.version, kind.plural, self.requests).start()
                self._informers[(cluster, kind)] = found
        return found

    def close(self) -> None:
        with self._lock:
            for informer in self._informers.values():
                informer.stop()
            for api in self._apis.values():
                api.close()
            self._informers.clear()
            self._apis.clear()

    # --- observe ------------------------------------------------------------------------------------------------

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        workload = workload_of(plugin)
        if workload.strategy == "blueGreen":
            return {iid: serving(seen) for iid, seen in self.observe_strategy(plugin, instances).items()
                    if isinstance(seen, BlueGreenObservation)}
        kind = wl.kind_of(workload)
        by_cluster: dict[str, list[InstanceRef]] = defaultdict(list)
        for ref in instances:
            by_cluster[ref.cluster].append(ref)
        result: dict[str, InstanceObservation] = {}
        informers: dict[str, Informer] = {}
        for cluster, refs in by_cluster.items():  # start every cluster's first LIST before waiting for any
            try:
                informers[cluster] = self.informer(cluster, kind)
            except ClusterAccessError as err:
                result.update({r.id: InstanceObservation(None, False, reachable=False, message=str(err))
                               for r in refs})
        deadline = time.monotonic() + self.sync_timeout
        for cluster, informer in informers.items():
            refs = by_cluster[cluster]
            informer.wait_synced(max(0.0, deadline - time.monotonic()))
            if not informer.healthy():
                why = informer.error or "no answer yet"
                result.update({r.id: InstanceObservation(None, False, reachable=False,
                                                         message=f"cluster {cluster} unreachable: {why}")
                               for r in refs})
                continue
            for ref in refs:
                result[ref.id] = self._observe_one(informer, ref, workload, kind)
        return result

    def _observe_one(self, informer: Informer, ref: InstanceRef, workload: Workload,
                     kind: wl.Kind) -> InstanceObservation:
        where = wl.describe(workload, ref.namespace, ref.cluster)
        obj = informer.get(ref.namespace, workload.name)
        if obj is None:  # grayops changes workloads, never creates them: a rollout's preflight fails on it
            return InstanceObservation(None, False, message=f"{where}: not found", missing=f"{where}: not found")
        if kind.builtin and wl.container_of(obj, workload) is None:
            error = wl.container_error(obj, workload, where)
            return InstanceObservation(None, False, failed=error, missing=error)
        if kind == wl.STATEFULSET and wl.canary_done(obj) and \
                wl.PARTITION_STEPS_ANNOTATION not in wl.annotations_of(obj):  # with steps, the caller lowers it
            self._continue_partition(informer, ref, obj, where)
        reading = wl.read(obj, workload)
        return InstanceObservation(reading.version, reading.ready, reading.failed,
                                   message=f"{where}: {reading.message}" if reading.message else "")

    def _continue_partition(self, informer: Informer, ref: InstanceRef, obj: Obj, where: str) -> None:
        """The canary ordinals of a partitioned StatefulSet are updated and ready: lower the partition to 0."""
        try:
            answer = call_json(informer.api.apps.patch_namespaced_stateful_set, obj["metadata"]["name"],
                               ref.namespace, wl.partition_patch(obj, 0), field_manager=wl.FIELD_MANAGER,
                               _content_type="application/strategic-merge-patch+json")
            self.requests["PATCH"] += 1
            informer.put(answer)
            log.info("%s: canary ordinals ready, partition lowered to 0", where)
        except Exception as err:  # next observation tries again
            log.warning("%s: could not lower the partition: %s", where, describe(err))

    # --- apply --------------------------------------------------------------------------------------------------

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion], knobs: Knobs | None = None) -> Mapping[str, str]:
        """Start each change in place, with the policy's knobs (maxSurge, maxUnavailable, the first partition
        step); a blue-green plugin is changed by the strategy operations instead, and refused here."""
        workload = workload_of(plugin)
        if workload.strategy == "blueGreen":
            return {c.instance: f"{wl.describe(workload, c.instance.partition('/')[2], c.instance.partition('/')[0])}"
                                ": strategy blueGreen is changed by Stage and Switch, not in place (README "
                                "\"Strategies\")" for c in changes}
        by_cluster: dict[str, list[SetVersion]] = defaultdict(list)
        for change in changes:
            by_cluster[change.instance.partition("/")[0]].append(change)
        errors: dict[str, str] = {}
        lock = threading.Lock()

        def one_cluster(cluster: str, batch: list[SetVersion]) -> None:
            try:
                informer = self.informer(cluster, wl.kind_of(workload))
            except ClusterAccessError as err:
                with lock:
                    errors.update({c.instance: str(err) for c in batch})
                return
            with ThreadPoolExecutor(max_workers=min(self.parallel, len(batch))) as pool:
                for change, error in zip(batch, pool.map(
                        lambda c: self._apply_one(informer, plugin, workload, c, knobs), batch), strict=True):
                    if error:
                        with lock:
                            errors[change.instance] = error

        if by_cluster:
            with ThreadPoolExecutor(max_workers=min(16, len(by_cluster))) as pool:
                list(pool.map(lambda item: one_cluster(*item), by_cluster.items()))
        return errors

    def _apply_one(self, informer: Informer, plugin: Plugin, workload: Workload, change: SetVersion,
                   knobs: Knobs | None = None) -> str | None:
        """Make one instance ask for `change.version`; an error message, or None (done, or cluster unreachable)."""
        namespace = change.instance.partition("/")[2]
        where = wl.describe(workload, namespace, informer.api.name)
        kind = wl.kind_of(workload)
        for _ in range(CONFLICT_RETRIES + 1):
            try:
                obj = self._read(informer, kind, namespace, workload.name)
                try:
                    patch = wl.patch_for(obj, workload, plugin.spec.image, change.version, change.rollout_id,
                                         change.previous, knobs, change.digest)
                except ValueError as err:
                    if str(err) == "container":
                        return wl.container_error(obj, workload, where)
                    return f"{where}: {err}"
                if patch is None:
                    return None  # already asks for it: applying twice changes nothing
                informer.put(self._patch(informer.api, kind, namespace, workload.name, patch))
                return None
            except ApiException as err:
                if err.status == 409:
                    continue  # someone changed it since we read it: read again and re-apply
                if err.status == 404:
                    return f"{where}: not found"
                if err.status == 403:
                    return f"{where}: forbidden to patch: {describe(err)}"
                return f"{where}: {describe(err)}"
            except ClusterUnreachable as err:
                if isinstance(err.__cause__, ApiException):
                    return f"{where}: the API server kept failing: {err}"
                log.warning("%s: unreachable, change to %s not made yet: %s", where, change.version, err)
                return None  # the observation says unreachable; the policy's `offline` decides
        return f"{where}: kept conflicting with other writers ({CONFLICT_RETRIES + 1} attempts)"

    def _read(self, informer: Informer, kind: wl.Kind, namespace: str, name: str) -> Obj:
        self.requests["GET"] += 1
        api = informer.api
        if kind.builtin:
            apps = api.apps
            fn = apps.read_namespaced_deployment if kind == wl.DEPLOYMENT else apps.read_namespaced_stateful_set
            return call_json(fn, name, namespace)
        return call_json(api.custom.get_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural,
                         name)

    def _patch(self, api: ClusterApi, kind: wl.Kind, namespace: str, name: str, patch: Obj) -> Obj:
        self.requests["PATCH"] += 1
        if kind.builtin:
            apps = api.apps
            fn = apps.patch_namespaced_deployment if kind == wl.DEPLOYMENT else apps.patch_namespaced_stateful_set
            return call_json(fn, name, namespace, patch, field_manager=wl.FIELD_MANAGER,
                             _content_type="application/strategic-merge-patch+json")
        return call_json(api.custom.patch_namespaced_custom_object, kind.group, kind.version, namespace, kind.plural,
                         name, patch, field_manager=wl.FIELD_MANAGER, _content_type="application/merge-patch+json")

    # --- checks -------------------------------------------------------------------------------------------------

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        workload = workload_of(plugin)
        try:
            informer = self.informer(instance.cluster, wl.kind_of(workload))
        except ClusterAccessError as err:
            return CheckResult(instance.id, stage, version, False, str(err))
        informer.wait_synced(self.sync_timeout)
        obj = informer.get(instance.namespace, workload.name)
        if stage == "pre" and obj is None:
            return CheckResult(instance.id, stage, version, True, "not installed yet, nothing to check")
        passed: list[str] = []
        for check in checks:
            if isinstance(check, HttpCheck):
                ok, message = kube_checks.run_http(informer.api, instance, plugin, workload, version, check)
            elif isinstance(check, ExecCheck):
                ok, message = kube_checks.run_exec(informer.api, instance, workload, obj, check)
            else:
                ok, message = kube_checks.run_metric(self.metrics, plugin, instance, version, check)
            if not ok:
                return CheckResult(instance.id, stage, version, False, message)
            passed.append(message)
        return CheckResult(instance.id, stage, version, True, "; ".join(passed) or "no checks")

    # --- strategies (README "Strategies") -----------------------------------------------------------------------

    def observe_strategy(self, plugin: Plugin, instances: Sequence[InstanceRef]
                         ) -> Mapping[str, StrategyObservation]:
        """Where each instance of a blue-green, canary or StatefulSet plugin stands, from the list+watch caches
        (no request per instance); an in-place Deployment plugin has nothing to report."""
        workload = workload_of(plugin)
        if workload.strategy == "inPlace" and wl.kind_of(workload) != wl.STATEFULSET:
            return {}
        kinds = ops.kinds_for(workload)
        by_cluster: dict[str, list[InstanceRef]] = defaultdict(list)
        for ref in instances:
            by_cluster[ref.cluster].append(ref)
        result: dict[str, StrategyObservation] = {}
        caches: dict[str, dict[str, Informer]] = {}
        for cluster, refs in by_cluster.items():
            try:
                caches[cluster] = {name: self.informer(cluster, kind) for name, kind in kinds.items()}
            except ClusterAccessError as err:
                result.update({r.id: ops.unobserved(workload, r, str(err)) for r in refs})
        deadline = time.monotonic() + self.sync_timeout
        for cluster, informers in caches.items():
            for informer in informers.values():
                informer.wait_synced(max(0.0, deadline - time.monotonic()))
            broken = next((i for i in informers.values() if not i.healthy()), None)
            for ref in by_cluster[cluster]:
                if broken is None:
                    result[ref.id] = ops.observe_one(plugin, workload, ref, informers)
                else:
                    result[ref.id] = ops.unobserved(workload, ref, *unhealthy(cluster, broken))
        return result

    def preflight(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, Preflight]:
        """What each instance lacks for the plugin's strategy (a Service, an HTTPRoute that sends to it...)."""

        def one(ref: InstanceRef) -> Preflight:
            try:
                return Preflight(ref.id, tuple(ops.preflight(self._instance(plugin, ref.id))))
            except ClusterUnreachable as err:
                return Preflight(ref.id, (f"cluster {ref.cluster} unreachable: {err}",), reachable=False)
            except (ClusterAccessError, ApiException) as err:
                return Preflight(ref.id, (f"cluster {ref.cluster}: {ops.reason(err)}",))

        found: list[Preflight] = ops.for_all(instances, lambda r: r.cluster, one, self.parallel)
        return {p.instance: p for p in found}

    def perform(self, plugin: Plugin, operation: Operation) -> OperationResult | CleanupResult:
        """One strategy operation on one instance; never raises."""
        name = type(operation).__name__
        try:
            it = self._instance(plugin, operation.instance)
        except ClusterAccessError as err:
            if isinstance(operation, Cleanup):
                return CleanupResult(operation.instance, (), outcome="error", message=str(err))
            return OperationResult(operation.instance, name, "error", str(err))
        if isinstance(operation, Cleanup):
            return ops.cleanup(it, operation)
        return ops.attempt(name, operation.instance, lambda: ops.OPERATIONS[type(operation)](it, operation))

    def perform_all(self, plugin: Plugin, operations: Sequence[Operation]
                    ) -> list[OperationResult | CleanupResult]:
        """`perform` on many instances, clusters in parallel; the results in the operations' order."""
        done: list[OperationResult | CleanupResult] = ops.for_all(
            operations, lambda o: o.instance.partition("/")[0], lambda o: self.perform(plugin, o), self.parallel)
        return done

    def smoke(self, plugin: Plugin, request: RunSmoke) -> SmokeResult:
        """The policy's smoke tests on one instance (blocks up to the checks' timeouts); never raises."""
        try:
            it = self._instance(plugin, request.instance)
        except ClusterAccessError as err:
            return SmokeResult(request.instance, request.version, request.after, False, str(err))
        return ops.run_smoke(it, request)

    def _instance(self, plugin: Plugin, instance: str) -> ops.Instance:
        cluster, _, namespace = instance.partition("/")
        return ops.Instance(self.api(cluster), plugin, workload_of(plugin), InstanceRef(cluster, namespace),
                            self.clock.now)


def serving(seen: StrategyObservation) -> InstanceObservation:
    """A blue-green instance as the engine's observation sees it: the color its Service selects (the plugin's own
    Deployment before the first switch)."""
    assert isinstance(seen, BlueGreenObservation)
    if not seen.reachable:
        return InstanceObservation(None, False, reachable=False, message=seen.message)
    if seen.message:
        return InstanceObservation(None, False, message=seen.message, missing=seen.missing)
    track = seen.colors.get(seen.serving or "blue")
    if track is None:
        return InstanceObservation(None, False, message=f"no Deployment for the {seen.serving} color")
    return InstanceObservation(track.version, track.ready, track.failed, message=track.message)


def unhealthy(cluster: str, informer: Informer) -> tuple[str, bool]:
    """Why a cache has nothing to say, and whether the cluster answered at all (a kind it does not serve)."""
    why = informer.error or "no answer yet"
    if informer.plural == "httproutes" and ": 404" in why:
        return (f"cluster {cluster} serves no HTTPRoute (gateway.networking.k8s.io/v1): install the Gateway API "
                "to use strategy canary"), True
    return f"cluster {cluster} unreachable: {why}", False

