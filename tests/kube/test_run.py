"""`grayops run` end to end on Kubernetes clusters: a real git remote, three emulated API servers on loopback,
and the real command in a child process that reaches them through a kubeconfig."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from reconciler.adapters.kube.workloads import PREVIOUS_ANNOTATION, ROLLOUT_ANNOTATION
from tests.conftest import Human, grayops, plugin_yaml, remote_file, remote_status
from tests.kube.fleet import Fleet

IMAGE = "registry.example.com/plugins/billing"
NAMESPACES = ("tenant-a", "tenant-b")
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: kube}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1}
    - {name: wave-1, size: 50%}
    - {name: all, size: 100%}
  maxParallel: 4
  instanceTimeout: 30s
  offline: OFFLINE
  verify:
    - {type: http, path: /health, port: 8080}
    - {type: exec, command: [billing-ctl, ping], expect: PONG}
"""
# No `image`: the Deployments keep their repository and change the tag. With one, its tag is looked up in the
# registry first (README "Supply chain"): tests/trust/test_run_preflight.py runs that on these clusters.
PLUGIN = ("  namespaces: [tenant-a, tenant-b]\n"
          "  workload: {kind: Deployment, name: billing, container: billing}\n")


def settings(kube: Fleet) -> str:
    clusters = "".join(f"  - {{name: {c.name}, labels: {{tier: {c.labels['tier']}}}, driver: kubernetes, "
                       f"kubeContext: {c.kube_context}, kubeconfig: {c.kubeconfig}}}\n" for c in kube.clusters())
    return "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n" + clusters + "metrics: {provider: sim}\n"


def seed(human: Human, kube: Fleet, version: str, offline: str = "wait") -> None:
    for emulator in kube.emulators.values():
        for ns in NAMESPACES:
            emulator.add_deployment(ns, "billing", f"{IMAGE}:1.0.0", replicas=2)
        emulator.exec_handler = lambda pod, cmd: ("PONG\n", 0)
    human.commit(f"fleet on kubernetes, billing {version}", {
        "grayops.yaml": settings(kube),
        "policies/kube.yaml": POLICY.replace("OFFLINE", offline),
        "plugins/billing.yaml": plugin_yaml("billing", version, "kube", PLUGIN),
    })


def images(kube: Fleet) -> set[str]:
    found = set()
    for emulator in kube.emulators.values():
        for ns in NAMESPACES:
            obj = emulator.get(emulator.resource("deployments"), ns, "billing")
            found.add(obj["spec"]["template"]["spec"]["containers"][0]["image"])
    return found


def run_once(human: Human, workdir: Path) -> subprocess.CompletedProcess[str]:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress", timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def test_run_once_rolls_a_good_version_out_and_a_bad_one_back(fleet_repo: Human, kube: Fleet, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, kube, "1.1.0")
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    assert {i["version"] for i in status["instances"].values()} == {"1.1.0"}
    assert len(status["instances"]) == 6
    assert images(kube) == {f"{IMAGE}:1.1.0"}

    for emulator in kube.emulators.values():
        emulator.bad_versions["2.0.0"] = "deadline"
    human.pull()
    human.commit("billing 2.0.0", {"plugins/billing.yaml": plugin_yaml("billing", "2.0.0", "kube", PLUGIN)})
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack", status
    assert "ProgressDeadlineExceeded" in "".join(h["reason"] for h in status["history"])
    assert images(kube) == {f"{IMAGE}:1.1.0"}
    canary = kube["kube-canary"].get(kube["kube-canary"].resource("deployments"), "tenant-a", "billing")
    assert canary["metadata"]["annotations"][PREVIOUS_ANNOTATION] == "2.0.0"
    assert canary["metadata"]["annotations"][ROLLOUT_ANNOTATION] == status["rolloutId"]
    assert 'version: "1.1.0"' in (remote_file(human, "plugins/billing.yaml") or "")  # reverted in git


def test_offline_skip_leaves_a_down_cluster_out(fleet_repo: Human, kube: Fleet, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, kube, "1.1.0", offline="skip")
    kube["kube-prod"].down()
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    prod = {k: v for k, v in status["instances"].items() if k.startswith("kube-prod/")}
    assert prod and all(v["step"] == "Skipped" and "skipped (offline: skip)" in v["message"] for v in prod.values())
    kube["kube-prod"].up()
    assert images(kube) == {f"{IMAGE}:1.1.0", f"{IMAGE}:1.0.0"}


def until(what: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_leader_lost_mid_rollout_stops_acting_at_once(fleet_repo: Human, kube: Fleet, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    for emulator in kube.emulators.values():
        emulator.interval = 0.5  # slow controllers: the rollout is still going when the lease is taken away
    seed(human, kube, "1.1.0")
    leases = kube["kube-canary"].resource("leases", "coordination.k8s.io")
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig)}
    log = (tmp_path / "run.log").open("w")
    child = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                              "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress",
                              "--leader-elect", "--lease-namespace", "grayops", "--lease-duration", "3"],
                             env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        until(lambda: any(e.patches for e in kube.emulators.values()))
        lease = kube["kube-canary"].get(leases, "grayops", "grayops")
        lease["spec"].update(holderIdentity="intruder", leaseDurationSeconds=3600)
        kube["kube-canary"].replace(leases, "grayops", "grayops", lease)
        until(lambda: "lost leadership" in (tmp_path / "run.log").read_text(), timeout=60)
        # a tick in progress when the Lease was taken may still finish its effects (README "Kubernetes
        # clusters": it stops before the next tick); the line says that tick is over
        until(lambda: "not its holder, standing by" in (tmp_path / "run.log").read_text(), timeout=60)
        patched = sum(len(e.patches) for e in kube.emulators.values())
        time.sleep(3)  # an absence needs a window: a leader would have patched several times in it (interval 0.05)
        assert sum(len(e.patches) for e in kube.emulators.values()) == patched
        assert child.poll() is None
        assert f"{IMAGE}:1.0.0" in images(kube)  # the rollout did not finish without a leader
    finally:
        child.terminate()
        child.wait(timeout=30)
        log.close()
    assert "lost leadership" in (tmp_path / "run.log").read_text()
