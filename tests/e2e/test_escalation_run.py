"""Escalation end to end (README "Owners and escalation"): the real `grayops run --listen` on the sim fleet, a
critical alert to level 1 at once, to level 2 (a loopback webhook receiver) once `after` passed without an
acknowledgement, and an acknowledgement through the API that closes it, recorded in git."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.conftest import (
    FAST_POLICY,
    Human,
    free_port,
    plugin_yaml,
    remote_file,
    settings_yaml,
    stop_process,
    wait_for,
)

TOKEN = "gro_pager_0123456789abcdef"
ACCESS = f"""\
apiVersion: grayops.dev/v1
kind: Access
people:
  - {{name: alice, slack: U0OPS1}}
tokens:
  - {{name: pager, sha256: "{hashlib.sha256(TOKEN.encode()).hexdigest()}", scopes: [read, ack], person: alice}}
"""


class Receiver:
    """A webhook receiver on loopback: what arrived, by path, with when (the system clock, as grayops')."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                event = json.loads(body)  # a CloudEvent: what grayops says is its data, and when its time
                with receiver._lock:
                    receiver.got.append((self.path, time.time(), {**event["data"], "at": event["time"]}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def at(self, path: str, kind: str) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            return [(when, doc) for p, when, doc in self.got if p == path and doc.get("kind") == kind]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.server.shutdown()


def test_a_critical_alert_not_acknowledged_escalates_and_an_ack_closes_it(fleet_repo: Human, tmp_path: Path,
                                                                          receiver: Receiver) -> None:
    settings = settings_yaml({"canary": 1, "prod": 2}, f"""\
sim:
  upgradeSeconds: 0.05
  faults: [{{version: "1.6.0", errorRate: 0.2}}]
notifiers:
  - {{type: log}}
  - {{type: webhook, name: oncall, url: "{receiver.url}/oncall"}}
  - {{type: webhook, name: team-lead, url: "{receiver.url}/lead"}}
  - {{type: webhook, name: director, url: "{receiver.url}/director"}}
escalation:
  - {{notify: oncall}}
  - {{after: 2s, notify: team-lead}}
  - {{after: 1h, notify: director}}
""")
    fleet_repo.commit("fleet: billing 1.6.0, a first install that fails", {
        "grayops.yaml": settings, "policies/fast.yaml": FAST_POLICY, "access.yaml": ACCESS,
        "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", extra="  owners: [alice]\n")})
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(fleet_repo.remote), "--workdir",
         str(tmp_path / "work"), "--interval", "0.05", "--poll", "0.2", "--no-progress", "--listen",
         f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        [(_, first)] = wait_for(lambda: receiver.at("/oncall", "batch_failed"), 90,
                                        "the batch_failed alert at level 1")
        alert = first["alertId"]
        assert alert.startswith("billing-") and "escalated" not in first
        [(escalated_at, second)] = wait_for(lambda: receiver.at("/lead", "batch_failed"), 60,
                                            "the batch_failed alert escalated to level 2")
        assert second["alertId"] == alert
        assert second["escalated"] == "not acknowledged after 2s: level 2, team-lead"
        raised = datetime.fromisoformat(second["at"].replace("Z", "+00:00")).timestamp()
        assert escalated_at - raised >= 1.99, "level 2 waits `after` from the alert (at, to the ms)"
        alerts = [doc for p, _, doc in receiver.got if p == "/lead" and "kind" in doc]  # lifecycle events have none
        assert {a["severity"] for a in alerts} == {"critical"}, "a later level hears no warnings"

        api = f"http://127.0.0.1:{port}/api/v1/alerts"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        listed = requests.get(api, headers=headers, timeout=30).json()["alerts"]
        assert {a["id"]: a["level"] for a in listed}[alert] == 2
        acked = requests.post(f"{api}/{alert}/ack", headers=headers, timeout=60)
        assert acked.status_code == 202, acked.text
        wait_for(lambda: alert not in {a["id"] for a in requests.get(api, headers=headers, timeout=30)
                                       .json()["alerts"]}, 60, "the reconciler to read the acknowledgement")
        message = fleet_repo.log("--format=%B", "-1", "--grep", "acknowledge alert")
        assert f"Grayops-Alert: {alert}" in message and "Requested-By: alice (api token pager)" in message
    finally:
        stop_process(process)


def run(fleet_repo: Human, workdir: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(fleet_repo.remote), "--workdir",
             str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"], stdout=out,
            stderr=subprocess.STDOUT)


def open_alerts(human: Human) -> list[dict[str, Any]]:
    """The open alerts the pushed status keeps (`openAlerts:`, beside the rollout's state)."""
    found: list[dict[str, Any]] = (yaml.safe_load(remote_file(human, "status/billing.yaml") or "{}") or {}).get(
        "openAlerts") or []
    return found


def test_an_open_alert_goes_on_escalating_after_a_restart(fleet_repo: Human, tmp_path: Path,
                                                         receiver: Receiver) -> None:
    """The open alert is kept in the rollout's status: a reconciler restarted between level 1 and level 2 sends
    level 2 when it is due, and level 1 is not told again."""
    settings = settings_yaml({"canary": 1, "prod": 2}, f"""\
sim:
  upgradeSeconds: 0.05
  faults: [{{version: "1.6.0", errorRate: 0.2}}]
notifiers:
  - {{type: webhook, name: oncall, url: "{receiver.url}/oncall"}}
  - {{type: webhook, name: team-lead, url: "{receiver.url}/lead"}}
  - {{type: webhook, name: director, url: "{receiver.url}/director"}}
escalation:
  - {{notify: oncall}}
  - {{after: 30s, notify: team-lead}}
  - {{after: 1h, notify: director}}
""")
    fleet_repo.commit("fleet: billing 1.6.0, a first install that fails", {
        "grayops.yaml": settings, "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    first = run(fleet_repo, tmp_path / "work", tmp_path / "run.log")
    try:
        [(_, alerted)] = wait_for(lambda: receiver.at("/oncall", "batch_failed"), 90, "the alert at level 1")
        alert = alerted["alertId"]
        kept = wait_for(lambda: [a for a in open_alerts(fleet_repo)
                                 if a["id"] == alert], 60, "the open alert in the pushed status")
        assert kept[0]["level"] == 1 and kept[0]["kind"] == "batch_failed"
    finally:
        stop_process(first)
    assert receiver.at("/lead", "batch_failed") == [], "the first process was to stop before level 2 was due"
    second = run(fleet_repo, tmp_path / "work", tmp_path / "run.log")
    try:
        [(_, escalated)] = wait_for(lambda: receiver.at("/lead", "batch_failed"), 120,
                                    "level 2 from the restarted reconciler")
        assert escalated["alertId"] == alert
        assert escalated["escalated"] == "not acknowledged after 30s: level 2, team-lead"
        wait_for(lambda: [a["level"] for a in open_alerts(fleet_repo)
                          if a["id"] == alert] == [2], 60, "the level reached in the pushed status")
        assert len(receiver.at("/oncall", "batch_failed")) == 1  # level 1 heard of it once, before the restart
    finally:
        stop_process(second)
