"""`grayops serve` and `grayops run --listen` serving Slack on the one server, as real child processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.api.test_api_http import ACCESS as API_ACCESS
from tests.api.test_api_http import TOKENS
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import fake_slack, seed, wait_phase
from tests.bot.slack_requests import SECRET, post, slash
from tests.conftest import Human, free_port, grayops, wait_for

__all__ = ["fake_slack"]  # fixture




def slack_env(fake: FakeSlack) -> dict[str, str]:
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake.api_url}
    env.pop("SLACK_APP_TOKEN", None)
    return env


def test_serve_without_slack_secrets_serves_the_api_and_says_slack_is_off(fleet_repo: Human, tmp_path: Path) -> None:
    seed(fleet_repo, access=API_ACCESS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLACK_")}
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(fleet_repo.remote),
                             "--workdir", str(tmp_path / "w"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="grayops serve to listen")
        assert post(f"http://127.0.0.1:{port}/slack/events", "command=%2Frollout")[0] == 404
        pause = f"http://127.0.0.1:{port}/api/v1/rollouts/billing/pause"
        assert post(pause, "{}")[0] == 401
        asked = urllib.request.Request(pause, data=b'{"reason": "drill"}', method="POST", headers={
            "Authorization": f"Bearer {TOKENS['oncall']}", "Content-Type": "application/json"})
        with urllib.request.urlopen(asked, timeout=30) as answer:
            assert answer.status == 202
        # committed on its clone and pushed, as asked through the API
        assert "Requested-By: ops-bot (api token oncall)" in fleet_repo.log("-1", "--format=%B")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "Slack commands are off: SLACK_BOT_TOKEN is not set" in out
    assert "serve" in grayops("--help").stdout and "bot" not in grayops("--help").stdout.split("positional")[0]


def test_run_serves_slack_on_its_listen_port_and_a_command_acts_at_once(fleet_repo: Human, tmp_path: Path,
                                                                       fake_slack: FakeSlack) -> None:
    human = fleet_repo
    seed(human, "1.5.0")  # wave-1 bakes for 600 s
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
                             str(tmp_path / "work"), "--interval", "0.05", "--poll", "30", "--no-progress",
                             "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=slack_env(fake_slack))
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="grayops run to listen")
        fake_slack.wait_for(lambda: fake_slack.of("chat.postMessage", channel="#prod"), what="the rollout message")
        url = f"http://127.0.0.1:{port}/slack/events"
        status, _ = post(url, slash("/pause", "billing on call says stop", trigger="t-run-1",
                                    response_url=fake_slack.response_url("t-run-1")))
        assert status == 200
        wait_phase(human, "Paused", timeout=15)
        assert "pause billing: on call says stop" in fake_slack.wait_for(lambda: fake_slack.responses("t-run-1"))[0]
        assert post(url, slash("/pause", "billing", trigger="t-run-2", response_url=fake_slack.response_url("x")),
                    forged=True)[0] == 401
        metrics = _get(port, "/metrics")  # the bot's counters beside the reconciler's, on the same port
        assert 'grayops_bot_commands_total{command="pause",outcome="done"} 1.0' in metrics
        assert "version_upgrade_tick_seconds" in metrics or "version_upgrade" in metrics
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert "xoxb-test" not in out and SECRET not in out  # secrets never reach the log


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


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


def test_serve_commits_on_its_clone_and_pushes_what_waited_for_the_remote(
        fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack) -> None:
    import shutil

    human = fleet_repo
    seed(human, "1.5.0")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(human.remote),
                             "--workdir", str(tmp_path / "serve"), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=slack_env(fake_slack))
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="grayops serve to listen")
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


def test_slack_is_acked_within_3s_while_a_commit_hangs(fleet_repo: Human, tmp_path: Path,
                                                       fake_slack: FakeSlack) -> None:
    """A command's commit that takes long (a post-commit hook waits for a file) holds neither the next commands'
    acks nor the server's other routes."""
    human = fleet_repo
    seed(human, "1.5.0")
    port = free_port()
    workdir = tmp_path / "serve"
    proc = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(human.remote),
                             "--workdir", str(workdir), "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=slack_env(fake_slack))
    release, entered = tmp_path / "release", tmp_path / "entered"
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        wait_for(lambda: proc.poll() is None and _accepts(port), what="grayops serve to listen")
        hook = workdir / "repo" / ".git" / "hooks" / "post-commit"
        hook.write_text(f"#!/bin/sh\ntouch '{entered}'\ni=0\nwhile [ ! -e '{release}' ] && [ $i -lt 1200 ]; do "
                        "sleep 0.1; i=$((i+1)); done\n")
        hook.chmod(0o755)
        post(url, slash("/pause", "billing slow", trigger="slow-1", response_url=fake_slack.response_url("slow-1")))
        wait_for(lambda: entered.exists(), what="the first command's commit to hang in its hook")
        for i, (command, text) in enumerate([("/resume", "billing"), ("/rollout", "billing"), ("/rollout", "help"),
                                             ("/pause", "billing again")]):
            started = time.monotonic()
            status, _ = post(url, slash(command, text, trigger=f"next-{i}", response_url=fake_slack.response_url("n")))
            acked = time.monotonic() - started
            assert status == 200 and acked < 3.0, (command, status, acked)
        started = time.monotonic()
        assert _get(port, "/healthz") == "ok\n" and time.monotonic() - started < 3.0
        assert not fake_slack.responses("slow-1")  # still committing
        release.touch()
        assert "pause billing: slow" in fake_slack.wait_for(lambda: fake_slack.responses("slow-1"), 60)[0]
        wait_for(lambda: "Slack-Trigger-Id: slow-1" in human.log("--format=%B"), 60, "the slow commit pushed")
    finally:
        release.touch()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
