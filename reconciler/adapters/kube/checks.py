"""Pre-checks and verify checks on one instance: http (through the API server's service proxy, or a URL
template), exec (a command in one ready pod of the instance, its output compared with `expect`), and metric
(through the metrics provider). Each returns (ok, message); none raises.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from reconciler.adapters.kube.client import ClusterApi, call, call_json, describe
from reconciler.adapters.ports import MetricsSource
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ExecCheck, HttpCheck, MetricSpec, Plugin, Workload

Obj = dict[str, Any]


def run_http(api: ClusterApi, ref: InstanceRef, plugin: Plugin, workload: Workload, version: str,
             check: HttpCheck, service_name: str | None = None) -> tuple[bool, str]:
    """GET through the API server's proxy to the Service (`service_name`, by default named like the workload),
    or to the check's URL."""
    if check.url:
        url = check.url.format(cluster=ref.cluster, namespace=ref.namespace, plugin=plugin.metadata.name,
                               version=version)
        try:
            with urllib.request.urlopen(url, timeout=check.timeout) as reply:  # the user's URL template
                status = reply.status
        except urllib.error.HTTPError as err:
            status = err.code
        except (urllib.error.URLError, OSError) as err:
            return False, f"http {url}: {err}"
        where = url
    else:
        target = service_name or workload.name
        service = f"{target}:{check.port}" if check.port else target
        where = f"service {ref.namespace}/{service} {check.path} on cluster {ref.cluster}"
        try:
            answer: Any = call(api.core.connect_get_namespaced_service_proxy_with_path, service, ref.namespace,
                          check.path.lstrip("/") or "/", _preload_content=False,
                          _request_timeout=(3.0, float(check.timeout)))
            status = answer.status
        except ApiException as err:
            status = err.status or 0
        except Exception as err:
            return False, f"http {where}: {describe(err)}"
    if status != check.status:
        return False, f"http {where} answered {status}, expected {check.status}"
    return True, f"http {where} answered {status}"


def ready_pod(api: ClusterApi, namespace: str, selector: dict[str, str]) -> Obj | None:
    labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
    answer = call_json(api.core.list_namespaced_pod, namespace, label_selector=labels)
    for pod in answer.get("items", []):
        conditions = (pod.get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            found: Obj = pod
            return found
    return None


def run_exec(api: ClusterApi, ref: InstanceRef, workload: Workload, workload_obj: Obj | None,
             check: ExecCheck) -> tuple[bool, str]:
    where = f"{workload.kind} {ref.namespace}/{workload.name} on cluster {ref.cluster}"
    if workload_obj is None:
        return False, f"exec: {where} not found"
    selector = ((workload_obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    command = " ".join(check.command)
    try:
        pod = ready_pod(api, ref.namespace, selector)
        if pod is None:
            return False, f"exec `{command}`: no ready pod of {where}"
        name = pod["metadata"]["name"]
        client = stream(api.core.connect_get_namespaced_pod_exec, name, ref.namespace, command=check.command,
                        container=workload.container, stderr=True, stdin=False, stdout=True, tty=False,
                        _preload_content=False)
        client.run_forever(timeout=check.timeout)
        output = client.read_stdout(timeout=0) if client.peek_stdout() else ""
        code = client.returncode
        client.close()
    except Exception as err:
        return False, f"exec `{command}` in {where}: {describe(err)}"
    if code not in (0, None):
        return False, f"exec `{command}` in pod {ref.namespace}/{name} exited {code}"
    if check.expect is not None and output.strip() != check.expect.strip():
        return False, f"exec `{command}` in pod {ref.namespace}/{name} answered {output.strip()!r}, " \
                      f"expected {check.expect!r}"
    return True, f"exec `{command}` in pod {ref.namespace}/{name} answered {output.strip()!r}"


def run_metric(metrics: MetricsSource | None, plugin: Plugin, ref: InstanceRef, version: str,
               check: Check) -> tuple[bool, str]:
    assert check.type == "metric"
    if metrics is None:
        return False, f"metric {check.name}: no metrics provider"
    spec = MetricSpec(name=check.name, max=check.max, min=check.min)
    measured = metrics.measure(plugin, version, spec, [ref], 60.0)
    if measured.error:
        return False, f"metric {check.name}: {measured.error}"
    if measured.value is None:
        return False, f"metric {check.name}: no data for {ref.id}"
    if (check.max is not None and measured.value > check.max) or (check.min is not None and measured.value < check.min):
        return False, f"metric {check.name} = {measured.value:g} on {ref.id}, outside its bounds"
    return True, f"metric {check.name} = {measured.value:g}"
