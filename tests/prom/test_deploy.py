"""deploy/: the Prometheus alert rules pass `promtool check rules` and their unit tests (`promtool test rules`);
the Grafana dashboard is valid JSON whose queries name only metrics grayops serves."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.telemetry import Telemetry
from tests.prom.promserver import binary

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus-alert-rules.yaml"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary("promtool"), *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120,
                          check=False)


def served_names() -> set[str]:
    """Every sample name grayops' /metrics can show (histogram and counter suffixes included)."""
    telemetry = Telemetry()
    names = set()
    for family in text_string_to_metric_families(telemetry.render().decode()):
        names.add(family.name)
        kind = family.type
        suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created")}
        names.update(family.name + s for s in suffixes.get(kind, ()))
    return names


def test_the_alert_rules_are_clean() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_the_alert_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "prometheus-alert-rules.test.yaml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_cover_seed_000s_thresholds() -> None:
    text = RULES.read_text()
    for expr in ('grayops_analysis_value{metric="error_rate"} > 0.05', 'type="rollback_failed"',
                 "time() - grayops_analysis_no_data_since_timestamp_seconds > 300",
                 "time() - grayops_batch_started_timestamp_seconds > 1800"):
        assert expr in text


def test_the_dashboard_queries_only_metrics_grayops_serves() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    used = {name for expr in exprs for name in re.findall(r"\b((?:version|grayops)_[a-z_]+)\b", expr)}
    assert used and used <= served_names(), used - served_names()
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for topic in ("success rate", "batch duration", "rollback duration", "alerts"):
        assert topic in titles
