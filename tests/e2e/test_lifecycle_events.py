"""Lifecycle events as CloudEvents from a real `grayops run --listen` on the sim fleet to webhook receivers on
loopback (README "Lifecycle events"): the sequence of a good version and of a bad one, signed; a receiver that
fails twice gets the event on the third try with the same id; a receiver that is down makes drops, counted on
/metrics."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import FAST_POLICY, Human, free_port, plugin_yaml, remote_status, settings_yaml, wait_for
from tests.web.test_web_browser import FAULTS, TIERS, WAIT
from tests.web.test_web_run import run_listening, samples

SECRET = "event-secret"
PREFIX = "dev.grayops.rollout."


class Receiver:
    """A webhook on loopback that keeps what it was sent, answering 500 to the first `fail` deliveries."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.attempts: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.attempts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    failing = len(receiver.attempts) <= receiver.fail
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        """What was accepted (answered 200), in order."""
        with self.lock:
            return [json.loads(body) for n, (_, body) in enumerate(self.attempts) if n >= self.fail]

    def types(self, plugin_version: str) -> list[str]:
        return [e["type"].removeprefix(PREFIX) for e in self.events() if e["data"]["version"] == plugin_version]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def dropped(base: str, target: str) -> float:
    metrics = samples(requests.get(base + "/metrics", timeout=30).text)
    return metrics.get(("grayops_webhook_events_dropped_total", (("target", target),)), 0.0)


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    good, flaky = Receiver(), Receiver(fail=2)
    yield good, flaky
    good.stop()
    flaky.stop()


def test_a_rollouts_lifecycle_reaches_the_webhooks_as_signed_cloudevents(
        fleet_repo: Human, tmp_path: Path, receivers: tuple[Receiver, Receiver],
        monkeypatch: pytest.MonkeyPatch) -> None:
    good, flaky = receivers
    down = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("GRAYOPS_EVENTS_SECRET", SECRET)
    notifiers = ("notifiers:\n"
                 f"  - {{type: webhook, url: \"{good.url}\", secretEnv: GRAYOPS_EVENTS_SECRET}}\n"
                 f"  - {{type: webhook, url: \"{flaky.url}\", events: [succeeded]}}\n"
                 f"  - {{type: webhook, url: \"http://{down}/events\", attempts: 2, events: [started]}}\n")
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS + notifiers),
                                               "policies/fast.yaml": FAST_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    with contextmanager(run_listening)(fleet_repo, tmp_path) as running:
        wait_for(lambda: "succeeded" in good.types("1.5.0"), WAIT, "billing 1.5.0 to succeed at the receiver")
        first = good.types("1.5.0")
        fleet_repo.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
        wait_for(lambda: "rolled_back" in good.types("1.6.0"), WAIT, "billing 1.6.0 to be rolled back")
        wait_for(lambda: flaky.events(), WAIT, "the flaky receiver to get the event at last")

        wait_for(lambda: dropped(running.base, down) >= 2, WAIT, "both started events to the down receiver dropped")
        metrics = samples(requests.get(running.base + "/metrics", timeout=30).text)
        target = good.url.split("/")[2]
        assert metrics[("grayops_webhook_events_delivered_total", (("target", target),))] >= 6
        assert ("grayops_webhook_events_dropped_total", (("target", target),)) not in metrics
        assert "dropped" in running.text() and SECRET not in running.text()

    # A good version: started, each batch passed, succeeded, in this order.
    assert first == ["started", "batch.passed", "batch.passed", "batch.passed", "succeeded"]
    # A bad one: started, then rolled back, never succeeded (the alert that caused it is there too).
    bad = good.types("1.6.0")
    assert bad[0] == "started" and "rolled_back" in bad and "succeeded" not in bad, bad
    assert "plugin.version.gray.alert" in bad
    status = remote_status(fleet_repo, "billing")
    assert status is not None and status["phase"] == "RolledBack"
    for headers, body in good.attempts:
        assert headers["content-type"] == "application/cloudevents+json"
        expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-grayops-signature"], expected)
    events = good.events()
    assert len({e["id"] for e in events}) == len(events)  # each event its own id
    done = next(e for e in events if e["type"] == PREFIX + "succeeded")
    assert done["specversion"] == "1.0" and done["subject"] == "billing" and done["source"] == "/grayops"
    assert done["datacontenttype"] == "application/json" and done["time"].endswith("Z")
    assert done["data"]["plugin"] == "billing" and done["data"]["version"] == "1.5.0"
    assert len(done["data"]["commit"]) == 40
    passed = [e["data"]["batch"] for e in events if e["type"] == PREFIX + "batch.passed"]
    assert passed[:3] == ["canary", "wave-1", "all"]
    # The flaky receiver: two 500s, then the same event (same bytes, same id) accepted; unsigned (no secretEnv).
    assert len({body for _, body in flaky.attempts[:3]}) == 1
    assert flaky.events()[0]["id"] == done["id"]
    assert "x-grayops-signature" not in flaky.attempts[0][0]
