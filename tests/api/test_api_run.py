"""The HTTP API served by `grayops run --listen` on the same port as the web view and the telemetry, acting on the
running reconciler's clone and waking it (README "HTTP API"): a child process on a real git remote and a sim fleet,
called with a real HTTP client."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api.test_api_http import ACCESS, TOKENS
from tests.conftest import (
    Human,
    free_port,
    plugin_yaml,
    remote_file,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)
from tests.web.test_web_browser import FAULTS, TIERS, WAIT, WATCH_POLICY


@pytest.fixture
def base(fleet_repo: Human, tmp_path: Path) -> Iterator[str]:
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS), "access.yaml": ACCESS,
                                               "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    port, log = free_port(), tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(fleet_repo.remote), "--workdir",
             str(tmp_path / "work"), "--interval", "0.1", "--poll", "0.3", "--no-progress",
             "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or answers(url + "/healthz"), WAIT, "the port to answer")
        assert process.poll() is None, log.read_text(errors="replace")
        yield url
    finally:
        stop_process(process)
    assert "Traceback" not in log.read_text(errors="replace")


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:
        return False


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[token]}"}


def test_the_api_beside_the_web_view_pauses_the_running_rollout(fleet_repo: Human, base: str) -> None:
    wait_for(lambda: (remote_status(fleet_repo, "billing") or {}).get("phase") == "Progressing", WAIT,
             "the rollout to start")
    listed = requests.get(f"{base}/api/v1/rollouts", headers=auth("reader"), timeout=30)
    assert listed.status_code == 200 and "billing" in listed.text, listed.text
    assert requests.get(f"{base}/api/v1/rollouts", timeout=30).status_code == 401
    assert requests.post(f"{base}/api/v1/rollouts/billing/pause", headers=auth("reader"), json={},
                         timeout=30).status_code == 403
    paused = requests.post(f"{base}/api/v1/rollouts/billing/pause", headers=auth("oncall"),
                           json={"reason": "incident 42"}, timeout=30)
    assert paused.status_code == 202, paused.text
    assert "paused: true" in (remote_file(fleet_repo, "plugins/billing.yaml") or "")
    wait_for(lambda: (remote_status(fleet_repo, "billing") or {}).get("phase") == "Paused", WAIT,
             "the running reconciler to obey the pause")
    # The same port still serves the web view and the telemetry.
    assert "billing" in requests.get(base + "/", timeout=30).text
    assert requests.get(base + "/metrics", timeout=30).status_code == 200
