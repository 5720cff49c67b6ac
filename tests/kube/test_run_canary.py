"""Traffic canaries, partition steps and the RollingUpdate knobs end to end (README "Strategies"): the real
`grayops run` in a child process drives emulated API servers on loopback through a kubeconfig, with its metrics read
over HTTP from a small JSON server (the `web` provider); what it did is read back from the history of the HTTPRoute,
the StatefulSet and the Deployment that the emulated API server keeps, and kubectl reads the route as a user
would."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import Human, plugin_yaml, remote_status, stop_process, wait_for
from tests.kube.emulator import Obj
from tests.kube.fleet import Fleet
from tests.kube.test_kubectl import run as kubectl
from tests.kube.test_run_blue_green import deployment, report, run_once

IMAGE = "registry.example.com/plugins/billing"
NS = "tenant-a"
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: steps}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 1s}
    - {name: all, size: 100%, bake: 1s}
  maxParallel: 4
  instanceTimeout: 30s
  verify:
    - {type: http, path: /health, port: 8080}
  analysis:
    interval: 250ms
    metrics:
      - {name: error_rate, max: 0.05}
EXTRA"""


class ErrorRates:
    """The metrics API: the error rate of each version (0.001 unless told), as JSON."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}
        rates = self.rates

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                version = parse_qs(urlsplit(self.path).query).get("version", [""])[0]
                body = json.dumps({"value": rates.get(version, 0.001)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/error-rate?version={{version}}"


@pytest.fixture
def rates() -> Iterator[ErrorRates]:
    server = ErrorRates()
    yield server
    server.http.shutdown()
    server.http.server_close()


def settings(kube: Fleet, rates: ErrorRates) -> str:
    clusters = "".join(f"  - {{name: {c.name}, labels: {{tier: {c.labels['tier']}}}, driver: kubernetes, "
                       f"kubeContext: {c.kube_context}, kubeconfig: {c.kubeconfig}}}\n" for c in kube.clusters())
    return ("apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n" + clusters + "metrics:\n  provider: web\n"
            f"  queries:\n    error_rate: {{url: \"{rates.url}\", jsonPath: $.value}}\n")


def canary_plugin(version: str) -> str:
    return plugin_yaml("billing", version, "steps", (
        f"  namespaces: [{NS}]\n"
        "  workload: {kind: Deployment, name: billing, container: billing, strategy: canary, service: billing, "
        "traffic: {gatewayRoute: billing, steps: [10, 50, 100]}}\n"))  # no image: no registry to ask


def seed_canary(human: Human, kube: Fleet, rates: ErrorRates, version: str, bake: str = "1s") -> None:
    for emulator in kube.emulators.values():
        emulator.add_deployment(NS, "billing", f"{IMAGE}:1.0.0", replicas=2)
        emulator.add_service(NS, "billing", {"app": "billing"})
        emulator.add_httproute(NS, "billing", "billing")
    human.commit(f"billing on kubernetes, a traffic canary, {version}", {
        "grayops.yaml": settings(kube, rates),
        "policies/steps.yaml": POLICY.replace("EXTRA", "").replace("bake: 1s", f"bake: {bake}"),
        "plugins/billing.yaml": canary_plugin(version),
    })


def history(kube: Fleet, cluster: str, plural: str, name: str) -> list[Obj]:
    """Every version of one object the emulated API server stored, in order."""
    return [obj for _, key, _, obj in kube[cluster].events if key[2] == plural and obj["metadata"]["name"] == name
            and obj["metadata"].get("namespace", NS) == NS]


def canary_weights(kube: Fleet, cluster: str) -> list[int]:
    """The canary's share of the route at each change of its weights, repeats folded."""
    shares: list[int] = []
    for route in history(kube, cluster, "httproutes", "billing"):
        refs = {r["name"]: int(r.get("weight", 1)) for r in route["spec"]["rules"][0]["backendRefs"]}
        share = round(100 * refs.get("billing-canary", 0) / sum(refs.values()))
        if not shares or shares[-1] != share:
            shares.append(share)
    return shares


def route_seen_by_kubectl(kube: Fleet, cluster: str) -> str:
    done = kubectl(kube.kubeconfig, "--context", cluster, "get", "httproute", "billing", "-n", NS, "-o",
                   "jsonpath={.spec.rules[0].backendRefs}")
    assert done.returncode == 0, done.stderr
    return done.stdout


def image(obj: Obj | None) -> str:
    assert obj is not None
    return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])


def test_a_canary_takes_10_50_100_percent_each_step_judged_then_is_promoted(
        fleet_repo: Human, kube: Fleet, rates: ErrorRates, tmp_path: Path) -> None:
    human = fleet_repo
    seed_canary(human, kube, rates, "1.1.0")
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    reasons = " | ".join(h["reason"] for h in status["history"])
    assert "batch canary: the canary at 10% passed its bake; next: the canary to 50%" in reasons
    assert "batch all: the canary at 100% passed its bake; next: promotion" in reasons
    for cluster in kube.emulators:
        assert canary_weights(kube, cluster) == [0, 10, 50, 100, 0], cluster
        assert image(deployment(kube, cluster, "billing")) == f"{IMAGE}:1.1.0"  # promoted in place
        assert deployment(kube, cluster, "billing-canary") is None  # cleaned up once settled
        refs = route_seen_by_kubectl(kube, cluster)
        assert '"name":"billing"' in refs and "billing-canary" not in refs  # the route as the team wrote it
    assert f"- kube-canary/{NS}: removed Deployment {NS}/billing-canary" in report(human, status)


