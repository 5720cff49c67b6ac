"""The HTTP API served by `grayops run --listen` on the same port as the web view and the telemetry, acting on the
running reconciler's clone and waking it (README "HTTP API"): a child process on a real git remote and a sim fleet,
called with a real HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.api.test_api_http import ACCESS, TOKENS
from tests.conftest import (
    Human,
    plugin_yaml,
    remote_file,
    remote_status,
    settings_yaml,
    wait_for,
)
from tests.web.test_web_browser import FAULTS, TIERS, WAIT, WATCH_POLICY
from tests.web.test_web_run import run_listening


@pytest.fixture
def base(fleet_repo: Human, tmp_path: Path) -> Iterator[str]:
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS), "access.yaml": ACCESS,
                                               "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    for running in run_listening(fleet_repo, tmp_path):
        yield running.base
    assert "Traceback" not in running.text()  # after the stop: a shutdown traceback counts too


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
