"""Acknowledging a critical alert through the API (README "Owners and escalation"): `POST /api/v1/alerts/{id}/ack`
under uvicorn, a commit in the fleet repository that says who acknowledged, and the refusals that commit nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.effects import Event
from reconciler.core.escalation import OpenAlert, alert_id
from reconciler.core.fleet import load_fleet
from reconciler.core.model import Phase, Severity
from tests.api.test_api_http import api_on
from tests.conftest import FAST_POLICY, FakeClock, Human, plugin_yaml, remote_file, settings_yaml

TOKENS = {"pager": "gro_pager_0123456789abcdef", "reader": "gro_reader_0123456789abcdef"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


ACCESS = f"""\
apiVersion: grayops.dev/v1
kind: Access
people:
  - {{name: alice, slack: U0OPS1}}
tokens:
  - {{name: pager, sha256: "{digest(TOKENS['pager'])}", scopes: [read, ack], person: alice}}
  - {{name: reader, sha256: "{digest(TOKENS['reader'])}", scopes: [read], person: alice}}
"""
CLOCK = FakeClock()
RAISED = Event("billing", "0123456789", "1.6.0", "batch_failed", Severity.CRITICAL, "batch canary failed",
               Phase.ROLLING_BACK, CLOCK.now())
ALERT = replace(RAISED, alert_id=alert_id(RAISED))


@dataclass
class Served:
    human: Human
    base: str
    woken: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, token: str | None = "pager", **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {TOKENS[token]}"} if token else {}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def commits(self) -> list[str]:
        return self.human.log("--format=%H").split()


@pytest.fixture
def served(fleet_repo: Human, tmp_path: Path) -> Iterator[Served]:
    fleet_repo.commit("fleet", {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 1}), "policies/fast.yaml": FAST_POLICY,
        "access.yaml": ACCESS, "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", extra="  owners: [alice]\n")})
    woken: list[str] = []
    with api_on(fleet_repo, tmp_path / "work", woken, now=CLOCK.now,
                open_alerts=lambda: [OpenAlert(ALERT, 0)]) as base:
        yield Served(fleet_repo, base, woken)


def test_an_ack_is_a_commit_saying_who_acknowledged_and_the_revision_carries_it(served: Served) -> None:
    listed = served.call("GET", "/api/v1/alerts")
    assert listed.status_code == 200, listed.text
    assert [(a["id"], a["kind"], a["level"]) for a in listed.json()["alerts"]] == [(ALERT.alert_id, "batch_failed", 1)]
    answer = served.call("POST", f"/api/v1/alerts/{ALERT.alert_id}/ack")
    assert answer.status_code == 202, answer.text
    assert answer.json()["commit"] == served.commits()[0] and answer.json()["pushed"] is True
    message = served.human.log("-1", "--format=%B")
    assert message.startswith(f"acknowledge alert {ALERT.alert_id} of billing")
    assert "Grayops-Action: ack" in message and f"Grayops-Alert: {ALERT.alert_id}" in message
    assert "Requested-By: alice (api token pager)" in message
    assert served.woken == ["wake"]
    served.human.pull()
    files = {str(p.relative_to(served.human.clone)): p.read_text() for p in served.human.clone.rglob("*.yaml")}
    fleet = load_fleet(files, builtin_policies(), adapters=full_registry().models)
    [record] = fleet.acks["billing"]
    assert (record.alert, record.by) == (ALERT.alert_id, "alice (api token pager)")
    again = served.call("POST", f"/api/v1/alerts/{ALERT.alert_id}/ack")
    assert again.status_code == 200 and again.json()["commit"] is None
    assert "already acknowledged by alice (api token pager)" in again.json()["message"]


@pytest.mark.parametrize(("token", "alert", "status", "says"), [
    pytest.param(None, ALERT.alert_id, 401, "bearer token", id="no-token"),
    pytest.param("reader", ALERT.alert_id, 403, "lacks the scope ack", id="no-ack-scope"),
    pytest.param("pager", "billing", 400, "not an alert id", id="not-an-alert-id"),
    pytest.param("pager", "billing-ffffffffff", 404, "no open alert", id="not-open"),
    pytest.param("pager", "payments-ffffffffff", 404, "no plugin named 'payments'", id="unknown-plugin"),
])
def test_a_refused_ack_commits_nothing(served: Served, token: str | None, alert: str, status: int,
                                       says: str) -> None:
    before = served.commits()
    answer = served.call("POST", f"/api/v1/alerts/{alert}/ack", token=token)
    assert answer.status_code == status, answer.text
    assert says in answer.json()["error"]
    assert served.commits() == before
    assert remote_file(served.human, "approvals/billing.yaml") is None


def test_without_a_reconciler_an_ack_of_any_well_formed_id_is_recorded(fleet_repo: Human, tmp_path: Path) -> None:
    fleet_repo.commit("fleet", {
        "grayops.yaml": settings_yaml({"canary": 1}), "policies/fast.yaml": FAST_POLICY, "access.yaml": ACCESS,
        "plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    with api_on(fleet_repo, tmp_path / "work", [], now=CLOCK.now) as base:
        served = Served(fleet_repo, base)
        assert served.call("GET", "/api/v1/alerts").status_code == 404
        answer = served.call("POST", f"/api/v1/alerts/{ALERT.alert_id}/ack")
        assert answer.status_code == 202, answer.text
    recorded = yaml.safe_load(remote_file(fleet_repo, "approvals/billing.yaml") or "")
    assert recorded["acks"] == [{"alert": ALERT.alert_id, "by": "alice (api token pager)",
                                 "at": "2025-03-01T12:00:00.000Z"}]
