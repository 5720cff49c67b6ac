"""The PagerDuty notifier against a loopback Events API v2 that validates like PagerDuty: a critical alert opens
one incident per rollout, the rollout settling resolves it, 429 and 5xx are retried, the routing key stays out of
logs; and the whole path from `grayops run` on a bad version to the incident resolved after its rollback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from policies import builtin_policies
from reconciler.adapters.notify.pagerduty import PagerDutyNotifier, PagerDutySettings
from reconciler.cli import full_registry
from reconciler.core.effects import Event
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.core.model import Phase, Severity
from tests.adapters.fake_pagerduty import FakePagerDuty, fake_pagerduty, problems
from tests.conftest import FAST_POLICY, FakeClock, Human, plugin_yaml, remote_status, settings_yaml, wait_for

KEY = "R0UTINGKEYR0UTINGKEYR0UTINGKEY32"  # 32 characters, as PagerDuty's are
AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    yield from fake_pagerduty()


def alert(kind: str = "batch_failed", severity: Severity = Severity.CRITICAL, plugin: str = "billing",
          rollout: str = "r1", message: str = "billing 1.6.0: batch canary failed") -> Event:
    return Event(plugin, rollout, "1.6.0", kind, severity, message, Phase.PROGRESSING, AT, batch="canary")


def settled(phase: Phase, rollout: str = "r1") -> Event:
    return Event("billing", rollout, "1.6.0", "transition", Severity.INFO, f"billing is {phase.value}", phase, AT)


def notifier(fake: FakePagerDuty, key: str = KEY) -> PagerDutyNotifier:
    return PagerDutyNotifier(fake.url, key, min_backoff=0.05, rate_limit_wait=0.05)


def sent(fake: FakePagerDuty, notifier: PagerDutyNotifier) -> list[dict[str, Any]]:
    assert notifier.flush(30), "the PagerDuty queue did not drain"
    return fake.accepted()


def test_the_fake_refuses_what_pagerduty_refuses() -> None:
    good = {"routing_key": KEY, "event_action": "trigger",
            "payload": {"summary": "s", "source": "grayops", "severity": "critical"}}
    assert problems(good) == []
    assert problems({**good, "routing_key": ""}) == ["'routing_key' is missing or blank"]
    assert problems({**good, "event_action": "open"}) == [
        "'event_action' is missing or invalid (must be one of trigger, acknowledge, resolve)"]
    assert problems({"routing_key": KEY, "event_action": "resolve"}) == ["'dedup_key' is required to resolve"]
    assert problems({**good, "payload": {"summary": "x" * 1025, "source": "g", "severity": "bad"}}) == [
        "'payload.summary' is longer than 1024 characters",
        "'payload.severity' is invalid (must be one of critical, error, warning, info)"]


def test_a_critical_alert_triggers_one_incident_per_rollout(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pd.notify(alert())
    pd.notify(alert("rollback_failed", message="billing 1.6.0: rollback of prod-1 failed"))
    first, second = sent(pagerduty, pd)
    assert first["event_action"] == second["event_action"] == "trigger"
    assert first["dedup_key"] == second["dedup_key"] == "grayops/billing/r1"
    assert first["routing_key"] == KEY
    assert first["payload"]["summary"] == "billing 1.6.0: batch canary failed"
    assert first["payload"]["severity"] == "critical" and first["payload"]["source"] == "grayops"
    assert first["payload"]["custom_details"] == {
        "plugin": "billing", "version": "1.6.0", "rolloutId": "r1", "kind": "batch_failed", "phase": "Progressing",
        "batch": "canary", "at": "2025-03-01T12:00:00.000Z"}
    assert [r.path for r in pagerduty.received] == ["/v2/enqueue", "/v2/enqueue"]
    assert pagerduty.received[0].headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("phase", "resolves"), [
    (Phase.SUCCEEDED, True), (Phase.ROLLED_BACK, True), (Phase.FAILED, False), (Phase.PAUSED, False),
    (Phase.ROLLING_BACK, False),
])
def test_the_rollout_settling_resolves_its_incident(pagerduty: FakePagerDuty, phase: Phase, resolves: bool) -> None:
    pd = notifier(pagerduty)
    pd.notify(alert())
    pd.notify(settled(phase))
    events = sent(pagerduty, pd)
    resolved = [e for e in events if e["event_action"] == "resolve"]
    assert resolved == ([{"routing_key": KEY, "event_action": "resolve", "dedup_key": "grayops/billing/r1"}]
                        if resolves else [])


def test_warnings_and_other_transitions_page_nobody(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pd.notify(alert("metric_threshold", Severity.WARNING))
    pd.notify(Event("billing", "r1", "1.6.0", "transition", Severity.INFO, "batch canary started",
                    Phase.PROGRESSING, AT))
    assert sent(pagerduty, pd) == []
    assert pagerduty.received == []


def test_a_fleet_wide_alert_is_one_incident_per_kind(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pd.notify(alert("invalid_revision", plugin="*", rollout="", message="revision abc refused"))
    [event] = sent(pagerduty, pd)
    assert event["dedup_key"] == "grayops/invalid_revision"
    assert event["payload"]["summary"] == "revision abc refused"


def test_a_long_message_is_cut_to_pagerdutys_limit(pagerduty: FakePagerDuty) -> None:
    pd = notifier(pagerduty)
    pd.notify(alert(message="x" * 3000))
    [event] = sent(pagerduty, pd)
    assert len(event["payload"]["summary"]) == 1024


def test_429_and_5xx_are_retried_until_accepted(pagerduty: FakePagerDuty) -> None:
    pagerduty.fail(429)
    pagerduty.fail(500, times=2)
    pd = notifier(pagerduty)
    pd.notify(alert())
    [event] = sent(pagerduty, pd)
    assert event["dedup_key"] == "grayops/billing/r1"
    assert [r.status for r in pagerduty.received] == [429, 500, 500, 202]


def test_a_refused_event_is_given_up_with_pagerdutys_reason_and_no_key_in_the_log(
        pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture) -> None:
    wrong = "short-key-NEVER-LOGGED"
    pagerduty.fail(500)
    pd = notifier(pagerduty, key=wrong)
    with caplog.at_level(logging.DEBUG):
        pd.notify(alert())
        assert pd.flush(30)
    assert [r.status for r in pagerduty.received] == [500, 400]  # a 400 is not retried
    assert "Length of 'routing_key' is incorrect (should be 32 characters)" in caplog.text
    assert wrong not in caplog.text


# --- grayops.yaml -----------------------------------------------------------------------------------------------

HEAD = "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n  - {name: a}\nnotifiers:\n"


def test_the_settings_name_the_variable_never_the_key() -> None:
    fleet = load_fleet({"grayops.yaml": HEAD + "  - {type: pagerduty, routingKeyEnv: PD_KEY}\n"}, builtin_policies(),
                       adapters=full_registry().models)
    [settings] = fleet.settings.notifiers
    assert isinstance(settings, PagerDutySettings)
    assert (settings.routing_key_env, settings.url) == ("PD_KEY", "https://events.pagerduty.com")


@pytest.mark.parametrize(("entry", "expected"), [
    ("  - {type: pagerduty, routingKey: x}\n", [
        "grayops.yaml:6: notifiers[0].routingKey: unknown field; did you mean 'routingKeyEnv'?",
        "grayops.yaml:6: notifiers[0].routingKeyEnv: required field is missing"]),
    ("  - {type: pagerdoody, routingKeyEnv: PD_KEY}\n", [
        "grayops.yaml:6: notifiers[0].type: Input should be 'log', 'webhook', 'pagerduty' or 'slack'"]),
])
def test_settings_errors_are_one_line_each(entry: str, expected: list[str]) -> None:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet({"grayops.yaml": HEAD + entry}, builtin_policies(), adapters=full_registry().models)
    assert [str(e) for e in caught.value.errors] == expected


def test_without_its_key_the_notifier_is_left_out_with_one_line(pagerduty: FakePagerDuty, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    text = HEAD + f"  - {{type: pagerduty, routingKeyEnv: PD_KEY, url: '{pagerduty.url}'}}\n"
    fleet = load_fleet({"grayops.yaml": text}, builtin_policies(), adapters=full_registry().models)
    runtime = full_registry().build_runtime(fleet.settings, tmp_path, FakeClock(), env={})
    assert not any(isinstance(n, PagerDutyNotifier) for n in runtime.notifiers)
    assert "PD_KEY (routingKeyEnv) is not set" in caplog.text
    runtime = full_registry().build_runtime(fleet.settings, tmp_path, FakeClock(), env={"PD_KEY": KEY})
    [pd] = [n for n in runtime.notifiers if isinstance(n, PagerDutyNotifier)]
    runtime.notifier.notify(alert())
    assert sent(pagerduty, pd)[0]["dedup_key"] == "grayops/billing/r1"
    runtime.close()


# --- end to end -------------------------------------------------------------------------------------------------


def test_grayops_run_pages_on_a_bad_version_and_resolves_once_it_is_rolled_back(
        fleet_repo: Human, tmp_path: Path, pagerduty: FakePagerDuty) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    faults = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"
    notifiers = f"notifiers:\n  - {{type: pagerduty, routingKeyEnv: GRAYOPS_PD_KEY, url: '{pagerduty.url}'}}\n"
    human.commit("fleet: billing 1.5.0, paged by PagerDuty", {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, faults + notifiers),
        "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0"),
    })
    log_path = tmp_path / "run.log"
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=log_path.open("w"), stderr=subprocess.STDOUT,
                              env={**os.environ, "GRAYOPS_PD_KEY": KEY})
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Succeeded", timeout=120,
                 what="1.5.0 rolled out")
        human.pull()
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
        status = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "RolledBack" and s,
                          timeout=120, what="the bad version rolled back")
        key = f"grayops/billing/{status['rolloutId']}"
        wait_for(lambda: [e["event_action"] for e in pagerduty.accepted() if e.get("dedup_key") == key][-1:]
                 == ["resolve"], timeout=60, what="the incident resolved")
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    bad = [e["event_action"] for e in pagerduty.accepted() if e["dedup_key"] == key]
    assert bad[0] == "trigger" and bad[-1] == "resolve" and set(bad) == {"trigger", "resolve"}, bad
    good = [e["event_action"] for e in pagerduty.accepted() if e["dedup_key"] != key]
    assert good == ["resolve"]  # 1.5.0 succeeded: its resolve is dropped by PagerDuty, no incident was open
    assert all(r.status == 202 for r in pagerduty.received)
    assert KEY not in log_path.read_text()
