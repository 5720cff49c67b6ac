"""`grayops run` judged by the real Prometheus: the sim fleet's exporter and grayops' own /metrics are scraped every
second, and every batch is judged with the default PromQL of grayops.yaml.

A good version is promoted, a bad one (error rate) and a slow one (latency) are rolled back, a silent exporter
is Inconclusive and pauses with a "no data" alert, a stopped Prometheus gives Error readings and a pause after
the limit, and Prometheus itself shows grayops' success rate and durations afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Human, free_port, make_fleet_repo, plugin_yaml, remote_status, stop_process, wait_for
from tests.prom.conftest import StartPrometheus
from tests.prom.promserver import Prometheus

CLUSTERS = "".join(f"  - {{name: {name}, labels: {{tier: {name.split('-')[0]}}}, driver: sim}}\n"
                   for name in ("canary-1", "prod-1", "prod-2"))
FAULTS = """\
sim:
  upgradeSeconds: 0.2
  faults:
    - {version: "2.0.0", errorRate: 0.2}
    - {version: "2.1.0", latencyP99Ms: 900}
    - {version: "3.0.0", noMetrics: true}
"""


def settings(prometheus_url: str) -> str:
    return ("apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n" + CLUSTERS
            + f"metrics: {{provider: prometheus, url: '{prometheus_url}', timeout: 2s, minWindow: 4s}}\n" + FAULTS)


def policy(bake: str = "5s", analysis: str = "") -> str:
    return f"""\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {{name: judged}}
