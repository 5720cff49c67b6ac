"""`version_upgrade_success_rate` after a restart: the real reconciler, a real git remote, real HTTP."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import FAST_POLICY, Human, free_port, grayops, plugin_yaml, settings_yaml, stop_process, wait_for

FAULTS = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"


def run_once(human: Human, workdir: Path) -> None:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress")
    assert done.returncode == 0, done.stderr


def get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())
    except (urllib.error.URLError, OSError):
        return None


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_success_rate_is_read_back_from_reports_after_a_restart(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("billing 1.5.0", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 3}, FAULTS),
                                   "policies/fast.yaml": FAST_POLICY,
                                   "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    run_once(human, workdir)  # 1.5.0 succeeds on 4 instances
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    run_once(human, workdir)  # 1.6.0 fails its canary and is rolled back

    port = free_port()
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress",
                               "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz") == "ok\n", what="the restarted reconciler's tick")
        metrics = samples(get(f"http://127.0.0.1:{port}/metrics") or "")
    finally:
        stop_process(daemon)
    billing = (("plugin", "billing"),)
    assert metrics[("version_upgrade_success_rate", billing)] == 0.5
    assert metrics[("version_upgrade_rollouts_total", (("plugin", "billing"), ("result", "succeeded")))] == 1
    assert metrics[("version_upgrade_rollouts_total", (("plugin", "billing"), ("result", "rolled_back")))] == 1
    assert metrics[("version_upgrade_instances_total", (("plugin", "billing"), ("result", "succeeded")))] == 4
    assert metrics[("version_upgrade_instances_total", (("plugin", "billing"), ("result", "rolled_back")))] == 1
    assert metrics[("version_upgrade_instance_success_rate", billing)] == 0.8
