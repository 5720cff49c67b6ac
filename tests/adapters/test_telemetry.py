"""grayops' own telemetry: metrics fed from the engine's decisions, served over real HTTP on loopback with
/healthz and /readyz, read back with prometheus_client's own parser."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reconciler.adapters.telemetry import Telemetry, TelemetryServer, parse_listen
from reconciler.core.model import Phase
from tests.core.test_engine import Run, desired, installed, run


def sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(telemetry.render().decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def feed(telemetry: Telemetry, result: Run) -> None:
    """What the shell does after each tick: hand every decision to telemetry with the tick's time (a state is
    stamped `updated` with it on every transition, and only transitions are timed)."""
    for decision in result.decisions:
        assert decision.state is not None
        telemetry.decision(decision, decision.state.updated)


class TestFromDecisions:
    def test_success_rate_batch_and_rollback_durations_and_alerts(self) -> None:
        telemetry = Telemetry()
        state, world, now = installed("1.5.0")
        good = run(desired("1.6.0"), world, state, now)
        feed(telemetry, good)
        assert good.state is not None and good.state.phase is Phase.SUCCEEDED
        world.error_rate["1.7.0"] = 0.3
        bad = run(desired("1.7.0"), world, good.state, good.now)
        feed(telemetry, bad)
        assert bad.state is not None and bad.state.phase is Phase.ROLLED_BACK

        assert sample(telemetry, "version_upgrade_success_rate", plugin="billing") == 0.5
        assert sample(telemetry, "version_upgrade_rollouts_total", plugin="billing", result="rolled_back") == 1
        # 3 batches passed in 1.6.0, the canary of 1.7.0 failed
        assert sample(telemetry, "version_upgrade_batch_duration_minutes_count", plugin="billing") == 4
        durations = sample(telemetry, "version_upgrade_batch_duration_minutes_sum", plugin="billing")
        assert durations is not None and durations > 0
        assert sample(telemetry, "version_rollback_duration_ms_count", plugin="billing") == 1
        assert sample(telemetry, "version_upgrade_alert_total", plugin="billing", type="metric_threshold") == 1
        assert sample(telemetry, "version_upgrade_alert_total", plugin="billing", type="batch_failed") == 1
        # nothing in flight any more: the gauges of the failed batch are gone, not left stale
        assert sample(telemetry, "grayops_batch_started_timestamp_seconds", plugin="billing") is None
        assert sample(telemetry, "grayops_analysis_value", plugin="billing") is None

    def test_the_batch_in_flight_is_shown_while_it_bakes(self) -> None:
        telemetry = Telemetry()
        state, world, now = installed("1.5.0")
        world.error_rate["1.6.0"] = None
        result = run(desired("1.6.0"), world, state, now, until=(Phase.PAUSED,), ticks=6)
        for decision in result.decisions:
            assert decision.state is not None
            telemetry.decision(decision, decision.state.updated)
        assert sample(telemetry, "grayops_batch_started_timestamp_seconds", plugin="billing", batch="canary")


class TestServer:
    @pytest.fixture
    def served(self) -> Iterator[tuple[TelemetryServer, list[float]]]:
        clock = [100.0]
        server = TelemetryServer(Telemetry(stale_after=30, monotonic=lambda: clock[0]), "127.0.0.1", 0).start()
        yield server, clock
        server.stop()

    def get(self, server: TelemetryServer, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def test_health_readiness_and_metrics(self, served: tuple[TelemetryServer, list[float]]) -> None:
        server, clock = served
        assert self.get(server, "/healthz") == (200, "ok\n")
        assert self.get(server, "/readyz") == (503, "no valid revision of the fleet repository in force yet\n")
        server.telemetry.tick(0.01, revision_in_force=True)
        assert self.get(server, "/readyz") == (200, "ok\n")
        clock[0] += 31  # no tick completed for longer than the limit: a stuck reconciler is not ready
        status, text = self.get(server, "/readyz")
        assert status == 503 and "last tick completed 31s ago" in text
        server.telemetry.push_failed()
        server.telemetry.query_error("billing", "error_rate")
        status, body = self.get(server, "/metrics")
        assert status == 200
        assert "grayops_git_push_failures_total 1.0" in body
        assert 'grayops_metrics_query_errors_total{metric="error_rate",plugin="billing"} 1.0' in body
        assert "grayops_reconcile_tick_duration_seconds_count 1.0" in body
        assert self.get(server, "/other")[0] == 404


@pytest.mark.parametrize(("text", "expected"), [
    ("0.0.0.0:9100", ("0.0.0.0", 9100)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9100", ("::1", 9100)),
    (":9100", ("0.0.0.0", 9100)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9100", "host:", "host:port", "h:70000"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_listen(text)
