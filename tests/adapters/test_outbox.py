"""The notifiers' outbox at close: what is queued is delivered first (within a bound), nothing is taken after.

Closing happens on every settings change (the runtime is rebuilt) and at exit; measured through the real webhook
notifier against an HTTP server on loopback."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.adapters.notify.outbox import Outbox
from reconciler.adapters.notify.webhook import WebhookNotifier
from reconciler.core.effects import Event
from reconciler.core.model import Phase, Severity


class Receiver:
    """An alert webhook on loopback: answers each POST after `delay` seconds, with 503 to the first `fail`."""

    def __init__(self, delay: float = 0.05, fail: int = 0, status: int = 503) -> None:
        self.delay, self.fail, self.status = delay, fail, status
        self.received: list[str] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                receiver.attempts += 1
                if receiver.attempts <= receiver.fail:
                    self.send_response(receiver.status)
                else:
                    receiver.received.append(json.loads(body)["data"]["message"])
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def alert(n: int) -> Event:
    return Event("billing", "r1", "1.6.0", "metric_threshold", Severity.WARNING, f"alert {n}", Phase.PROGRESSING,
                 datetime(2025, 3, 1, tzinfo=UTC))


def test_close_delivers_every_queued_alert_first(receiver: Receiver) -> None:
    notifier = WebhookNotifier(receiver.url, None)
    for n in range(5):
        notifier.notify(alert(n))
    notifier.close()  # what a settings change does to the old runtime's notifiers
    assert receiver.received == [f"alert {n}" for n in range(5)]


def test_close_keeps_retrying_a_failing_delivery_while_it_drains() -> None:
    receiver = Receiver(delay=0.0, fail=2)
    try:
        notifier = WebhookNotifier(receiver.url, None, min_backoff=0.05)
        notifier.notify(alert(1))
        notifier.notify(alert(2))
        notifier.close()
        assert receiver.received == ["alert 1", "alert 2"] and receiver.attempts == 4
    finally:
        receiver.stop()


def test_close_gives_up_after_its_bound_and_says_what_it_dropped(caplog: pytest.LogCaptureFixture) -> None:
    def never(item: str) -> None:
        raise OSError("connection refused")

    outbox: Outbox[str] = Outbox("webhook", never, min_backoff=0.05)
    for n in range(3):
        outbox.put(f"alert {n}")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="reconciler.adapters.notify.outbox"):
        assert outbox.close(timeout=0.5) is False
    assert time.monotonic() - started < 5
    assert outbox.dropped == 3 and outbox.delivered == 0
    assert "3 undelivered item(s) dropped" in caplog.text


def test_nothing_is_taken_after_close(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    notifier = WebhookNotifier(receiver.url, None)
    notifier.notify(alert(1))
    notifier.close()
    with caplog.at_level(logging.WARNING, logger="reconciler.adapters.notify.outbox"):
        notifier.notify(alert(2))
    assert notifier.outbox.put(b"{}") is False
    assert notifier.outbox.pending() == 0  # not queued: nobody would ever send it
    assert receiver.received == ["alert 1"]
    assert "closed, not queued" in caplog.text