spec:
  order: {{label: tier, values: [canary, prod]}}
  batches:
    - {{name: canary, size: 1, bake: {bake}}}
    - {{name: all, size: 100%, bake: {bake}}}
  instanceTimeout: 30s
  analysis:
    interval: 1s
    metrics:
      - {{name: error_rate, max: 0.05}}
      - {{name: latency_p99_ms, max: 500}}
{analysis}"""


@dataclass
class System:
    human: Human
    workdir: Path
    prometheus: Prometheus
    daemon: subprocess.Popen[bytes]
    log: Path
    listen: int

    def status(self) -> dict[str, Any]:
        return remote_status(self.human, "billing") or {}

    def wait_phase(self, phase: str, version: str, timeout: float = 90) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            if self.daemon.poll() is not None:
                raise AssertionError(f"grayops exited with {self.daemon.returncode}:\n{self.log.read_text()[-3000:]}")
            status = self.status()
            return status if status.get("phase") == phase and status.get("targetVersion") == version else None
        return wait_for(reached, timeout=timeout, what=f"billing {version} {phase} (log: {self.log})")

    def commit_version(self, version: str) -> None:
        self.human.pull()
        self.human.commit(f"billing {version}", {"plugins/billing.yaml": plugin_yaml("billing", version, "judged")})




def start_system(root: Path, start_prometheus: StartPrometheus, policy_text: str, version: str,
                 extra: dict[str, str] | None = None) -> System:
    sim_port, listen = free_port(), free_port()
    prometheus = start_prometheus([f"127.0.0.1:{sim_port}", f"127.0.0.1:{listen}"])
    human = make_fleet_repo(root)
    human.commit(f"fleet, billing {version}", {
        "grayops.yaml": settings(prometheus.url),
        "policies/judged.yaml": policy_text,
        "plugins/billing.yaml": plugin_yaml("billing", version, "judged"),
        **(extra or {}),
    })
    workdir, log = root / "work", root / "grayops.log"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir", str(workdir),
         "--interval", "0.2", "--poll", "0.5", "--sim-metrics-port", str(sim_port),
         "--listen", f"127.0.0.1:{listen}", "--no-progress"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return System(human, workdir, prometheus, daemon, log, listen)


def stop(system: System) -> None:
    stop_process(system.daemon)


def verdict(status: dict[str, Any], batch: str, metric: str) -> dict[str, Any]:
    found = next(b for b in status["batches"] if b["name"] == batch)
    last: dict[str, Any] = found["verdicts"][metric]["last"]
    return last


# --- good, bad, slow: one fleet, one Prometheus, one grayops, three versions in turn --------------------------


@pytest.fixture(scope="module")
def fleet_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    root = tmp_path_factory.mktemp("prom-rollouts")
    started: list[Prometheus] = []

    def start(targets: Any) -> Prometheus:
        server = Prometheus(root / "prometheus", targets)
        started.append(server)
        return server.start()

    system = start_system(root, start, policy(), "1.0.0")
    try:
        yield system
    finally:
        stop(system)
        for server in started:
            server.stop()


class TestJudgedByPrometheus:
    def test_a_good_version_is_promoted_on_real_readings(self, fleet_system: System) -> None:
        status = fleet_system.wait_phase("Succeeded", "1.0.0")
        assert [b["phase"] for b in status["batches"]] == ["Passed", "Passed"]
        for batch in ("canary", "all"):
            error_rate, latency = verdict(status, batch, "error_rate"), verdict(status, batch, "latency_p99_ms")
            assert error_rate["verdict"] == "Successful" and error_rate["value"] < 0.05
            assert latency["verdict"] == "Successful" and latency["value"] < 500

    def test_a_bad_version_is_rolled_back_on_its_error_rate(self, fleet_system: System) -> None:
        fleet_system.commit_version("2.0.0")
        status = fleet_system.wait_phase("RolledBack", "2.0.0")
        canary = status["batches"][0]
        assert canary["phase"] == "Failed" and "error_rate" in canary["reason"]
        reading = verdict(status, "canary", "error_rate")
        assert reading["verdict"] == "Failed" and reading["value"] == pytest.approx(0.2, abs=0.03)
        assert {i["version"] for i in status["instances"].values()} == {"1.0.0"}
        assert "ALERT metric_threshold" in fleet_system.log.read_text()

    def test_a_slow_version_is_rolled_back_on_its_latency(self, fleet_system: System) -> None:
        fleet_system.commit_version("2.1.0")
        status = fleet_system.wait_phase("RolledBack", "2.1.0")
        canary = status["batches"][0]
        assert canary["phase"] == "Failed" and "latency_p99_ms" in canary["reason"]
        reading = verdict(status, "canary", "latency_p99_ms")
        assert reading["verdict"] == "Failed" and reading["value"] == pytest.approx(900, rel=0.1)

    def test_prometheus_scrapes_grayops_own_metrics(self, fleet_system: System) -> None:
        prom = fleet_system.prometheus
        body = urllib.request.urlopen(f"http://127.0.0.1:{fleet_system.listen}/metrics", timeout=5).read().decode()
        assert 'version_upgrade_success_rate{plugin="billing"}' in body
        # One success out of three finished rollouts, as Prometheus scraped it.
        rate = wait_for(lambda: prom.values('version_upgrade_success_rate{plugin="billing"} < 0.4'), timeout=20,
                        what="the success rate after the two rollbacks")
        assert rate == [pytest.approx(1 / 3)]
        batches = wait_for(lambda: prom.values('version_upgrade_batch_duration_minutes_count{plugin="billing"} >= 4'),
                           timeout=20, what="batch durations")  # 2 passed of 1.0.0, 1 failed each of 2.0.0 and 2.1.0
        assert batches == [4.0]
        rollbacks = wait_for(lambda: prom.values('version_rollback_duration_ms_count{plugin="billing"} >= 2'),
                             timeout=20, what="rollback durations")
        assert rollbacks == [2.0]
        assert prom.values('version_rollback_duration_ms_sum{plugin="billing"}')[0] > 0
        alerts = prom.values('version_upgrade_alert_total{plugin="billing",type="batch_failed"}')
        assert alerts == [2.0]
        assert prom.values("grayops_reconcile_tick_duration_seconds_count")[0] > 10
        ready = urllib.request.urlopen(f"http://127.0.0.1:{fleet_system.listen}/readyz", timeout=5)
        assert ready.status == 200

    def test_the_dashboard_queries_run_on_the_real_prometheus(self, fleet_system: System) -> None:
        dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy" / "grafana-dashboard.json").read_text())
        answered = {}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = (target["expr"].replace("$plugin", "billing").replace("$__rate_interval", "1m")
                        .replace("$__range", "1h"))
                answered[panel["title"]] = fleet_system.prometheus.query(expr)  # a bad query raises HTTPError 400
        assert answered["Upgrade success rate (target >= 98%)"]
        assert answered["Finished rollouts by result"]
        assert answered["Batch duration (minutes), p50 / p95"]
        assert answered["Rollback duration (ms), p50 / p95 (target < 3 min)"]
        assert answered["Alerts by type"]


# --- silence and outage -----------------------------------------------------------------------------------------


def test_a_silent_exporter_is_inconclusive_then_pauses_with_a_no_data_alert(
        tmp_path: Path, start_prometheus: StartPrometheus) -> None:
    system = start_system(tmp_path, start_prometheus, policy("5s", "    noData: pause\n    noDataTimeout: 3s\n"),
                          "3.0.0")
    try:
        status = system.wait_phase("Paused", "3.0.0")
        assert "no data for" in status["reason"] and "noData: pause" in status["reason"]
        reading = verdict(status, "canary", "error_rate")
        assert reading["verdict"] == "Inconclusive" and reading["value"] is None
        assert status["batches"][0]["phase"] != "Passed" and len(status["batches"]) == 1
        assert "ALERT metrics_missing" in system.log.read_text()
    finally:
        stop(system)


def test_a_stopped_prometheus_gives_error_readings_and_a_pause_after_the_limit(
        tmp_path: Path, start_prometheus: StartPrometheus) -> None:
    system = start_system(tmp_path, start_prometheus, policy("10m", "    consecutiveErrorLimit: 2\n"), "1.0.0")
    try:
        status = wait_for(lambda: (s := system.status()) and s.get("batches") and
                          s["batches"][0]["phase"] == "Baking" and s, timeout=60, what="the canary baking")
        assert status["phase"] == "Progressing"
        system.prometheus.stop()
        status = system.wait_phase("Paused", "1.0.0", timeout=60)
        assert "3 failed queries in a row" in status["reason"] and "unreachable" in status["reason"]
        reading = verdict(status, "canary", "error_rate")
        assert reading["verdict"] == "Error"
        assert "ALERT metrics_error" in system.log.read_text()
        assert status["batches"][0]["phase"] == "Baking"  # paused, not passed, not failed
    finally:
        stop(system)


# --- an Argo Rollouts AnalysisTemplate, unchanged in the fleet repository, judging the batches -----------------

ARGO_TEMPLATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: error-ratio
spec:
  args:
  - name: plugin
  - name: version
  metrics:
  - name: error-ratio
    interval: 1s
    failureLimit: 0
    failureCondition: result[0] > 0.05
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(rate(http_requests_total{plugin="{{args.plugin}}",version="{{args.version}}",code=~"5.."}[5s]))
          /
          sum(rate(http_requests_total{plugin="{{args.plugin}}",version="{{args.version}}"}[5s]))
"""

