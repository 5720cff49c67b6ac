"""Blue-green end to end (README "Strategies"): the real `grayops run` in a child process drives three emulated API
servers on loopback through a kubeconfig, and kubectl reads the Service's selector as a user would."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from reconciler.adapters.kube.strategies import COLOR
from tests.conftest import Human, grayops, plugin_yaml, remote_file, remote_status, stop_process, wait_for
from tests.kube.emulator import ApiError, Emulator, Obj
from tests.kube.fleet import Fleet
from tests.kube.test_kubectl import run as kubectl
from tests.kube.test_run import settings

IMAGE = "registry.example.com/plugins/billing"
NS = "tenant-a"
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: bg}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1}
    - {name: all, size: 100%}
  maxParallel: 4
  instanceTimeout: TIMEOUT
  verify:
    - {type: http, path: /health, port: 8080}
  smoke:
    - type: job
      timeout: 30s
      template: {template: {spec: {containers: [{name: smoke, image: curlimages/curl:8.8.0, args: [-fsS, "http://billing:8080/health"]}]}}}
"""


def plugin(version: str, delay: str) -> str:
    return plugin_yaml("billing", version, "bg", (
        f"  namespaces: [{NS}]\n"
        "  workload: {kind: Deployment, name: billing, container: billing, strategy: blueGreen, service: billing, "
        f"scaleDownDelay: {delay}}}\n"))  # no image: the tag changes, no registry to ask (README "Supply chain")


def seed(human: Human, kube: Fleet, version: str, delay: str = "1s", timeout: str = "30s") -> None:
    for emulator in kube.emulators.values():
        emulator.add_deployment(NS, "billing", f"{IMAGE}:1.0.0", replicas=2)
        emulator.add_service(NS, "billing", {"app": "billing"})
    human.commit(f"billing on kubernetes, blue-green, {version}", {
        "grayops.yaml": settings(kube),
        "policies/bg.yaml": POLICY.replace("TIMEOUT", timeout),
        "plugins/billing.yaml": plugin(version, delay),
    })


def run_once(human: Human, workdir: Path) -> subprocess.CompletedProcess[str]:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress", timeout=180)
    assert done.returncode == 0, done.stderr
    return done


