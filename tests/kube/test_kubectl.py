"""Fidelity: Debian's kubectl, pointed at the emulated API server, lists the same objects and its
`kubectl rollout status` agrees with the driver's readiness verdict for each Deployment case; it reads the
Services, Endpoints, HTTPRoutes and Jobs of the strategies, and scales and deletes through the same API."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.kube.workloads import read_deployment
from reconciler.core.spec import Workload
from tests.conftest import wait_for
from tests.kube.emulator import Emulator, kubeconfig

WORKLOAD = Workload(kind="Deployment", name="x", container="app")
PROGRESSING = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}

# name -> (generation bumps after create, status)
CASES = {
    "complete": (0, {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2,
                     "availableReplicas": 2, "conditions": [PROGRESSING]}),
    "not-observed": (1, {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}),
    "updating": (0, {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}),
    "old-pending": (0, {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}),
    "unavailable": (0, {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}),
    "deadline": (0, {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
                     "conditions": [DEADLINE]}),
}


def kubectl() -> str:
    found = shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is not installed: .ci/run installs Debian's kubernetes-client; install it to run this")
    return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    emulator = Emulator("fidelity", controller=False).start()
    deployments = emulator.resource("deployments")
    for name, (bumps, status) in CASES.items():
        obj = emulator.create(deployments, "apps-ns", {
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": "example/app:1.0.0"}]}}}})
        for i in range(bumps):
            obj["spec"]["template"]["spec"]["containers"][0]["image"] = f"example/app:1.0.{i + 1}"
            obj = emulator.replace(deployments, "apps-ns", name, obj)
        emulator.replace(deployments, "apps-ns", name, {"status": status}, subresource="status")
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig([emulator])))
    try:
        yield emulator, path
    finally:
        emulator.stop()


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([kubectl(), "--kubeconfig", str(path), "--request-timeout", "10s", *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_kubectl_lists_the_same_objects(server: tuple[Emulator, Path]) -> None:
    _, path = server
    done = run(path, "get", "deployments", "--all-namespaces", "-o", "name")
    assert done.returncode == 0, done.stderr
    expected = {f"deployment.apps/{name}" for name in CASES}
    assert set(done.stdout.split()) == expected
    selected = run(path, "get", "deployments", "-n", "apps-ns", "-l", "app in (complete,deadline)", "-o", "name")
    assert set(selected.stdout.split()) == {"deployment.apps/complete", "deployment.apps/deadline"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rollout_status_agrees_with_our_readiness(server: tuple[Emulator, Path], name: str) -> None:
    emulator, path = server
    obj = emulator.get(emulator.resource("deployments"), "apps-ns", name)
    ours = read_deployment(obj, WORKLOAD)
    done = run(path, "rollout", "status", f"deployment/{name}", "-n", "apps-ns", "--watch=false")
    theirs_ready = done.returncode == 0 and "successfully rolled out" in done.stdout
    theirs_failed = done.returncode != 0 and "exceeded its progress deadline" in done.stderr
    assert (ours.ready, ours.failed is not None) == (theirs_ready, theirs_failed), (done.stdout, done.stderr)
    if not ours.ready and ours.failed is None:
        assert done.returncode == 0 and "Waiting for" in done.stdout, (done.stdout, done.stderr)


@pytest.fixture
def strategies(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    """A cluster mid blue-green and mid canary, with a smoke Job that failed: as the driver leaves them."""
    emulator = Emulator("strategies").start()
    emulator.job_handler = lambda job: ("fail", "curl: (7) Failed to connect to billing port 8080")
    for name, color in (("billing", "blue"), ("billing-green", "green")):
        emulator.add_deployment("shop", name, f"example/billing:1.{int(color == 'green')}.0")
        obj = emulator.get(emulator.resource("deployments"), "shop", name)
        labels = {"app": "billing", "grayops.dev/color": color}
        obj["spec"]["selector"]["matchLabels"] = labels
        obj["spec"]["template"]["metadata"]["labels"] = labels
        emulator.replace(emulator.resource("deployments"), "shop", name, obj)
    emulator.add_service("shop", "billing", {"app": "billing", "grayops.dev/color": "green"})
    emulator.add_service("shop", "billing-canary", {"app": "billing"})
    emulator.add_httproute("shop", "billing", "billing")
    routes = emulator.resource("httproutes", "gateway.networking.k8s.io", "v1")
    route = emulator.get(routes, "shop", "billing")
    route["spec"]["rules"][0]["backendRefs"] = [{"name": "billing", "port": 8080, "weight": 90},
                                                {"name": "billing-canary", "port": 8080, "weight": 10}]
    emulator.replace(routes, "shop", "billing", route)
    emulator.create(emulator.resource("jobs", "batch", "v1"), "shop", {
        "metadata": {"name": "billing-smoke-upgrade-3f2a9c1d8e"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "smoke", "image": "curl"}]}}}})
    wait_for(lambda: len(emulator.serving("shop", "billing")) == 2, what="the green pods behind the Service")
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig([emulator])))
    try:
        yield emulator, path
    finally:
        emulator.stop()


def test_kubectl_reads_services_endpoints_routes_and_jobs(strategies: tuple[Emulator, Path]) -> None:
    _, path = strategies
    selector = run(path, "get", "svc", "billing", "-n", "shop", "-o", "jsonpath={.spec.selector}")
    assert selector.returncode == 0, selector.stderr
    assert json.loads(selector.stdout) == {"app": "billing", "grayops.dev/color": "green"}
    endpoints = run(path, "get", "endpoints", "billing", "-n", "shop", "-o",
                    "jsonpath={.subsets[0].addresses[*].targetRef.name}")
    assert endpoints.returncode == 0, endpoints.stderr
    assert endpoints.stdout.split() and all(n.startswith("billing-green-") for n in endpoints.stdout.split())
    routes = run(path, "get", "httproute", "-n", "shop", "-o", "name")
    assert routes.stdout.split() == ["httproute.gateway.networking.k8s.io/billing"], routes.stderr
    weights = run(path, "get", "httproute", "billing", "-n", "shop", "-o",
                  "jsonpath={range .spec.rules[0].backendRefs[*]}{.name}={.weight} {end}")
    assert weights.stdout.split() == ["billing=90", "billing-canary=10"]
    resolved = run(path, "get", "httproute", "billing", "-n", "shop", "-o",
                   "jsonpath={.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}")
    assert resolved.stdout == "True"
    wait_for(lambda: run(path, "get", "jobs", "-n", "shop", "-o",
                         "jsonpath={.items[0].status.conditions[?(@.type==\"Failed\")].reason}"
                         ).stdout == "BackoffLimitExceeded", what="the Job failed")
    logs = run(path, "logs", "-n", "shop", "job/billing-smoke-upgrade-3f2a9c1d8e")
    assert logs.stdout.strip() == "curl: (7) Failed to connect to billing port 8080", logs.stderr


def test_kubectl_scales_and_deletes_through_the_same_api(strategies: tuple[Emulator, Path]) -> None:
    emulator, path = strategies
    scaled = run(path, "scale", "deployment/billing", "-n", "shop", "--replicas=0")
    assert scaled.returncode == 0, scaled.stderr
    obj = emulator.get(emulator.resource("deployments"), "shop", "billing")
    assert obj["spec"]["replicas"] == 0 and obj["metadata"]["generation"] == 3
    wait_for(lambda: not emulator.list(emulator.resource("pods", "", "v1"), "shop", "grayops.dev/color=blue")[0],
             what="the blue pods gone")
    done = run(path, "rollout", "status", "deployment/billing", "-n", "shop", "--watch=false")
    assert done.returncode == 0 and "successfully rolled out" in done.stdout, (done.stdout, done.stderr)
    deleted = run(path, "delete", "deployment/billing-green", "-n", "shop")
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: not emulator.serving("shop", "billing"), what="no pod left behind the Service")
    assert not emulator.list(emulator.resource("pods", "", "v1"), "shop", "grayops.dev/color=green")[0]
