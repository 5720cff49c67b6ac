"""Slack messages from the real reconciler: one message per rollout kept current, details in its thread, the
message's ts kept in the status file across a restart, Slack's 429 and Slack down handled without holding
the reconciler up; and alerts to a generic webhook, signed."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.factory import slack_client
from bot.notifier import SlackNotifier
from reconciler.adapters.notify.webhook import EVENT, LIFECYCLE_PREFIX, WebhookNotifier
from reconciler.adapters.notify.webhook import LIFECYCLE as LIFECYCLE_NAMES
from reconciler.core.effects import Event
from reconciler.core.model import Phase, Severity
from tests.bot.fake_slack import Call, FakeSlack
from tests.bot.harness import SLACK, SLOW_POLICY, Running, fake_slack, seed, slack_env, wait_phase
from tests.conftest import Human, plugin_yaml, remote_status, wait_for

__all__ = ["fake_slack", "slack_env"]  # fixtures

QUICK = SLOW_POLICY.replace("600s", "300ms")


def top_level(fake: FakeSlack) -> list[Call]:
    return [c for c in fake.of("chat.postMessage") if not c.args.get("thread_ts")]


def thread_ts(running: Running) -> str:
    """The ts of billing's rollout message, which the tests wait to be posted first."""
    thread = running.thread_of("billing")
    assert thread is not None, "billing's rollout message was not posted"
    return thread[1]


def in_thread(fake: FakeSlack, ts: str) -> list[str]:
    return [str(c.args["text"]) for c in fake.of("chat.postMessage") if c.args.get("thread_ts") == ts]


def flush(running: Running) -> None:
    for notifier in running.slack_notifiers():
        assert notifier.flush(30), "the Slack queue did not drain"


def test_one_message_per_rollout_updated_in_place_with_its_thread(fleet_repo: Human, tmp_path: Path,
                                                                   fake_slack: FakeSlack,
                                                                   slack_env: dict[str, str]) -> None:
    human = fleet_repo
    seed(human, "1.5.0", policy=QUICK)
    running = Running(human, tmp_path / "work")
    try:
        wait_phase(human, "Succeeded")
        flush(running)
        posts = top_level(fake_slack)
        assert len(posts) == 1, [c.args.get("text") for c in posts]
        post = posts[0]
        assert post.args["channel"] == "#prod"  # the rollout reaches the prod tier, which has its own channel
        ts = thread_ts(running)
        updates = fake_slack.of("chat.update", ts=ts)
        assert updates and "Succeeded" in updates[-1].args["text"]
        assert not any(b["type"] == "actions" for b in updates[-1].args["blocks"])  # no buttons once it ended
        thread = in_thread(fake_slack, ts)
        assert any("Progressing [canary]" in line for line in thread)
        assert any(line.startswith(":white_check_mark: Succeeded") for line in thread)
        status = remote_status(human, "billing")
        assert status is not None and status["notes"] == {"slackChannel": "CPROD", "slackTs": ts}
    finally:
        running.stop()


def test_a_restarted_reconciler_keeps_updating_the_same_message(fleet_repo: Human, tmp_path: Path,
                                                                fake_slack: FakeSlack,
                                                                slack_env: dict[str, str]) -> None:
    human = fleet_repo
    seed(human, "1.5.0")  # wave-1 bakes for 600 s
    running = Running(human, tmp_path / "work")
    try:
        wait_for(lambda: ((remote_status(human, "billing") or {}).get("notes") or {}).get("slackTs"),
                   what="the message ts in the status file")
        flush(running)
    finally:
        running.stop()
    ts = (remote_status(human, "billing") or {})["notes"]["slackTs"]
    posted = len(top_level(fake_slack))
    assert posted == 1 and top_level(fake_slack)[0].at  # one message so far

    restarted = Running(human, tmp_path / "work")
    try:
        human.pull()
        human.commit("pause billing", {"plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="slow",
                                                                           extra="  paused: true\n")})
        wait_phase(human, "Paused")
        flush(restarted)
        fake_slack.wait_for(lambda: [c for c in fake_slack.of("chat.update", ts=ts) if "Paused" in c.args["text"]],
                            what="the same message updated to Paused")
        assert len(top_level(fake_slack)) == posted  # no second message for the same rollout
        assert any("Paused" in line for line in in_thread(fake_slack, ts))
    finally:
        restarted.stop()


def test_rate_limits_are_waited_out_as_slack_asks(fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack,
                                                  slack_env: dict[str, str]) -> None:
    human = fleet_repo
    fake_slack.rate_limit(3, retry_after=1)
    seed(human, "1.5.0", policy=QUICK)
    running = Running(human, tmp_path / "work")
    try:
        wait_phase(human, "Succeeded")
        flush(running)
    finally:
        running.stop()
    limited = [c for c in fake_slack.calls if c.status == 429]
    assert len(limited) == 3
    after = [c for c in fake_slack.calls if c.status == 200 and c.at > limited[0].at]
    assert after and after[0].at - limited[0].at >= 1.0  # the Retry-After was honoured before trying again
    assert len(top_level(fake_slack)) == 1  # nothing lost or doubled by the retries
    assert any("Succeeded" in line for line in in_thread(fake_slack, thread_ts(running)))