def selector(kube: Fleet, cluster: str) -> str:
    """The Service's selector as kubectl shows it."""
    done = kubectl(kube.kubeconfig, "--context", cluster, "get", "svc", "billing", "-n", NS, "-o",
                   "jsonpath={.spec.selector}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def deployment(kube: Fleet, cluster: str, name: str, plural: str = "deployments") -> Obj | None:
    emulator = kube[cluster]
    resource = emulator.resource(plural) if plural == "deployments" else emulator.resource(plural, "", "v1")
    try:
        return emulator.get(resource, NS, name)
    except ApiError:  # not found
        return None


def failing_once_it_serves(emulator: Emulator, version: str) -> Callable[[str, str, str], tuple[int, str]]:
    """An http handler that answers 500 while pods of `version` are behind the Service."""
    def answer(namespace: str, service: str, path: str) -> tuple[int, str]:
        bad = any(p["spec"]["containers"][0]["image"].endswith(f":{version}")
                  for p in emulator.serving(namespace, service))
        return (500, "boom") if bad else (200, "ok")
    return answer


def report(human: Human, status: dict[str, object]) -> str:
    path = f"reports/billing/{status['targetVersion']}-{status['rolloutId']}.md"
    return remote_file(human, path) or ""


def test_a_version_is_staged_beside_the_old_switched_to_then_the_old_color_scaled_down(
        fleet_repo: Human, kube: Fleet, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, kube, "1.1.0")
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    for cluster in kube.emulators:
        assert f'"{COLOR}":"green"' in selector(kube, cluster)
        green, blue = deployment(kube, cluster, "billing-green"), deployment(kube, cluster, "billing")
        assert green is not None and green["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0"
        assert blue is not None and blue["spec"]["replicas"] == 0  # the old color, after scaleDownDelay
        assert blue["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.0.0"  # never in place
        assert deployment(kube, cluster, "billing-preview", "services") is None
    text = report(human, status)
    assert "## Cleanup" in text
    for cluster in kube.emulators:  # the old color is scaled down by then, by the delay or by the cleanup
        assert f"- {cluster}/{NS}: removed Service {NS}/billing-preview" in text


def test_a_new_color_never_ready_is_never_switched_to(fleet_repo: Human, kube: Fleet, tmp_path: Path) -> None:
    human = fleet_repo
    for emulator in kube.emulators.values():
        emulator.bad_versions["2.0.0"] = "stuck"
    seed(human, kube, "2.0.0", timeout="10s")
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack", status
    assert ("batch canary failed: 1 of 1 instance(s) failed (budget 0); kube-canary/tenant-a: upgrade to 2.0.0 not "
            "ready and verified within 10s") in "".join(h["reason"] for h in status["history"])
    assert f'"{COLOR}":"blue"' in selector(kube, "kube-canary")  # adopted, and the Service never switched
    assert selector(kube, "kube-prod") == '{"app":"billing"}'  # its batch never started
    assert deployment(kube, "kube-prod", "billing-green") is None
    assert deployment(kube, "kube-canary", "billing-green") is None  # the stuck color is removed once settled
    assert f"- kube-canary/{NS}: removed Deployment {NS}/billing-green; removed Service {NS}/billing-preview" in \
        report(human, status)


def test_a_rollback_switches_back_and_a_failing_smoke_job_escalates(fleet_repo: Human, kube: Fleet,
                                                                     tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, kube, "1.1.0")
    run_once(human, workdir)  # green serves 1.1.0; blue, the idle color, at 0
    for emulator in kube.emulators.values():  # 2.0.0 answers 500 once it serves; the rollback's smoke Job fails
        emulator.http_handler = failing_once_it_serves(emulator, "2.0.0")
        emulator.job_handler = lambda job: ("fail", "curl: (7) connection refused") \
            if "-rollback-" in job["metadata"]["name"] else ("complete", "")
    human.pull()
    human.commit("billing 2.0.0", {"plugins/billing.yaml": plugin("2.0.0", "10m")})
    done = run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Failed", status
    assert f'"{COLOR}":"green"' in selector(kube, "kube-canary")  # switched back: green runs 1.1.0
    green = deployment(kube, "kube-canary", "billing-green")
    assert green is not None and green["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0"
    assert "ALERT rollback_smoke_failed (critical): billing 2.0.0: kube-canary/tenant-a: smoke tests after rollback " \
           "to 1.1.0 failed" in done.stderr
    assert "curl: (7) connection refused" in done.stderr


@pytest.mark.parametrize("delay", ["3s"])
def test_a_cluster_lost_between_the_switch_and_the_scale_down_finishes_when_back(
        fleet_repo: Human, kube: Fleet, tmp_path: Path, delay: str) -> None:
    human = fleet_repo
    seed(human, kube, "1.1.0", delay=delay)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                                  "--workdir", str(tmp_path / "work"), "--once", "--interval", "0.05", "--poll",
                                  "0.2", "--no-progress"], stdout=out, stderr=subprocess.STDOUT)
        try:
            canary = kube["kube-canary"]
            services = canary.resource("services", "", "v1")
            wait_for(lambda: canary.get(services, NS, "billing")["spec"]["selector"].get(COLOR) == "green",
                     timeout=60, what="the canary's Service switched to green")
            # lost once green passed its checks: what it interrupts is the old color's scale-down and the cleanup
            wait_for(lambda: "batch canary passed" in log.read_text(), timeout=60, what="the canary batch passed")
            canary.down()
            wait_for(lambda: "Succeeded: 1.1.0 rolled out" in log.read_text(), timeout=60,
                     what="the rollout succeeded on the clusters still there")
            assert child.poll() is None  # not done while the old color cannot be scaled down
            canary.up()
            assert child.wait(timeout=120) == 0, log.read_text()
        finally:
            stop_process(child)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    assert f'"{COLOR}":"green"' in selector(kube, "kube-canary")
    blue = deployment(kube, "kube-canary", "billing")
    assert blue is not None and blue["spec"]["replicas"] == 0
    assert f"- kube-canary/{NS}: removed Service {NS}/billing-preview" in report(human, status)