ARGO_POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: judged}
spec:
  order: {label: tier, values: [canary, prod]}
  batches:
    - {name: canary, size: 1, bake: 4s}
    - {name: all, size: 100%, bake: 4s}
  instanceTimeout: 30s
  analysis:
    interval: 1s
    templates:
      - {kind: AnalysisTemplate, name: error-ratio, args: {plugin: "{plugin}", version: "{version}"}}
"""


def test_an_argo_rollouts_template_promotes_and_rolls_back(tmp_path: Path,
                                                          start_prometheus: StartPrometheus) -> None:
    system = start_system(tmp_path, start_prometheus, ARGO_POLICY, "1.0.0",
                          {"analysis/error-ratio.yaml": ARGO_TEMPLATE})
    try:
        status = system.wait_phase("Succeeded", "1.0.0")
        reading = verdict(status, "all", "error-ratio")
        assert reading["verdict"] == "Successful" and reading["value"] < 0.05
        system.commit_version("2.0.0")
        status = system.wait_phase("RolledBack", "2.0.0")
        reading = verdict(status, "canary", "error-ratio")
        assert reading["verdict"] == "Failed" and reading["value"] == pytest.approx(0.2, abs=0.03)
        assert "error-ratio" in status["batches"][0]["reason"]
    finally:
        stop(system)
