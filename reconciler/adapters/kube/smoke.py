"""Smoke tests run as Kubernetes Jobs (README "Strategies"): one Job per rollout, instance and occasion, created
from the policy's Job spec (or a ConfigMap holding it), waited for until Complete or Failed within its timeout,
its failed pod's last log lines quoted, and deleted with its pods whatever the outcome.

The Job is named after the plugin, the occasion and the rollout (`billing-smoke-upgrade-3f2a9c1d8e`), so asking
again after a restart finds the same Job instead of starting a second one. Its containers get the environment
variables GRAYOPS_PLUGIN, GRAYOPS_VERSION, GRAYOPS_ROLLOUT, GRAYOPS_CLUSTER, GRAYOPS_NAMESPACE and
GRAYOPS_SERVICE (the Service that reaches what is tested: the serving one, or the preview or canary Service).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from reconciler.adapters.kube.client import ClusterApi, call, call_json, describe
from reconciler.adapters.kube.strategies import MANAGED_BY, MANAGER, PLUGIN_LABEL
from reconciler.core.spec import JobCheck
from reconciler.core.timing import format_duration

Obj = dict[str, Any]
SMOKE_LABEL = "grayops.dev/smoke"
POLL_SECONDS = 0.25
LOG_LINES = 5


@dataclass(frozen=True)
class SmokeJob:
    """Where and for what one smoke Job runs."""

    cluster: str
    namespace: str
    plugin: str
    version: str
    rollout_id: str
    after: str  # "upgrade" or "rollback"
    service: str  # what the Job's containers should test

    @property
    def name(self) -> str:
        suffix = f"-smoke-{self.after}-{self.rollout_id}"[:40]
        return f"{self.plugin[:63 - len(suffix)]}{suffix}".strip("-")

    @property
    def where(self) -> str:
        return f"smoke Job {self.namespace}/{self.name} on cluster {self.cluster}"


def job_spec(api: ClusterApi, job: SmokeJob, check: JobCheck) -> Obj:
    """The Job's spec: the policy's own, or the one a ConfigMap of the instance's namespace holds under job.yaml
    (a whole Job manifest there is fine too). Raises ValueError naming what is wrong."""
    if isinstance(check.template, dict):
        return copy.deepcopy(check.template)
    try:
        config = call_json(api.core.read_namespaced_config_map, check.template, job.namespace)
    except ApiException as err:
        if err.status == 404:
            raise ValueError(f"ConfigMap {job.namespace}/{check.template} not found on cluster {job.cluster}") from None
        raise
    text = (config.get("data") or {}).get("job.yaml")
    if text is None:
        raise ValueError(f"ConfigMap {job.namespace}/{check.template} has no key job.yaml")
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ValueError(f"ConfigMap {job.namespace}/{check.template} job.yaml: {err}".splitlines()[0]) from None
    spec = loaded.get("spec") if isinstance(loaded, dict) and loaded.get("kind") == "Job" else loaded
    pod = ((spec or {}).get("template") or {}).get("spec") if isinstance(spec, dict) else None
    if not isinstance(pod, dict) or not pod.get("containers"):
        raise ValueError(f"ConfigMap {job.namespace}/{check.template} job.yaml: a Job spec needs "
                         "template.spec.containers")
    assert isinstance(spec, dict)
    return spec


def manifest(job: SmokeJob, spec: Obj, timeout: float) -> Obj:
    """The Job grayops creates: labelled as its own, no retries unless the spec asks, stopped by the cluster at
    the timeout too, and told what to test through its environment."""
    spec = copy.deepcopy(spec)
    spec.setdefault("backoffLimit", 0)
    spec.setdefault("activeDeadlineSeconds", max(1, int(timeout)))
    pod = spec["template"].setdefault("spec", {})
    pod.setdefault("restartPolicy", "Never")
    env = [{"name": k, "value": v} for k, v in (
        ("GRAYOPS_PLUGIN", job.plugin), ("GRAYOPS_VERSION", job.version), ("GRAYOPS_ROLLOUT", job.rollout_id),
        ("GRAYOPS_CLUSTER", job.cluster), ("GRAYOPS_NAMESPACE", job.namespace), ("GRAYOPS_SERVICE", job.service))]
    for container in pod["containers"]:
        names = {e["name"] for e in env}
        container["env"] = [*[e for e in container.get("env") or [] if e.get("name") not in names], *env]
    labels = {MANAGED_BY: MANAGER, PLUGIN_LABEL: job.plugin, SMOKE_LABEL: job.after}
    meta = spec["template"].setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job.name, "namespace": job.namespace, "labels": labels,
                         "annotations": {"grayops.dev/rollout": job.rollout_id}},
            "spec": spec}


def finished(obj: Obj) -> str | None:
    """"Complete" or "Failed" once the Job's condition says so, else None."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond["type"])
    return None


def failure(obj: Obj) -> str:
    cond: Obj = next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == "Failed"), {})
    return f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip().rstrip(":")


def run_job(api: ClusterApi, job: SmokeJob, check: JobCheck) -> tuple[bool, str]:
    """Create (or find) the Job, wait until it completes or fails or the timeout passes, delete it; never raises
    for the cluster's answers (transport failures propagate, for the caller to report the cluster unreachable)."""
    try:
        spec = job_spec(api, job, check)
        obj = _create_or_find(api, job, manifest(job, spec, check.timeout))
        deadline = time.monotonic() + check.timeout
        while (state := finished(obj)) is None and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            obj = call_json(api.batch.read_namespaced_job, job.name, job.namespace)
        if state == "Complete":
            return True, f"{job.where} completed"
        if state == "Failed":
            return False, f"{job.where} failed: {failure(obj)}{_last_log(api, job)}"
        return False, f"{job.where} did not finish within {format_duration(check.timeout)}{_last_log(api, job)}"
    except ValueError as err:
        return False, f"{job.where}: {err}"
    except ApiException as err:
        return False, f"{job.where}: {describe(err)}"
    finally:
        remove(api, job)


def _create_or_find(api: ClusterApi, job: SmokeJob, body: Obj) -> Obj:
    try:
        return call_json(api.batch.create_namespaced_job, job.namespace, body)
    except ApiException as err:
        if err.status != 409:
            raise
        return call_json(api.batch.read_namespaced_job, job.name, job.namespace)  # asked before: the same Job


def _last_log(api: ClusterApi, job: SmokeJob) -> str:
    """"; last output: '...'" from the Job's newest pod, or nothing when there is none to read."""
    try:
        pods = call_json(api.core.list_namespaced_pod, job.namespace, label_selector=f"job-name={job.name}")
        items = sorted(pods.get("items") or [], key=lambda p: p["metadata"].get("creationTimestamp", ""))
        if not items:
            return ""
        answer: Any = call(api.core.read_namespaced_pod_log, items[-1]["metadata"]["name"], job.namespace,
                           tail_lines=LOG_LINES, _preload_content=False)
        lines = [line for line in answer.data.decode("utf-8", "replace").splitlines() if line.strip()]
    except Exception:  # the log is a courtesy; the verdict stands without it
        return ""
    return f"; last output: {' | '.join(lines)!r}" if lines else ""


def remove(api: ClusterApi, job: SmokeJob) -> None:
    """Delete the Job and its pods (background propagation: the batch/v1 default would orphan them)."""
    with contextlib.suppress(Exception):  # gone already, or the cluster is away: cleanup removes leftovers later
        call(api.batch.delete_namespaced_job, job.name, job.namespace, propagation_policy="Background")
