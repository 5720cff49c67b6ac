"""`grayops bot` and `grayops run` hosting the bot, as real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import fake_slack, seed, wait_phase
from tests.bot.slack_requests import SECRET, post, slash
from tests.conftest import Human, free_port, grayops, wait_for

__all__ = ["fake_slack"]  # fixture




def test_bot_refuses_to_start_without_its_secrets(fleet_repo: Human, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    done = subprocess.run([sys.executable, "-m", "reconciler.cli", "bot", "--repo", str(fleet_repo.remote),
                           "--workdir", str(tmp_path / "w"), "--port", "0"], capture_output=True, text=True,
                          env=env, timeout=60, check=False)
    assert done.returncode == 1 and "cannot start the Slack bot: SLACK_BOT_TOKEN is not set" in done.stderr
    assert "bot" in grayops("--help").stdout


def test_run_hosts_the_bot_and_a_command_acts_at_once(fleet_repo: Human, tmp_path: Path,
                                                      fake_slack: FakeSlack) -> None:
    human = fleet_repo
    seed(human, "1.5.0")  # wave-1 bakes for 600 s
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake_slack.api_url}
    env.pop("SLACK_APP_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
                             str(tmp_path / "work"), "--interval", "0.05", "--poll", "30", "--no-progress",
                             "--bot-port", str(port), "--bot-host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="the bot to listen")
        fake_slack.wait_for(lambda: fake_slack.of("chat.postMessage", channel="#prod"), what="the rollout message")
        url = f"http://127.0.0.1:{port}/slack/events"
        status, _ = post(url, slash("/pause", "billing on call says stop", trigger="t-run-1",
                                    response_url=fake_slack.response_url("t-run-1")))
        assert status == 200
        wait_phase(human, "Paused", timeout=15)
        assert "pause billing: on call says stop" in fake_slack.wait_for(lambda: fake_slack.responses("t-run-1"))[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "xoxb-test" not in out and SECRET not in out  # secrets never reach the log


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        time.sleep(0.05)
        return False


def test_the_slack_app_manifest_declares_what_the_bot_serves() -> None:
    import yaml

    from bot.app import EVENTS_PATH, SLASH_COMMANDS

    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "deploy" / "slack-app-manifest.yaml").read_text())
    commands = manifest["features"]["slash_commands"]
    assert tuple(c["command"] for c in commands) == SLASH_COMMANDS
    assert all(c["url"].endswith(EVENTS_PATH) for c in commands)
    assert manifest["settings"]["interactivity"]["request_url"].endswith(EVENTS_PATH)
    assert {"commands", "chat:write", "usergroups:read"} <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_the_bot_alone_commits_on_its_clone_and_pushes_what_waited_for_the_remote(
        fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack) -> None:
    import shutil

    human = fleet_repo
    seed(human, "1.5.0")
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake_slack.api_url}
    env.pop("SLACK_APP_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "bot", "--repo", str(human.remote), "--workdir",
                             str(tmp_path / "bot"), "--port", str(port), "--host", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="the bot to listen")
        post(url, slash("/pause", "billing drill", trigger="solo-1", response_url=fake_slack.response_url("solo-1")))
        assert "(" in fake_slack.wait_for(lambda: fake_slack.responses("solo-1"))[0]
        assert "Slack-Trigger-Id: solo-1" in human.log("-1", "--format=%B")
        away = human.remote.with_name("away.git")
        shutil.move(human.remote, away)
        try:
            post(url, slash("/resume", "billing", trigger="solo-2", response_url=fake_slack.response_url("solo-2")))
            reply = fake_slack.wait_for(lambda: fake_slack.responses("solo-2"))[0]
            assert "remote is unreachable" in reply and "pushed when the remote is back" in reply
        finally:
            shutil.move(away, human.remote)
        wait_for(lambda: "Slack-Trigger-Id: solo-2" in human.log("-1", "--format=%B"), timeout=30,
                   what="the kept commit pushed once the remote is back")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
