"""The two-person rule from Slack: who committed a version is read from git, not from what its message claims."""

from __future__ import annotations

from pathlib import Path

from bot.service import Backend
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import (
    ACCESS,
    SIM,
    SLACK,
    SLOW_POLICY,
    TIERS,
    Chat,
    Running,
    fake_slack,
    slack_env,
    start_bot,
    wait_phase,
)
from tests.conftest import Human, plugin_yaml, settings_yaml

__all__ = ["fake_slack", "slack_env"]  # fixtures

GATED = SLOW_POLICY.replace("600s", "300ms").replace("{name: all, size: 100%, bake: 300ms}",
                                                     "{name: all, size: 100%, bake: 300ms, approval: true}")


def test_a_self_written_requested_by_line_does_not_let_the_author_approve_from_slack(
        fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> None:
    human = fleet_repo
    human.commit("billing 1.5.0\n\nRequested-By: Bob Builder", {  # committed by Alice Ops, who is U0OPS1
        "grayops.yaml": settings_yaml(TIERS, SIM + SLACK),
        "policies/slow.yaml": GATED,
        "access.yaml": ACCESS,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="slow"),
    })
    running = Running(human, tmp_path / "work")
    bot = start_bot(Backend(running.repo, running.reconciler.wake.set, running.thread_of, hosted=True), slack_env)
    try:
        chat = Chat(bot, fake_slack)
        wait_phase(human, "AwaitingApproval")
        before = human.log("--format=%H")
        own, _, _ = chat.command("/approve", "billing all")
        assert "cannot also approve it (two-person rule)" in chat.reply(own)
        assert human.log("--format=%H") == before
        ok, _, _ = chat.command("/approve", "billing all", user="U0REL1", name="rita")
        assert "approve billing 1.5.0 batch all" in chat.reply(ok)
        wait_phase(human, "Succeeded")
    finally:
        bot.stop()
        running.stop()
    assert running.error is None
