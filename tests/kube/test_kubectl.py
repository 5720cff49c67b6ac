"""Fidelity: Debian's kubectl, pointed at the emulated API server, lists the same objects and its
`kubectl rollout status` agrees with the driver's readiness verdict for each Deployment case."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.kube.workloads import read_deployment
from reconciler.core.spec import Workload
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
