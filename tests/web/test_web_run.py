"""The web view served by `grayops run --listen` at `/`, beside /metrics, /healthz and /readyz on the same port, fed
by the running reconciler in the same process: a child process on a real git remote and a sim fleet, read with a
plain HTTP client and an event stream, and followed live in chromium (README "Web view").
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.core.status import load_status
from tests.conftest import (
    FAST_POLICY,
    Human,
    free_port,
    grayops,
    plugin_yaml,
    remote_file,
    settings_yaml,
    stop_process,
    wait_for,
)
from tests.web.browser import artifacts_dir, chromium, screenshot, text
from tests.web.test_web_browser import FAULTS, TIERS, WAIT, WATCH_POLICY, fetch, kept_without_reload, mark, phase_of


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    port: int
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def served(fleet_repo: Human, tmp_path: Path) -> Iterator[Served]:
    """`grayops run --listen` on billing 1.5.0 with bakes long enough to watch, its log in a file."""
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS),
                                               "policies/watch.yaml": WATCH_POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", "watch")})
    yield from run_listening(fleet_repo, tmp_path)


def run_listening(fleet_repo: Human, tmp_path: Path) -> Iterator[Served]:
    """`grayops run --listen` on a free loopback port, once its /healthz answers; stopped after."""
    port, log = free_port(), tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(fleet_repo.remote), "--workdir",
             str(tmp_path / "work"), "--interval", "0.1", "--poll", "0.3", "--no-progress",
             "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    running = Served(process, f"http://127.0.0.1:{port}", port, log)
    try:
        wait_for(lambda: process.poll() is not None or answers(running.base + "/healthz"), WAIT, "the port to answer")
        assert process.poll() is None, running.text()
        yield running
    finally:
        stop_process(process)


def answers(url: str) -> bool:
    try:
        return fetch(url)[0] == 200
    except OSError:
        return False


def page(url: str) -> str:
    status, body = fetch(url)
    assert status == 200, body
    return body


def events(port: int) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    stream = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    stream.request("GET", "/events")
    response = stream.getresponse()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/event-stream")
    return stream, response


def next_change(response: http.client.HTTPResponse) -> str:
    """The data of the next `changed` event (keepalives and the `hello` skipped)."""
    while True:
        line = response.readline()
        assert line, "the event stream ended"
        if line == b"event: changed\n":
            return response.readline().decode()


def seen_readings(html: str, batch: str, metric: str) -> int:
    """How many readings the chart of `metric` in `batch` shows (from its text alternative)."""
    section = html.split(f"Metrics of batch {batch}:", 1)[1]
    found = re.search(rf"{metric}: (\d+) reading\(s\) seen", section)
    assert found, section[:2000]
    return int(found.group(1))


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_run_serves_the_live_view_beside_its_telemetry(served: Served, fleet_repo: Human) -> None:
    base = served.base
    assert f"on http://127.0.0.1:{served.port}" in served.text()  # the port, reported
    fleet = wait_for(lambda: "Progressing" in (body := page(base + "/")) and body, WAIT,
                     "the rollout on the fleet page")
    assert 'id="plugin-billing"' in fleet and "1.5.0" in fleet
    stream, response = events(served.port)
    assert response.readline().startswith(b"retry:")
    # The rollout page follows the rollout: the canary bakes, an event says billing changed, then it succeeds.
    baking = wait_for(lambda: "Batch 1: canary" in (body := page(base + "/rollouts/billing")) and body, WAIT,
                      "the canary on the rollout page")
    assert "billing 1.5.0: Succeeded" not in baking
    assert '"billing"' in next_change(response)
    done = wait_for(lambda: "billing 1.5.0: Succeeded" in (body := page(base + "/rollouts/billing")) and body, WAIT,
                    "the rollout to succeed on its page")
    assert "Batch 3: all" in done
    # Fed in-process: the canary's chart shows every reading the reconciler took, as many as the status counts
    # (a status commit keeps only the last one, which is all a view reading git alone could show).
    recorded = remote_file(fleet_repo, "status/billing.yaml")
    assert recorded is not None
    canary = next(b for b in load_status(recorded).batches if b.name == "canary")
    taken = next(m for m in canary.metrics if m.name == "error_rate").readings
    assert taken >= 5 and seen_readings(done, "canary", "error_rate") == taken
    # The telemetry on the same port, as before.
    assert fetch(base + "/healthz") == (200, "ok\n")
    assert wait_for(lambda: fetch(base + "/readyz") == (200, "ok\n"), WAIT, "ready")
    metrics = samples(wait_for(lambda: "version_upgrade_success_rate{" in (body := page(base + "/metrics")) and body,
                               WAIT, "the success rate scraped"))
    assert metrics[("version_upgrade_success_rate", (("plugin", "billing"),))] == 1.0
    # Bad input: pages, not crashes.
    status_code, missing = fetch(base + "/rollouts/nothing")
    assert status_code == 404 and "No such plugin" in missing
    assert fetch(base + "/no/such/page")[0] == 404
    assert page(base + "/static/live.js")
    # SIGTERM with an event stream open: the stream ends cleanly and the process exits at once, 0.
    code = stop_process(served.process, timeout=15)
    rest = response.read()
    stream.close()
    log = served.text()
    assert code == 0, log
    assert rest.endswith(b"\n\n") and "Traceback" not in log and "graceful shutdown exceeded" not in log, log


def test_a_person_watches_the_rollout_live_on_the_reconcilers_port(served: Served, tmp_path: Path) -> None:
    shots = artifacts_dir(tmp_path)
    print(f"\nscreenshots of the web view: {shots}")
    with chromium() as driver:
        driver.get(served.base + "/")
        wait_for(lambda: text(driver, "#live").startswith("Live:"), WAIT, "the live updates to connect")
        mark(driver)
        wait_for(lambda: phase_of(driver, "billing") == "Progressing", WAIT, "the rollout, live on the fleet page")
        screenshot(driver, shots, "run-fleet-progressing")
        wait_for(lambda: phase_of(driver, "billing") == "Succeeded", WAIT, "the rollout to succeed, live")
        assert kept_without_reload(driver)
        screenshot(driver, shots, "run-fleet-succeeded")


def test_a_port_taken_is_one_line(fleet_repo: Human, tmp_path: Path) -> None:
    fleet_repo.commit("fleet", {"grayops.yaml": settings_yaml({"prod": 1}), "policies/fast.yaml": FAST_POLICY,
                                "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = grayops("run", "--repo", str(fleet_repo.remote), "--workdir", str(tmp_path / "work"), "--once",
                       "--no-progress", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"grayops: cannot serve telemetry on 127.0.0.1:{port}: ")
    assert "Traceback" not in done.stderr
