"""`/approve token <plugin> [action]` in Slack: an approval token for the HTTP API, issued to a person access.yaml
lets approve, shown in the ephemeral answer only (never in a channel, a log line or git), its digest committed;
the API under uvicorn takes it once (README "HTTP API", Approval tokens)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import requests

from tests.api.test_api_http import ACCESS as API_ACCESS
from tests.api.test_api_http import TOKENS, api_on, digest, seed_fleet
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import Chat, bot_on_clone, fake_slack, slack_env
from tests.conftest import Human, remote_file, wait_for

__all__ = ["fake_slack", "slack_env"]  # fixtures

# The API's people and tokens, and Slack's rule: the release group approves any plugin.
ACCESS = API_ACCESS + 'rules:\n  - {commands: [approve], groups: [S0RELEASE], plugins: ["*"]}\n'
TOKEN = re.compile(r"grayops-approval-[A-Za-z0-9_-]+")


def test_a_token_from_slack_is_seen_by_its_issuer_only_and_taken_once_by_the_api(
        fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    human = fleet_repo
    seed_fleet(human)  # billing 1.6.0 mid-way, its batch `all` waiting for an approval
    human.commit("access: the release group approves", {"access.yaml": ACCESS})
    caplog.set_level(logging.DEBUG)
    _, bot = bot_on_clone(human, tmp_path / "bot", slack_env)
    try:
        chat = Chat(bot, fake_slack)
        denied, _, _ = chat.command("/approve", "token billing", user="U0ONCALL", name="olga")
        assert "Not allowed" in chat.reply(denied)
        before = human.log("--format=%H").split()
        _, _, ack = chat.command("/approve", "token billing deploy", user="U0REL1", name="rita")
        assert "an approval token is for approve, retry or resume" in ack
        trigger, status, ack = chat.command("/approve", "token billing", user="U0REL1", name="rita")
        assert status == 200 and "grayops-approval-" not in ack
        reply = chat.reply(trigger)
        wait_for(lambda: len(human.log("--format=%H").split()) > len(before), 30, "the token's record pushed")
    finally:
        bot.stop()
    found = TOKEN.search(reply)
    assert found, reply
    token = found.group(0)
    assert "for approve of billing 1.6.0, single use" in reply and "Only you see it" in reply
    # The token is in that one ephemeral answer, nowhere else: no other call to Slack, no log line, no commit.
    elsewhere = [c for c in fake_slack.calls if token in str(c.args)]
    assert [(c.method, c.path.rsplit("/", 1)[-1]) for c in elsewhere] == [("response_url", trigger)]
    assert token not in caplog.text
    assert token not in human.log("-p", "--format=%B")
    message = human.log("-1", "--format=%B")
    assert "Requested-By: U0REL1 (rita)" in message and "Grayops-Action: approval-token" in message
    token_id = message.split("approval token ", 1)[1].split()[0]
    assert f"`{token_id}`" in reply
    assert digest(token) in (remote_file(human, "approvals/billing.yaml") or "")

    with api_on(human, tmp_path / "api", []) as base:
        def approve() -> requests.Response:
            return requests.post(f"{base}/api/v1/rollouts/billing/approve", json={"approvalToken": token},
                                 headers={"Authorization": f"Bearer {TOKENS['rita']}"}, timeout=60)
        used = approve()
        assert used.status_code == 202, used.text
        assert f"Approval-Token: {token_id}" in human.log("-1", "--format=%B")
        again = approve()
        assert again.status_code == 409 and "already used" in again.json()["error"]