def test_slack_down_never_holds_up_the_reconciler_and_events_are_sent_when_it_is_back(
        fleet_repo: Human, tmp_path: Path, fake_slack: FakeSlack, slack_env: dict[str, str]) -> None:
    human = fleet_repo
    fake_slack.go_down()
    seed(human, "1.5.0", policy=QUICK)
    running = Running(human, tmp_path / "work")
    try:
        wait_phase(human, "Succeeded")  # the whole rollout ran while Slack was unreachable
        assert fake_slack.calls == []
        notifier = running.slack_notifiers()[0]
        assert notifier.outbox.pending() > 0
        fake_slack.come_back()
        flush(running)
        assert len(top_level(fake_slack)) == 1
        ts = thread_ts(running)
        assert any("Succeeded" in line for line in in_thread(fake_slack, ts))
    finally:
        running.stop()


def test_the_queue_is_bounded_and_notify_returns_at_once(fake_slack: FakeSlack) -> None:
    fake_slack.go_down()
    notifier = SlackNotifier(slack_client("xoxb-test", {"GRAYOPS_SLACK_API_URL": fake_slack.api_url}), "#ops",
                             queue_limit=5)
    try:
        started = time.monotonic()
        for n in range(50):
            notifier.notify(Event("*", "", "", "invalid_revision", Severity.CRITICAL, f"bad {n}", Phase.PENDING,
                                  datetime.now(UTC)))
        assert time.monotonic() - started < 1.0
        assert notifier.outbox.pending() <= 6 and notifier.outbox.dropped >= 44
        fake_slack.come_back()
        assert notifier.flush(30)
        texts = [c.args["text"] for c in fake_slack.of("chat.postMessage")]
        assert texts and texts[-1].endswith("invalid_revision: bad 49")  # the newest are kept
    finally:
        notifier.close()


# --- the generic webhook ----------------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(400 if self.path.endswith("/refuse") else 204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/grayops"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


LIFECYCLE = {LIFECYCLE_PREFIX + name for name in LIFECYCLE_NAMES.values()}


def alerts(receiver: Receiver) -> list[tuple[dict[str, str], bytes]]:
    return [(headers, body) for headers, body in receiver.received if json.loads(body)["type"] == EVENT]


def test_alerts_go_to_the_webhook_signed(fleet_repo: Human, tmp_path: Path, receiver: Receiver,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    human = fleet_repo
    monkeypatch.setenv("GRAYOPS_WEBHOOK_SECRET", "hook-secret")
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    notifiers = f"notifiers:\n  - {{type: webhook, url: \"{receiver.url}\", secretEnv: GRAYOPS_WEBHOOK_SECRET}}\n"
    faults = "  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"
    seed(human, "1.5.0", policy=QUICK, extra_settings=faults + notifiers)
    running = Running(human, tmp_path / "work")
    try:
        wait_phase(human, "Succeeded")
        assert {json.loads(body)["type"] for _, body in receiver.received} <= LIFECYCLE  # no alert yet
        human.pull()
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="slow")})
        wait_phase(human, "RolledBack")
        wait_for(lambda: alerts(receiver), what="an alert at the webhook")
    finally:
        running.stop()
    headers, body = alerts(receiver)[0]
    expected = "sha256=" + hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-grayops-signature"], expected)
    event = json.loads(body)
    assert event["type"] == EVENT == headers["x-grayops-event"]
    alert = event["data"]
    assert alert["plugin"] == "billing" and alert["version"] == "1.6.0" and alert["severity"] in ("warning",
                                                                                                  "critical")
    assert "error_rate" in alert["message"]


def test_a_refusing_webhook_is_given_up_and_a_down_one_retried(receiver: Receiver) -> None:
    down = WebhookNotifier("http://127.0.0.1:9/nothing-listens-here", "s", min_backoff=0.05, attempts=None)
    event = Event("billing", "r1", "1.6.0", "rollback_failed", Severity.CRITICAL, "rollback failed", Phase.FAILED,
                  datetime.now(UTC))
    started = time.monotonic()
    down.notify(event)
    assert time.monotonic() - started < 0.5
    wait_for(lambda: down.outbox.pending() == 1 and not down.flush(0.2), what="retries")
    down.close()
    unsigned = WebhookNotifier(receiver.url, None)
    unsigned.notify(event)
    assert unsigned.flush(10)
    headers, body = receiver.received[0]
    assert "x-grayops-signature" not in headers and json.loads(body)["data"]["kind"] == "rollback_failed"
    unsigned.close()
    refused = WebhookNotifier(receiver.url + "/refuse", "s", min_backoff=0.05)
    refused.notify(event)
    assert refused.flush(10) and refused.outbox.dropped == 1 and len(receiver.received) == 2  # not retried
    refused.close()


def test_the_rollout_message_links_to_its_page_of_the_web_view(fleet_repo: Human, tmp_path: Path,
                                                               fake_slack: FakeSlack,
                                                               slack_env: dict[str, str]) -> None:
    human = fleet_repo
    seed(human, "1.5.0", policy=QUICK, extra_settings=SLACK + "dashboard: {url: \"https://grayops.example.com/\"}\n")
    running = Running(human, tmp_path / "work")
    try:
        wait_phase(human, "Succeeded")
        flush(running)
        ts = thread_ts(running)
        context = fake_slack.of("chat.update", ts=ts)[-1].args["blocks"][1]
        assert context["type"] == "context"
        assert context["elements"][0]["text"].endswith(
            " · <https://grayops.example.com/rollouts/billing|open in the web view>")
    finally:
        running.stop()
