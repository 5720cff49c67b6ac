"""The HTTP API served by `grayops run --listen` on the same port as the web view and the telemetry, acting on the
running reconciler's clone and waking it (README "HTTP API"): a child process on a real git remote and a sim fleet,
called with a real HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import requests

from tests.api.test_api_http import ACCESS, SECRET, TOKENS, WEBHOOK, clone_locked, github_headers, github_push
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


def test_reads_and_push_webhooks_answer_while_a_tick_holds_the_clone(
        fleet_repo: Human, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosted by `grayops run`, the API reads the reconciler's revision in force and the states it committed, and
    a push webhook is verified with the secret it holds: none of them waits on the clone's lock."""
    monkeypatch.setenv("GRAYOPS_WEBHOOK_SECRET", SECRET)
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS + WEBHOOK),
                                               "access.yaml": ACCESS, "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    for running in run_listening(fleet_repo, tmp_path):
        answers_while_locked(running.base, tmp_path / "work")
        assert "Traceback" not in running.text()


def answers_while_locked(base: str, workdir: Path) -> None:
    status = partial(requests.get, f"{base}/api/v1/rollouts/billing", headers=auth("reader"), timeout=20)
    wait_for(lambda: (status().json().get("status") or {}).get("phase") == "Progressing", WAIT, "the rollout to start")
    with clone_locked(workdir):
        one = status()
        assert one.status_code == 200 and one.json()["status"]["targetVersion"] == "1.5.0", one.text
        listed = requests.get(f"{base}/api/v1/rollouts", headers=auth("reader"), timeout=20)
        assert [r["plugin"] for r in listed.json()["rollouts"]] == ["billing"], listed.text
        body = github_push()
        hook = requests.post(f"{base}/webhooks/git", data=body, headers=github_headers(body), timeout=20)
        assert hook.status_code == 202 and hook.json()["fetch"] is True, hook.text
