"""The webhook notifier's CloudEvents (README "Lifecycle events"): which transitions become which event, the
`events:` filter, retries with the same bytes, and drops counted on the telemetry's /metrics text; against an
HTTP receiver on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.adapters.notify.webhook import WebhookNotifier, payload
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.effects import Event
from reconciler.core.model import Phase, Severity
from tests.conftest import free_port, wait_for
from tests.web.test_web_run import samples

AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def transition(action: str, phase: Phase, batch: str | None = "canary", reason: str = "why") -> Event:
    return Event("billing", "r1", "1.6.0", "transition", Severity.INFO, reason, phase, AT, batch, action, "c" * 40)


@pytest.mark.parametrize(("action", "phase", "expected"), [
    ("start", Phase.PENDING, "dev.grayops.rollout.started"),
    ("batch-pass", Phase.PROGRESSING, "dev.grayops.rollout.batch.passed"),
    ("pause", Phase.PAUSED, "dev.grayops.rollout.paused"),
    ("await-approval", Phase.AWAITING_APPROVAL, "dev.grayops.rollout.awaiting_approval"),
    ("succeed", Phase.SUCCEEDED, "dev.grayops.rollout.succeeded"),
    ("rolled-back", Phase.ROLLED_BACK, "dev.grayops.rollout.rolled_back"),
    ("fail", Phase.FAILED, "dev.grayops.rollout.failed"),
    ("batch-start", Phase.PROGRESSING, None),
    ("rollback", Phase.ROLLING_BACK, None),
    ("resume", Phase.PROGRESSING, None),
    ("reconverge", Phase.PROGRESSING, None),
])
def test_which_transition_is_which_event(action: str, phase: Phase, expected: str | None) -> None:
    found = payload(transition(action, phase))
    assert (found and found["type"]) == expected


def test_an_event_is_a_structured_cloudevent_with_a_stable_id() -> None:
    event = payload(transition("batch-pass", Phase.PROGRESSING, reason="batch canary passed"))
    assert event is not None
    assert event == {
        "specversion": "1.0", "type": "dev.grayops.rollout.batch.passed", "source": "/grayops",
        "id": event["id"], "time": "2025-03-01T12:00:00.000Z", "subject": "billing",
        "datacontenttype": "application/json",
        "data": {"plugin": "billing", "version": "1.6.0", "rolloutId": "r1", "phase": "Progressing",
                 "batch": "canary", "reason": "batch canary passed", "commit": "c" * 40}}
    assert payload(transition("batch-pass", Phase.PROGRESSING, reason="batch canary passed")) == event
    other = payload(transition("batch-pass", Phase.PROGRESSING, batch="wave-1", reason="batch wave-1 passed"))
    assert other is not None and other["id"] != event["id"]
    alert = payload(Event("billing", "r1", "1.6.0", "metric_threshold", Severity.CRITICAL, "error_rate 0.2",
                          Phase.PROGRESSING, AT, "canary", commit="c" * 40))
    assert alert is not None and alert["type"] == "plugin.version.gray.alert"
    assert alert["data"]["kind"] == "metric_threshold" and alert["data"]["severity"] == "critical"


class Receiver:
    """Answers `statuses` in turn (then 200), keeping each delivery's body."""

    def __init__(self, statuses: tuple[int, ...] = ()) -> None:
        self.statuses = list(statuses)
        self.bodies: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.where = f"127.0.0.1:{self.server.server_address[1]}"
        self.url = f"http://{self.where}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def flaky() -> Iterator[Receiver]:
    receiver = Receiver((500, 500))
    yield receiver
    receiver.stop()


def counted(outcome: str, target: str) -> float:
    metrics = samples(Telemetry().render().decode())
    return metrics.get((f"grayops_webhook_events_{outcome}_total", (("target", target),)), 0.0)


def test_a_failing_receiver_gets_the_same_event_on_a_later_try(flaky: Receiver) -> None:
    notifier = WebhookNotifier(flaky.url, "s", min_backoff=0.05)
    notifier.notify(transition("succeed", Phase.SUCCEEDED, batch=None))
    assert notifier.flush(30)
    notifier.close()
    assert len(flaky.bodies) == 3 and len(set(flaky.bodies)) == 1
    assert counted("delivered", flaky.where) == 1 and counted("dropped", flaky.where) == 0


def test_a_receiver_down_drops_after_its_attempts_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    target = f"127.0.0.1:{free_port()}"
    notifier = WebhookNotifier(f"http://hook:pass-in-url@{target}/events/path-token", "s", min_backoff=0.05,
                               attempts=3)
    notifier.notify(transition("start", Phase.PENDING))
    notifier.notify(transition("fail", Phase.FAILED))
    wait_for(lambda: counted("dropped", target) == 2, 30, "both events dropped")
    notifier.close()
    assert notifier.outbox.dropped == 2 and counted("delivered", target) == 0
    assert sum("failed 3 time(s)" in r.getMessage() and "dropped" in r.getMessage() for r in caplog.records) == 2
    assert "pass-in-url" not in caplog.text and "path-token" not in caplog.text
    assert "pass-in-url" not in Telemetry().render().decode()


def test_a_refusing_receiver_is_dropped_at_once_and_the_filter_holds() -> None:
    receiver = Receiver((400,))
    try:
        notifier = WebhookNotifier(receiver.url, None, events=frozenset({"succeeded", "alert"}))
        notifier.notify(transition("start", Phase.PENDING))  # filtered out
        notifier.notify(transition("succeed", Phase.SUCCEEDED))  # refused: 400
        notifier.notify(Event("*", "", "", "remote_unreachable", Severity.WARNING, "down", Phase.PENDING, AT))
        assert notifier.flush(30)
        notifier.close()
        types = [json.loads(body)["type"] for body in receiver.bodies]
        assert types == ["dev.grayops.rollout.succeeded", "plugin.version.gray.alert"]
        assert counted("dropped", receiver.where) == 1 and counted("delivered", receiver.where) == 1
    finally:
        receiver.stop()


def test_a_receiver_that_hangs_never_holds_up_notify() -> None:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            release.wait(60)  # answers only when the test is done
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notifier = WebhookNotifier(f"http://127.0.0.1:{server.server_address[1]}/events", None, timeout=60)
    try:
        started = time.monotonic()
        for n in range(50):
            notifier.notify(transition("batch-pass", Phase.PROGRESSING, reason=f"batch {n} passed"))
        assert time.monotonic() - started < 1.0  # the tick goes on; the events wait in the queue
        wait_for(lambda: notifier.outbox.pending() == 50, 30, "the first delivery to be in flight")
    finally:
        release.set()
        assert notifier.flush(60)
        notifier.close()
        server.shutdown()
        server.server_close()
