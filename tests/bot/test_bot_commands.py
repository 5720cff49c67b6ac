"""Slash commands and buttons over HTTP, signed as Slack signs them, against the bot hosted with the real
reconciler on a sim fleet; the bot's Web API calls go to a loopback fake Slack that records them."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from bot.service import Backend
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import Chat, Running, ServedBot, fake_slack, seed, slack_env, start_bot, wait_phase
from tests.bot.slack_requests import post, slash
from tests.conftest import Human, remote_file, remote_status, wait_for

__all__ = ["fake_slack", "slack_env"]  # fixtures


@dataclass
class Setup:
    human: Human
    running: Running
    bot: ServedBot
    chat: Chat
    fake: FakeSlack


@pytest.fixture
def hosted(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> Iterator[Setup]:
    """billing 1.5.0 rolled out, then 1.6.0 committed by Alice Ops and baking its wave-1 (600 s)."""
    human = fleet_repo
    seed(human, "1.5.0", policy=SLOW_POLICY_QUICK)
    running = Running(human, tmp_path / "work")
    bot = start_bot(Backend(running.repo, running.reconciler.wake.set, running.thread_of, hosted=True), slack_env)
    try:
        wait_phase(human, "Succeeded")
        human.pull()
        seed(human, "1.6.0")
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "1.6.0"
                   and any(b["name"] == "wave-1" and b["phase"] == "Baking" for b in s["batches"]),
                   what="1.6.0 to bake its wave-1")
        yield Setup(human, running, bot, Chat(bot, fake_slack), fake_slack)
    finally:
        bot.stop()
        running.stop()
    assert running.error is None


SLOW_POLICY_QUICK = __import__("tests.bot.harness", fromlist=["SLOW_POLICY"]).SLOW_POLICY.replace("600s", "300ms")


def commits(human: Human) -> int:
    return len(human.log("--format=%H").split())


def by_trigger(human: Human, trigger: str) -> str:
    """The commit message of the command with this Slack trigger_id, as the remote has it."""
    for message in human.log("--format=%B%x00").split("\x00"):
        if f"Slack-Trigger-Id: {trigger}" in message:
            return message
    return ""


def last_message(human: Human, action: str) -> str:
    for message in human.log("--format=%B%x00").split("\x00"):
        if f"Grayops-Action: {action}" in message:
            return message
    return ""


def test_forged_and_stale_signatures_are_refused_and_change_nothing(hosted: Setup) -> None:
    before = commits(hosted.human)
    body = slash("/pause", "billing", trigger="forged", response_url=hosted.fake.response_url("forged"))
    assert post(hosted.chat.url, body, forged=True)[0] == 401
    stale = slash("/pause", "billing", trigger="stale", response_url=hosted.fake.response_url("stale"))
    assert post(hosted.chat.url, stale, timestamp=int(time.time()) - 6 * 60)[0] == 401
    time.sleep(1.0)  # give a wrongly accepted request time to act
    assert commits(hosted.human) == before
    assert hosted.fake.responses("forged") == [] and hosted.fake.responses("stale") == []
    assert hosted.running.phase() == "Progressing"


def test_an_unauthorised_user_is_told_and_nothing_changes(hosted: Setup) -> None:
    denied_before = REGISTRY.get_sample_value("grayops_bot_denied_total", {"command": "pause"}) or 0.0
    before = commits(hosted.human)
    trigger, status, _ = hosted.chat.command("/pause", "billing", user="U0EVE", name="eve")
    assert status == 200
    assert "Not allowed: no rule in access.yaml lets U0EVE pause billing" in hosted.chat.reply(trigger)
    assert commits(hosted.human) == before
    assert REGISTRY.get_sample_value("grayops_bot_denied_total", {"command": "pause"}) == denied_before + 1
    assert hosted.running.phase() == "Progressing"


def test_pause_is_a_commit_with_trailers_pushed_at_once_and_the_reconciler_pauses(hosted: Setup) -> None:
    human, chat, fake = hosted.human, hosted.chat, hosted.fake
    trigger, status, ack = chat.command("/pause", "billing incident 42")
    assert status == 200 and ack == ""
    pushed = wait_for(lambda: last_message(human, "pause"), what="the pause commit in the remote")
    assert f"Slack-Trigger-Id: {trigger}" in pushed
    assert "Requested-By: U0OPS1 (alice)" in pushed and "Grayops-Reason: incident 42" in pushed
    assert "paused: true" in (remote_file(human, "plugins/billing.yaml") or "")
    reply = chat.reply(trigger)
    assert re.search(r"pause billing: incident 42 \([0-9a-f]{10}, pushed\)", reply), reply
    status_doc = wait_phase(human, "Paused")
    assert status_doc["paused"]["by"] == "U0OPS1 (alice)" and status_doc["paused"]["reason"] == "incident 42"
    _, ts = wait_for(lambda: hosted.running.thread_of("billing"), what="the rollout message")
    fake.wait_for(lambda: fake.of("chat.postMessage", thread_ts=ts, text="paused by <@U0OPS1>: incident 42"),
                  what="the public line in the rollout's thread")

    before = commits(human)
    again, _, _ = chat.command("/pause", "billing", trigger=trigger)  # Slack repeats the same trigger_id
    other, _, _ = chat.command("/pause", "billing")
    assert "billing is already paused: nothing to change, no commit." in chat.reply(other)
    assert commits(human) == before and fake.responses(again) == [reply]  # the repeat was done once, earlier

    resumed, _, _ = chat.command("/resume", "billing")
    assert "resume billing" in chat.reply(resumed)
    wait_for(lambda: hosted.running.phase() == "Progressing", what="the rollout to resume")


def test_rollback_puts_the_sim_fleet_back_on_the_last_good_version(hosted: Setup) -> None:
    human, running = hosted.human, hosted.running
    sim = running.reconciler.runtime.sim if running.reconciler.runtime else None
    assert sim is not None and "1.6.0" in set(sim.versions("billing").values())
    trigger, status, _ = hosted.chat.command("/rollback", "billing customers report errors")
    assert status == 200
    assert "roll back billing to 1.5.0: customers report errors" in hosted.chat.reply(trigger)
    wait_phase(human, "RolledBack")
    assert set(sim.versions("billing").values()) == {"1.5.0"}
    assert '"1.5.0"' in (remote_file(human, "plugins/billing.yaml") or "")
    message = by_trigger(human, trigger)
    assert "Grayops-Action: rollback" in message and "Requested-By: U0OPS1 (alice)" in message


def test_buttons_act_like_commands_and_answer_in_the_message_thread(hosted: Setup) -> None:
    channel, ts = wait_for(lambda: hosted.running.thread_of("billing"), what="the rollout message")
    trigger, status = hosted.chat.click("pause", message_ts=ts, channel=channel)
    assert status == 200
    assert "pause billing" in hosted.chat.reply(trigger)
    assert "Grayops-Action: pause" in by_trigger(hosted.human, trigger)
    hosted.fake.wait_for(lambda: hosted.fake.of("chat.postMessage", channel=channel, thread_ts=ts,
                                                 text="paused by <@U0OPS1>"), what="the thread line")
    wait_phase(hosted.human, "Paused")


def test_bad_input_gets_the_usage_and_changes_nothing(hosted: Setup) -> None:
    before = commits(hosted.human)
    _, status, ack = hosted.chat.command("/pause", "")
    assert status == 200 and "missing plugin name" in ack and "/pause <plugin> [reason]" in ack
    trigger, _, ack = hosted.chat.command("/pause", "ghost")
    assert ack == ""
    assert "No plugin named `ghost` (known: billing)" in hosted.chat.reply(trigger)
    _, _, ack = hosted.chat.command("/rollout", "help")
    assert "/approve <plugin> [batch]" in ack and "/rollout [plugin]" in ack
    assert commits(hosted.human) == before


def test_rollout_shows_phase_batch_verdicts(hosted: Setup) -> None:
    trigger, _, _ = hosted.chat.command("/rollout", "billing")
    text = hosted.chat.reply(trigger)
    assert "billing 1.5.0 → 1.6.0" in text and "Progressing" in text
    assert "batch 2 of 3: wave-1 (Baking, 2 instances)" in text
    assert re.search(r"last verdicts \((canary|wave-1)\): error_rate [0-9.]+ Successful", text), text
    everything, _, _ = hosted.chat.command("/rollout")
    assert "billing 1.5.0 → 1.6.0: Progressing, batch 2 of 3" in hosted.chat.reply(everything)


def test_the_remote_down_a_command_still_acts_in_the_clone_and_is_pushed_later(hosted: Setup) -> None:
    human = hosted.human
    away = human.remote.with_name("away.git")
    shutil.move(human.remote, away)
    try:
        trigger, _, _ = hosted.chat.command("/pause", "billing")
        reply = hosted.chat.reply(trigger)
        assert "git remote is unreachable" in reply and "pushed when the remote is back" in reply
        wait_for(lambda: hosted.running.phase() == "Paused", what="the reconciler to pause from its clone")
    finally:
        shutil.move(away, human.remote)
    wait_for(lambda: by_trigger(human, trigger), what="the pause pushed once the remote is back")
    wait_phase(human, "Paused")


def test_approve_needs_a_second_person_and_a_release_group_member(fleet_repo: Human, tmp_path: Path,
                                                                 fake_slack: FakeSlack,
                                                                 slack_env: dict[str, str]) -> None:
    human = fleet_repo
    gated = SLOW_POLICY_QUICK.replace("{name: all, size: 100%, bake: 300ms}",
                                      "{name: all, size: 100%, bake: 300ms, approval: true}")
    seed(human, "1.5.0", policy=gated)  # committed by the git author "Alice Ops", who is U0OPS1 in Slack
    running = Running(human, tmp_path / "work")
    bot = start_bot(Backend(running.repo, running.reconciler.wake.set, running.thread_of, hosted=True), slack_env)
    try:
        chat = Chat(bot, fake_slack)
        wait_phase(human, "AwaitingApproval")
        before = commits(human)
        oncall, _, _ = chat.command("/approve", "billing", user="U0ONCALL", name="olga")
        assert "Not allowed: no rule in access.yaml lets U0ONCALL approve billing (tiers prod)" in chat.reply(oncall)
        own, _, _ = chat.command("/approve", "billing")  # U0OPS1 is in S0RELEASE but committed the version
        assert "cannot also approve it (two-person rule)" in chat.reply(own)
        assert commits(human) == before
        ok, _, _ = chat.command("/approve", "billing all", user="U0REL1", name="rita")
        assert "approve billing 1.5.0 batch all" in chat.reply(ok)
        status = wait_phase(human, "Succeeded")
        assert status["batches"][-1]["approvedBy"] == "U0REL1 (rita)"
        message = by_trigger(human, ok)
        assert "Grayops-Action: approve" in message and "Approved-By: U0REL1 (rita)" in message
    finally:
        bot.stop()
        running.stop()
