"""Hostile and heavy HTTP input on /slack/events (README "Slack", limits): the real Bolt app on a loopback port,
in this process on a clone of its own, or as a `grayops serve` child process whose log and memory we read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from reconciler.adapters.gitrepo import GitRepo
from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import Chat, ServedBot, bot_on_clone, fake_slack, seed, slack_env
from tests.bot.slack_requests import (
    SECRET,
    post,
    post_bytes,
    raw_exchange,
    send_huge,
    signed_headers,
    slash,
    status_of,
)
from tests.conftest import Human, free_port, plugin_yaml, remote_file, stop_process, wait_for

__all__ = ["fake_slack", "slack_env"]  # fixtures


@dataclass
class Solo:
    human: Human
    repo: GitRepo
    bot: ServedBot
    chat: Chat
    fake: FakeSlack

    @property
    def port(self) -> int:
        return self.bot.port


@pytest.fixture
def solo(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> Iterator[Solo]:
    """billing 1.5.0 in the fleet repository and the bot on a clone of its own."""
    seed(fleet_repo)
    repo, bot = bot_on_clone(fleet_repo, tmp_path / "bot", slack_env)
    try:
        yield Solo(fleet_repo, repo, bot, Chat(bot, fake_slack), fake_slack)
    finally:
        bot.stop()


def with_trigger(human: Human, trigger: str) -> list[str]:
    """The remote's commits carrying this Slack trigger id."""
    return [sha for sha in human.log("--format=%H", f"--grep=Slack-Trigger-Id: {trigger}", "--fixed-strings").split()]


