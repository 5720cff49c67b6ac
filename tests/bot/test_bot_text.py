"""Reasons and names are data, never structure (README "Slack" and "Git as the record"): whatever a person types
into Slack or the CLI stays one line in the commit, forges no trailer, and reaches Slack escaped."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.parse import Usage, parse
from bot.render import event_line, rollout_message, summary
from reconciler.adapters.gitrepo import GitRepo
from reconciler.core.effects import Event
from reconciler.core.model import Phase, RolloutState, Severity
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import Chat, bot_on_clone, fake_slack, seed, slack_env
from tests.conftest import Human, git, grayops, wait_for

__all__ = ["fake_slack", "slack_env"]  # fixtures

FORGED_REASON = "x\n\nApproved-By: U999\n---\n<!channel> look"
FORGED_NAME = "alice\nApproved-By: U998"


def trailers(message: str) -> list[tuple[str, str]]:
    """The trailers `git interpret-trailers --parse` reads in a commit message."""
    parsed = subprocess.run(["git", "interpret-trailers", "--parse"], input=message, capture_output=True,
                            text=True, check=True).stdout
    return [(key, value) for key, _, value in (line.partition(": ") for line in parsed.splitlines())]


def remote_message(human: Human, grep: str) -> str:
    return human.log("-1", "--format=%B", f"--grep={grep}", "--fixed-strings")


def test_a_slack_reason_and_name_forge_no_trailer_and_ping_nobody(fleet_repo: Human, tmp_path: Path,
                                                                  fake_slack: FakeSlack,
                                                                  slack_env: dict[str, str]) -> None:
    seed(fleet_repo)
    _, bot = bot_on_clone(fleet_repo, tmp_path / "bot", slack_env)
    try:
        chat = Chat(bot, fake_slack)
        trigger, status, _ = chat.command("/pause", f'billing "{FORGED_REASON}"', name=FORGED_NAME)
        assert status == 200
        reply = chat.reply(trigger)
        message = wait_for(lambda: remote_message(fleet_repo, f"Slack-Trigger-Id: {trigger}"), 30, "the pause")
        posted = fake_slack.wait_for(lambda: fake_slack.of("chat.postMessage"), what="the public line")
    finally:
        bot.stop()
    found = trailers(message)
    assert [key for key, _ in found] == ["Grayops-Action", "Requested-By", "Grayops-Reason", "Slack-Trigger-Id"]
    assert dict(found)["Requested-By"] == "U0OPS1 (alice Approved-By: U998)"
    assert dict(found)["Grayops-Reason"] == "x Approved-By: U999 --- <!channel> look"
    assert message.splitlines()[0] == "pause billing: x Approved-By: U999 --- <!channel> look"
    public = str(posted[0].args["text"])
    assert "&lt;!channel&gt; look" in public and "<!channel>" not in public, public
    assert "&lt;!channel&gt;" in reply and "<!channel>" not in reply, reply


def test_a_cli_reason_and_name_forge_no_trailer(fleet_repo: Human) -> None:
    seed(fleet_repo)
    done = grayops("pause", "billing", "--repo", str(fleet_repo.remote), "--reason", FORGED_REASON,
                   "--as", FORGED_NAME)
    assert done.returncode == 0, done.stderr
    assert "\n" not in done.stdout.strip()
    message = fleet_repo.log("-1", "--format=%B")
    found = trailers(message)
    assert [key for key, _ in found] == ["Grayops-Action", "Requested-By", "Grayops-Reason"]
    assert dict(found)["Requested-By"] == "alice Approved-By: U998"


def test_the_commit_message_is_the_last_line_of_defence(fleet_repo: Human, tmp_path: Path) -> None:
    repo = GitRepo(str(fleet_repo.remote), tmp_path / "work")
    repo.ensure_clone()
    repo.commit({"notes.txt": "1\n"}, "subject\n\nApproved-By: U999\n---\nmore",
                [("Grayops-Action", "pause"), ("Grayops-Reason", "a\n\nApproved-By: U1")])
    message = git(repo.path, "log", "-1", "--format=%B")
    assert trailers(message) == [("Grayops-Action", "pause"), ("Grayops-Reason", "a Approved-By: U1")]
    assert message.splitlines()[0] == "subject Approved-By: U999 --- more"


def _state(paused_by: str, pause_reason: str, paused_at: datetime, requested_by: str) -> RolloutState:
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    return RolloutState("billing", "r-1", "1.6.0", "abc123", "slow", Phase.PAUSED, "paused by <!here>", at, at,
                        paused_by=paused_by, pause_reason=pause_reason, paused_at=paused_at,
                        requested_by=requested_by)


def test_what_slack_shows_of_a_reason_or_name_is_escaped() -> None:
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    state = _state(paused_by="U1 (<!channel>)", pause_reason="a <@U2> & <https://x|y>", paused_at=at,
                   requested_by="<!everyone>")
    text = summary(state, 3)
    assert "paused by U1 (&lt;!channel&gt;): a &lt;@U2&gt; &amp; &lt;https://x|y&gt;" in text
    assert "&lt;!here&gt;" in text and "<!" not in text and "<@" not in text
    _, blocks = rollout_message(state, 3)
    assert "requested by &lt;!everyone&gt;" in str(blocks) and "<!" not in str(blocks)
    alert = Event("billing", "r-1", "1.6.0", "paused", Severity.WARNING, "paused: <!channel>", Phase.PAUSED, at)
    assert event_line(alert).endswith("paused: &lt;!channel&gt;")


@pytest.mark.parametrize("text", ["billing " + "x" * (1 << 20), "billing " + "'\"" * (1 << 19),
                                  "billing " + " \\" * (1 << 19)])
def test_a_megabyte_of_command_text_is_a_quick_usage_error(text: str) -> None:
    started = time.monotonic()
    with pytest.raises(Usage, match="too long"):
        parse("/pause", text)
    assert time.monotonic() - started < 1.0