def test_a_failing_metric_at_10_percent_takes_the_traffic_back_at_once(
        fleet_repo: Human, kube: Fleet, rates: ErrorRates, tmp_path: Path) -> None:
    human = fleet_repo
    rates.rates["2.0.0"] = 0.3
    seed_canary(human, kube, rates, "2.0.0")
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack", status
    assert "batch canary failed: error_rate" in " | ".join(h["reason"] for h in status["history"])
    assert canary_weights(kube, "kube-canary") == [0, 10, 0]  # never 50: back to 0 at once
    assert all(image(obj) == f"{IMAGE}:1.0.0" for obj in history(kube, "kube-canary", "deployments", "billing"))
    assert deployment(kube, "kube-canary", "billing-canary") is None
    for cluster in kube.emulators:
        if cluster != "kube-canary":  # its batch never started
            assert canary_weights(kube, cluster) == [0], cluster
    assert "billing-canary" not in route_seen_by_kubectl(kube, "kube-canary")


def test_a_reconciler_killed_at_a_step_resumes_at_that_step(
        fleet_repo: Human, kube: Fleet, rates: ErrorRates, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed_canary(human, kube, rates, "1.1.0", bake="3s")
    log = tmp_path / "run.log"
    with log.open("w") as out:
        child = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                                  "--workdir", str(workdir), "--once", "--interval", "0.05", "--poll", "0.2",
                                  "--no-progress"], stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: canary_weights(kube, "kube-canary")[-1] == 50, timeout=90,
                     what="the canary at 50% on kube-canary")
            child.kill()  # kill -9, mid-bake of the 50% step
            child.wait(timeout=10)
        finally:
            stop_process(child)
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    assert canary_weights(kube, "kube-canary") == [0, 10, 50, 100, 0]  # resumed at 50%, never back to 10


def test_partition_steps_go_75_50_0_percent_in_order_each_step_judged(
        fleet_repo: Human, kube: Fleet, rates: ErrorRates, tmp_path: Path) -> None:
    human = fleet_repo
    for emulator in kube.emulators.values():
        emulator.add_statefulset(NS, "billing", f"{IMAGE}:1.0.0", replicas=4)
        emulator.add_service(NS, "billing", {"app": "billing"})
    human.commit("billing as a StatefulSet, partition steps", {
        "grayops.yaml": settings(kube, rates),
        "policies/steps.yaml": POLICY.replace("EXTRA", "  partitionSteps: [75%, 50%, 0]\n"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.1.0", "steps", (
            f"  namespaces: [{NS}]\n  workload: {{kind: StatefulSet, name: billing, container: billing}}\n")),
    })
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    reasons = " | ".join(h["reason"] for h in status["history"])
    assert "batch canary: partition 3 passed its bake; next: partition 2" in reasons
    for cluster in kube.emulators:
        seen: list[int] = []
        for obj in history(kube, cluster, "statefulsets", "billing"):
            partition = obj["spec"]["updateStrategy"]["rollingUpdate"].get("partition", 0)
            if not seen or seen[-1] != partition:
                seen.append(partition)
        assert seen == [0, 3, 2, 0], cluster  # 75%, 50%, 0 of 4 replicas, one after the other
        emulator = kube[cluster]
        assert image(emulator.get(emulator.resource("statefulsets"), NS, "billing")) == f"{IMAGE}:1.1.0"


def test_max_surge_and_max_unavailable_hold_for_the_change_and_are_put_back(
        fleet_repo: Human, kube: Fleet, rates: ErrorRates, tmp_path: Path) -> None:
    human = fleet_repo
    for emulator in kube.emulators.values():
        emulator.add_deployment(NS, "billing", f"{IMAGE}:1.0.0", replicas=2)
        emulator.add_service(NS, "billing", {"app": "billing"})
    human.commit("billing in place, with the policy's knobs", {
        "grayops.yaml": settings(kube, rates),
        "policies/steps.yaml": POLICY.replace("EXTRA", "  maxSurge: 1\n  maxUnavailable: 0\n"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.1.0", "steps", (
            f"  namespaces: [{NS}]\n  workload: {{kind: Deployment, name: billing, container: billing}}\n")),
    })
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status
    team = {"maxSurge": "25%", "maxUnavailable": "25%"}  # what the Deployment had (the API server's defaults)
    for cluster in kube.emulators:
        settings_seen: list[tuple[str, dict[str, Any]]] = []
        for obj in history(kube, cluster, "deployments", "billing"):
            seen = (image(obj), obj["spec"]["strategy"]["rollingUpdate"])
            if not settings_seen or settings_seen[-1] != seen:
                settings_seen.append(seen)
        knobs = {"maxSurge": 1, "maxUnavailable": 0}
        # the image changes with the knobs, in one patch; they are put back once the instance is verified
        assert settings_seen == [(f"{IMAGE}:1.0.0", team), (f"{IMAGE}:1.1.0", knobs), (f"{IMAGE}:1.1.0", team)], \
            cluster
        now = deployment(kube, cluster, "billing")
        assert now is not None and "grayops.dev/original-strategy" not in now["metadata"].get("annotations", {})
