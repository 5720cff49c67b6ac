"""`/retry` and what Slack shows of the brakes: a waiting rollout says what it waits for, a failed one offers
Retry; and `/retry` end to end against the bot hosted with the real reconciler (as tests/bot/test_bot_commands.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.parse import Request, Usage, parse
from bot.render import rollout_message, summary
from bot.service import Backend
from reconciler.core.model import Phase, RolloutState
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import (
    ACCESS,
    SLACK,
    SLOW_POLICY,
    Chat,
    Running,
    fake_slack,
    seed,
    slack_env,
    start_bot,
    wait_phase,
)
from tests.conftest import Human, plugin_yaml, remote_status, wait_for
from tests.core.test_engine import desired, installed, make_policy, run

__all__ = ["fake_slack", "slack_env"]  # fixtures


def test_retry_parses_like_rollback() -> None:
    assert parse("/retry", "billing fault fixed") == Request("retry", "billing", reason="fault fixed")
    assert parse("/grayops-retry", "billing") == Request("retry", "billing")
    with pytest.raises(Usage, match="missing plugin name"):
        parse("/retry", "")


def buttons(state: RolloutState) -> list[str]:
    _, blocks = rollout_message(state, 3)
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def test_a_failed_rollout_and_one_paused_after_a_failed_batch_offer_retry() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    held = run(desired("1.6.0", make_policy(rollback={"limit": 0})), world, state, now)
    assert held.state is not None and held.state.phase is Phase.PAUSED
    assert buttons(held.state) == ["grayops_resume", "grayops_retry", "grayops_rollback"]
    failed = run(desired("1.0.0"), type(world)(error_rate={"1.0.0": 0.5}))
    assert failed.state is not None and failed.state.phase is Phase.FAILED
    assert buttons(failed.state) == ["grayops_retry"]
    assert buttons(state) == []  # succeeded: nothing to retry


def test_the_rollout_message_says_what_a_rollout_waits_for() -> None:
    from reconciler.core.effects import Blocked
    from tests.core.test_engine import CLUSTERS

    state, world, now = installed("1.5.0")
    world.blocked = {c.name: Blocked("auth", "2.0", c.name, "batch all awaits approval") for c in CLUSTERS
                     if c.name.startswith("prod")}
    waiting = run(desired("1.6.0"), world, state, now, ticks=30)
    assert waiting.state is not None
    assert ":hourglass: waiting for auth 2.0 (batch all awaits approval)" in summary(waiting.state, 3)


ACCESS_RETRY = ACCESS.replace("{commands: [pause, resume, rollback, rollout]", "{commands: [pause, resume, rollback, "
                                                                             "rollout, retry]")
NO_ROLLBACK = SLOW_POLICY.replace("600s", "300ms") + "  rollback: {limit: 0}\n"
FAULT = "  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"


@pytest.fixture
def paused_after_failure(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack,
                         slack_env: dict[str, str]) -> Iterator[tuple[Human, Chat]]:
    """billing 1.6.0's canary failed; with no rollback left the engine paused it for a human."""
    human = fleet_repo
    seed(human, "1.5.0", policy=NO_ROLLBACK, access=ACCESS_RETRY, extra_settings=FAULT + SLACK)
    running = Running(human, tmp_path / "work")
    bot = start_bot(Backend(running.repo, running.reconciler.wake.set, running.thread_of, hosted=True), slack_env)
    try:
        wait_phase(human, "Succeeded")
        human.pull()
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="slow")})
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "1.6.0"
                 and s["phase"] == "Paused", what="1.6.0 paused after its failed canary")
        yield human, Chat(bot, fake_slack)
    finally:
        bot.stop()
        running.stop()
    assert running.error is None


def test_slash_retry_is_a_commit_and_the_reconciler_runs_the_failed_batch_again(
        paused_after_failure: tuple[Human, Chat]) -> None:
    human, chat = paused_after_failure
    trigger, status, _ = chat.command("/retry", "billing let us see again")
    assert status == 200
    reply = chat.reply(trigger)
    assert "retry billing 1.6.0 batch canary: let us see again" in reply, reply
    message = next(m for m in human.log("--format=%B%x00").split("\x00") if f"Slack-Trigger-Id: {trigger}" in m)
    assert "Grayops-Action: retry" in message and "Requested-By: U0OPS1 (alice)" in message
    # the fault is still there: the canary runs again, fails again, and pauses again for a human
    again = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Paused"
                     and any(h["reason"] == "batch canary retried by U0OPS1 (alice)" for h in s["history"]) and s,
                     what="the retry to run and end")
    assert again["batches"][-1]["phase"] == "Failed"