def test_fifty_simultaneous_signed_commands_are_all_answered(solo: Solo) -> None:
    count = 50
    start = threading.Barrier(count)
    statuses: list[object] = [None] * count

    def one(i: int) -> None:
        body = slash("/rollout", "billing", trigger=f"burst-{i}", response_url=solo.fake.response_url(f"burst-{i}"))
        start.wait()
        try:
            statuses[i] = post(solo.chat.url, body)[0]
        except OSError as err:
            statuses[i] = repr(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert statuses == [200] * count
    for i in range(count):
        assert "billing" in solo.chat.reply(f"burst-{i}", timeout=120)


def test_the_command_text_is_capped_with_a_usage_answer(solo: Solo) -> None:
    before = solo.human.log("--format=%H")
    started = time.monotonic()
    _, status, ack = solo.chat.command("/pause", "billing " + "ab cd " * 9000)  # 54 KB: under the body cap
    assert status == 200 and "too long" in ack and "/pause <plugin> [reason]" in ack
    _, status, ack = solo.chat.command("/pause", "billing " + "x" * 201)
    assert status == 200 and "the reason is too long" in ack
    assert time.monotonic() - started < 10
    answer, _ = send_huge(solo.port, "POST /slack/events HTTP/1.1\nHost: x\nContent-Length: 1048600", 1048600)
    assert status_of(answer) == 413, answer  # a megabyte is over the body cap
    assert solo.human.log("--format=%H") == before


def test_a_request_that_stops_sending_is_timed_out(solo: Solo) -> None:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", solo.port), timeout=40) as headers_only:
        headers_only.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        answer = raw_exchange(solo.port, "POST /slack/events HTTP/1.1\nHost: x\nContent-Length: 100", b"token=", 40)
        assert status_of(answer) == 408, answer
        answer = headers_only.recv(65536).decode()
        assert status_of(answer) == 408, answer
    assert time.monotonic() - started < 30


def test_a_signed_replay_after_a_restart_is_not_carried_out_again(solo: Solo, tmp_path: Path,
                                                                  slack_env: dict[str, str]) -> None:
    human, fake = solo.human, solo.fake
    body = slash("/pause", "billing drill", trigger="once-1", response_url=fake.response_url("once-1"))
    sent_at = int(time.time())
    assert post(solo.chat.url, body, timestamp=sent_at)[0] == 200
    wait_for(lambda: with_trigger(human, "once-1"), 30, "the pause in the remote")
    human.pull()
    human.commit("resume billing by hand", {"plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="slow")})
    solo.bot.stop()

    # A new bot process on a new clone of the same repository: nothing of the first one's memory is left.
    _, again = bot_on_clone(human, tmp_path / "restarted", slack_env)
    try:
        assert post(again.url, body, timestamp=sent_at)[0] == 200  # the same signed request, replayed
        replies = fake.wait_for(lambda: len(fake.responses("once-1")) == 2 and fake.responses("once-1"), 30,
                                "an answer to the replay")
    finally:
        again.stop()
    assert "already carried out" in replies[-1], replies
    assert len(with_trigger(human, "once-1")) == 1
    assert "paused: true" not in (remote_file(human, "plugins/billing.yaml") or "")


def test_the_answer_quotes_the_commit_as_pushed_after_a_rebase(solo: Solo, tmp_path: Path) -> None:
    human = solo.human
    # Someone pushes right after the bot commits: its push is rejected, it rebases its commit and pushes that.
    hook = solo.repo.path / ".git" / "hooks" / "post-commit"
    hook.write_text(f"""#!/bin/sh
[ -e "{tmp_path}/raced" ] && exit 0
touch "{tmp_path}/raced"
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
cd "{human.clone}" && git pull -q --rebase origin main && echo meanwhile >> NOTES && git add NOTES \\
  && git commit -qm meanwhile && git push -q origin HEAD:main
""")
    hook.chmod(0o755)
    trigger, status, _ = solo.chat.command("/pause", "billing race")
    assert status == 200
    reply = solo.chat.reply(trigger, timeout=30)
    assert (tmp_path / "raced").exists()
    shas = with_trigger(human, trigger)
    assert len(shas) == 1
    assert f"({shas[0][:10]}, pushed)" in reply, (reply, shas)


# --- as `grayops serve`, reading its log and memory --------------------------------------------------------------


@dataclass
class BotProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/slack/events"

    def peak_rss(self) -> int:
        """The child's peak resident memory so far, in bytes (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def bot_process(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack) -> Iterator[BotProcess]:
    """`grayops serve --log-level debug`, its output in a file."""
    seed(fleet_repo)
    port = free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake_slack.api_url}
    env.pop("SLACK_APP_TOKEN", None)
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(fleet_repo.remote),
                                    "--workdir", str(tmp_path / "bot"), "--listen", f"127.0.0.1:{port}",
                                    "--log-level", "debug"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for(lambda: process.poll() is None and _accepts(port), 60, "the bot to listen")
        yield BotProcess(process, port, log)
    finally:
        stop_process(process)


MARK = "q7z" * 40  # in every hostile body: it must never reach the log


def test_a_huge_unauthenticated_body_is_refused_413_unread_and_unlogged(bot_process: BotProcess) -> None:
    before = bot_process.peak_rss()
    size = 100 << 20
    head = ("POST /slack/events HTTP/1.1\nHost: x\nContent-Type: application/x-www-form-urlencoded\n"
            f"Content-Length: {size}")
    answer, sent = send_huge(bot_process.port, head, size)
    assert status_of(answer) == 413, answer[:200]
    assert sent < 32 << 20, f"the server let {sent >> 20} MB through"
    grown = bot_process.peak_rss() - before
    assert grown < 40 << 20, f"peak memory grew by {grown >> 20} MB"
    forged = f"command=%2Fpause&text={MARK}".encode()
    headers = signed_headers(forged, secret="not-the-secret")
    assert post_bytes(bot_process.url, forged, headers)[0] == 401
    assert bot_process.process.poll() is None
    log = bot_process.log.read_text(errors="replace")
    assert MARK not in log and "x" * 100 not in log and len(log) < 200_000, log[-2000:]


def _payload(doc: object) -> bytes:
    return urlencode({"payload": json.dumps(doc), "m": MARK}).encode()


def _signed(body: bytes, content_type: str = "application/x-www-form-urlencoded") -> tuple[bytes, dict[str, str]]:
    return body, signed_headers(body, content_type=content_type)


def malformed() -> dict[str, tuple[bytes, dict[str, str]]]:
    """Signed when called: a signature older than Slack's 5 minutes is refused (401) before the body is read."""
    return {
        "unsigned, not UTF-8": (b"text=\xff\xfe" + MARK.encode(),
                                {"Content-Type": "application/x-www-form-urlencoded"}),
        "timestamp not a number": (f"command=%2Fpause&text={MARK}".encode(),
                                   {**signed_headers(b"x"), "X-Slack-Request-Timestamp": "soon"}),
        "signed, payload not JSON": _signed(b"payload=%7Bnot+json&m=" + MARK.encode()),
        "signed, payload not an object": _signed(_payload([1, 2])),
        "signed, JSON body cut short": _signed(b'{"type": "event_callback", "m": "' + MARK.encode() + b'", "event": ',
                                               "application/json"),
        "signed, JSON nested too deep": _signed(b"payload=" + quote("[" * 20000).encode()),
        "signed, button without actions": _signed(_payload({"type": "block_actions", "user": {"id": "U0OPS1"},
                                                            "trigger_id": "m1", "actions": []})),
        "signed, actions not a list": _signed(_payload({"type": "block_actions", "user": {"id": "U0OPS1"},
                                                        "trigger_id": "m2", "actions": "grayops_pause"})),
        "signed, user not an object": _signed(_payload({
            "type": "block_actions", "user": "U0OPS1", "trigger_id": "m3", "channel": "C0OPS",
            "actions": [{"action_id": "grayops_pause", "value": "billing", "type": "button"}]})),
    }


def test_malformed_requests_get_400_and_no_traceback(bot_process: BotProcess) -> None:
    for name, (body, headers) in malformed().items():
        status, answer = post_bytes(bot_process.url, body, headers)
        assert status == 400, (name, status, answer)
    port = bot_process.port
    no_length = raw_exchange(port, "POST /slack/events HTTP/1.1\nHost: x\nConnection: close", b"")
    assert status_of(no_length) == 411, no_length
    for length in ("abc", "-5", "1e3"):
        answer = raw_exchange(port, f"POST /slack/events HTTP/1.1\nHost: x\nContent-Length: {length}", b"")
        assert status_of(answer) == 400, (length, answer)
    fine = slash("/rollout", "help", trigger="after", response_url="http://127.0.0.1:9/x")
    status, ack = post(bot_process.url, fine)
    assert status == 200 and "/pause <plugin> [reason]" in ack  # still serving
    assert bot_process.process.poll() is None
    log = bot_process.log.read_text(errors="replace")
    assert "Traceback" not in log and MARK not in log, log[-3000:]



def test_a_command_whose_text_says_payload_is_carried_out(solo: Solo) -> None:
    # Bolt reads any form body holding the word "payload" as a button's `payload=` field: without care such a
    # command was read as an empty request and answered 404.
    trigger, status, _ = solo.chat.command("/pause", "billing the payload service is down")
    assert status == 200
    assert "pause billing: the payload service is down" in solo.chat.reply(trigger)
    assert with_trigger(solo.human, trigger)
