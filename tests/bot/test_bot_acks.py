"""Owners and escalation in Slack (README "Owners and escalation"): alerts mention the plugin's owners, a critical
one carries an Acknowledge button, and a click, signed like any Slack request, is a commit naming who clicked."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.factory import slack_client
from bot.notifier import SlackNotifier
from reconciler.core.effects import Event
from reconciler.core.escalation import alert_id
from reconciler.core.model import Phase, Severity
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import SIM, SLOW_POLICY, TIERS, Chat, ServedBot, bot_on_clone, fake_slack, slack_env
from tests.conftest import FakeClock, Human, plugin_yaml, remote_file, settings_yaml

__all__ = ["fake_slack", "slack_env"]  # fixtures

ACCESS = """\
apiVersion: grayops.dev/v1
kind: Access
rules:
  - {commands: [pause, resume, rollback, rollout], groups: [S0ONCALL], plugins: ["*"]}
people:
  - {name: alice, slack: U0OPS1}
  - {name: rita}
"""
RAISED = Event("billing", "0123456789", "1.6.0", "batch_failed", Severity.CRITICAL, "batch canary failed",
               Phase.ROLLING_BACK, FakeClock().now())
ALERT = replace(RAISED, alert_id=alert_id(RAISED), mentions=("U0OPS1", "rita"))


def test_a_critical_alert_mentions_the_owners_and_has_an_acknowledge_button(fake_slack: FakeSlack,
                                                                           slack_env: dict[str, str]) -> None:
    notifier = SlackNotifier(slack_client("xoxb-test-token", slack_env), "#rollouts")
    try:
        notifier.notify(ALERT)
        notifier.notify(replace(ALERT, mentions=("S0LEAD",), escalated="not acknowledged after 10m: level 2, lead"))
        assert notifier.flush(30)
    finally:
        notifier.close()
    first, second = [c.args for c in fake_slack.of("chat.postMessage") if c.args.get("thread_ts")]
    assert "<@U0OPS1> @rita" in first["text"] and f"(alert {ALERT.alert_id})" in first["text"]
    [button] = [e for b in first["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert (button["action_id"], button["value"], button["text"]["text"]) == ("grayops_ack", ALERT.alert_id,
                                                                              "Acknowledge")
    assert second["text"].startswith(":mega: escalated (not acknowledged after 10m: level 2, lead)")
    assert "<!subteam^S0LEAD>" in second["text"]


@pytest.fixture
def chat(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> Iterator[Chat]:
    fake_slack.groups = {"S0ONCALL": ["U0ONCALL"]}
    fleet_repo.commit("fleet", {
        "grayops.yaml": settings_yaml(TIERS, SIM), "policies/slow.yaml": SLOW_POLICY, "access.yaml": ACCESS,
        "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="slow", extra="  owners: [alice]\n")})
    bot: ServedBot | None = None
    try:
        _, bot = bot_on_clone(fleet_repo, tmp_path / "bot", slack_env)
        yield Chat(bot, fake_slack)
    finally:
        if bot is not None:
            bot.stop()


@pytest.mark.parametrize(("user", "why"), [("U0OPS1", "an owner"), ("U0ONCALL", "allowed to pause billing")])
def test_the_acknowledge_button_is_a_commit_naming_who_clicked(chat: Chat, fleet_repo: Human, user: str,
                                                               why: str) -> None:
    trigger, status = chat.click("ack", ALERT.alert_id or "", user=user, name="someone")
    assert status == 200
    assert ":white_check_mark: acknowledge alert" in chat.reply(trigger), why
    message = fleet_repo.log("-1", "--format=%B")
    assert "Grayops-Action: ack" in message and f"Grayops-Alert: {ALERT.alert_id}" in message
    assert f"Requested-By: {user} (someone)" in message
    assert f"alert: {ALERT.alert_id}" in (remote_file(fleet_repo, "approvals/billing.yaml") or "")


def test_someone_neither_owner_nor_allowed_to_pause_cannot_acknowledge(chat: Chat, fleet_repo: Human) -> None:
    before = fleet_repo.log("--format=%H")
    trigger, status = chat.click("ack", ALERT.alert_id or "", user="U0STRANGER", name="mallory")
    assert status == 200
    assert "Not allowed" in chat.reply(trigger)
    assert fleet_repo.log("--format=%H") == before
