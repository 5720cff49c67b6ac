"""/openapi.json on `grayops run --listen` with Slack configured (README "HTTP API"): it names every route the one
server serves, and each route it names is served with that method. A child process, a real HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.api.test_api_http import ACCESS
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import fake_slack, slack_env
from tests.conftest import Human, plugin_yaml, settings_yaml
from tests.web.test_web_browser import FAULTS, TIERS, WATCH_POLICY
from tests.web.test_web_run import run_listening

__all__ = ["fake_slack", "slack_env"]  # fixtures

API = {
    ("/internal/version/upgrade/plan", "post"), ("/internal/version/upgrade/rollback", "post"),
    ("/api/v1/rollouts", "get"), ("/api/v1/rollouts/{plugin}", "get"), ("/api/v1/rollouts/{plugin}/report", "get"),
    *{(f"/api/v1/rollouts/{{plugin}}/{command}", "post") for command in ("pause", "resume", "retry", "approve")},
    ("/api/v1/rollouts/{plugin}/approval-tokens", "post"),
    ("/api/v1/alerts", "get"), ("/api/v1/alerts/{alert}/ack", "post"),
}
BODILESS = {"/api/v1/alerts/{alert}/ack"}  # any body is ignored
OTHERS = {("/webhooks/git", "post"), ("/slack/events", "post"), ("/metrics", "get"), ("/healthz", "get"),
          ("/readyz", "get"), ("/openapi.json", "get"), ("/", "get"), ("/rollouts/{plugin}", "get")}


@pytest.fixture
def base(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> Iterator[str]:
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS), "access.yaml": ACCESS,
                                               "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    for running in run_listening(fleet_repo, tmp_path):
        yield running.base


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in doc["paths"].items() for method in item}


def test_the_document_names_every_route_and_every_route_it_names_is_served(base: str) -> None:
    answer = requests.get(f"{base}/openapi.json", timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    doc = answer.json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["title"] == "grayops"
    assert operations(doc) >= API | OTHERS, sorted(API | OTHERS - operations(doc))
    schemas = doc["components"]["schemas"]
    for path, method in API:
        operation = doc["paths"][path][method]
        assert operation["security"] == [{"bearer": []}] and "401" in operation["responses"]
        if "{plugin}" in path:
            assert [p["name"] for p in operation["parameters"]] == ["plugin"]
        if method == "post" and path not in BODILESS:  # the body's schema, from the model the route validates it with
            ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas
    assert schemas["RollbackRequest"]["required"] == ["plugin", "reason"]
    assert "approvalToken" in schemas["CommandRequest"]["properties"]
    for path, item in doc["paths"].items():  # each named route answers its method (unauthenticated: 401 or so)
        url = base + path.format(plugin="billing", cluster="x", rollout="x", path="x", alert="billing-0123456789")
        for method, operation in item.items():
            with requests.request(method, url, timeout=30, data=b"", stream=True) as response:  # /events streams
                status = response.status_code
            assert status != 405, (method, path)
            if operation["tags"] != ["web view"]:
                assert status != 404, (method, path, status)
