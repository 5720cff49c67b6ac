"""grayops' own metrics, and the HTTP server of `grayops run --listen`: `/metrics`, `/healthz`, `/readyz`, and
another app (the web view) at `/` for every other path.

Owns: a prometheus-client registry with the metrics of README "grayops' own metrics" and the reconciler's own
health, fed from the values the shell already has (each tick's `Decision`s, alerts, push and query results).
Must not: decide anything, or block the tick (it only updates in-memory metrics).

Metrics:
- `version_upgrade_success_rate{plugin}`: succeeded / finished rollouts, from reports/ at start (so a restart
  or a failover keeps it) and then as rollouts finish; `version_upgrade_rollouts_total{plugin,result}`
  (succeeded, rolled_back, failed) behind it
- `version_upgrade_instance_success_rate{plugin}`: instances upgraded and kept / instances upgraded (succeeded,
  failed or rolled back) in those rollouts; `version_upgrade_instances_total{plugin,result}` (also skipped)
- `version_upgrade_batch_duration_minutes{plugin}` (histogram): start to end of each batch that passed or failed
- `version_rollback_duration_ms{plugin}` (histogram): start to end of each rollback, verified
- `version_upgrade_alert_total{plugin,type}`: alerts raised, by kind (`plugin="*"` for fleet-wide ones)
- `grayops_batch_started_timestamp_seconds{plugin,batch}`: the batch in flight (gone when it ends)
- `grayops_analysis_value{plugin,metric}`, `grayops_analysis_no_data_since_timestamp_seconds{plugin,metric}`:
  the in-flight batch's last reading, and since when a metric has had no data
- `grayops_reconcile_tick_duration_seconds` (histogram), `grayops_git_push_failures_total`,
  `grayops_metrics_query_errors_total{plugin,metric}`, `grayops_revision_in_force`
- `grayops_webhook_events_delivered_total{target}`, `grayops_webhook_events_dropped_total{target}`: lifecycle
  events and alerts to webhook notifiers (README "Lifecycle events")
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from reconciler.adapters.httpserver import TEXT, AsgiServer
from reconciler.adapters.notify.webhook import TALLY as WEBHOOK_EVENTS
from reconciler.core.effects import Alert
from reconciler.core.engine import Decision
from reconciler.core.model import Phase, RolloutState
from reconciler.core.report import INSTANCE_RESULTS, Outcome, outcome, read_outcome

_RESULTS = {Phase.SUCCEEDED: "succeeded", Phase.ROLLED_BACK: "rolled_back", Phase.FAILED: "failed"}
BATCH_MINUTES = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120)
ROLLBACK_MS = (100, 500, 1000, 5000, 15000, 30000, 60000, 120000, 180000, 300000, 600000)
TICK_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Telemetry:
    """The reconciler's metrics and readiness. One per process; the shell calls it, the server reads it."""

    def __init__(self, registry: CollectorRegistry | None = None, stale_after: float = 60.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry or CollectorRegistry()
        self.stale_after = stale_after
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_tick: float | None = None
        self._in_force = False
        self._finished: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_RESULTS.values(), 0))
        self._upgraded: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(INSTANCE_RESULTS.values(), 0))
        self._counted: set[str] = set()  # rollout ids already counted (seen finishing, or read from a report)
        self._gauged: dict[str, set[tuple[str, ...]]] = defaultdict(set)  # plugin -> label sets of live gauges
        r = self.registry
        self.success_rate = Gauge("version_upgrade_success_rate", "Succeeded / finished rollouts of the plugin.",
                                  ["plugin"], registry=r)
        self.rollouts = Counter("version_upgrade_rollouts", "Finished rollouts by result.", ["plugin", "result"],
                                registry=r)
        self.instance_success_rate = Gauge("version_upgrade_instance_success_rate",
                                           "Instances upgraded and kept / instances upgraded, in finished rollouts.",
                                           ["plugin"], registry=r)
        self.instances = Counter("version_upgrade_instances", "Instances of finished rollouts by result.",
                                 ["plugin", "result"], registry=r)
        self.batch_minutes = Histogram("version_upgrade_batch_duration_minutes",
                                       "Minutes from a batch's start to its end (passed or failed).", ["plugin"],
                                       buckets=BATCH_MINUTES, registry=r)
        self.rollback_ms = Histogram("version_rollback_duration_ms",
                                     "Milliseconds from the start of a rollback to its verified end.", ["plugin"],
                                     buckets=ROLLBACK_MS, registry=r)
        self.alerts = Counter("version_upgrade_alert", "Alerts raised, by kind.", ["plugin", "type"], registry=r)
        self.batch_started = Gauge("grayops_batch_started_timestamp_seconds",
                                   "Start time of the batch in flight.", ["plugin", "batch"], registry=r)
        self.analysis_value = Gauge("grayops_analysis_value", "Last reading of a metric of the batch in flight.",
                                    ["plugin", "metric"], registry=r)
        self.no_data_since = Gauge("grayops_analysis_no_data_since_timestamp_seconds",
                                   "Since when a metric of the batch in flight has had no data.",
                                   ["plugin", "metric"], registry=r)
        self.tick_seconds = Histogram("grayops_reconcile_tick_duration_seconds", "Duration of one reconcile tick.",
                                      buckets=TICK_SECONDS, registry=r)
        self.push_failures = Counter("grayops_git_push_failures", "Pushes to the fleet remote that failed.",
                                     registry=r)
        self.query_errors = Counter("grayops_metrics_query_errors", "Metric queries that failed.",
                                    ["plugin", "metric"], registry=r)
        self.revision = Gauge("grayops_revision_in_force", "1 when a valid revision of the fleet is in force.",
                              registry=r)
        r.register(WEBHOOK_EVENTS)  # the webhook notifiers' deliveries and drops, counted for the whole process

    # --- fed by the shell ---------------------------------------------------------------------------------------

    def tick(self, seconds: float, revision_in_force: bool) -> None:
        """A tick completed (a tick that raises never gets here, and readiness goes stale)."""
        self.tick_seconds.observe(seconds)
        self.revision.set(1 if revision_in_force else 0)
        with self._lock:
            self._last_tick = self._monotonic()
            self._in_force = revision_in_force

    def alert(self, plugin: str, kind: str) -> None:
        self.alerts.labels(plugin, kind).inc()

    def push_failed(self) -> None:
        self.push_failures.inc()

    def query_error(self, plugin: str, metric: str) -> None:
        self.query_errors.labels(plugin, metric).inc()

    def decision(self, decision: Decision, now: datetime) -> None:
        state = decision.state
        if state is None:
            return
        plugin = state.plugin
        for effect in decision.effects:
            if isinstance(effect, Alert):
                self.alert(plugin, effect.kind)
        for transition in decision.transitions:
            after = transition.state or state
            if transition.phase in _RESULTS and after.finished == now:
                self.finished(outcome(after))
            if transition.phase in (Phase.ROLLED_BACK, Phase.FAILED) and after.rollback_started is not None \
                    and len(after.history) >= 2 and after.history[-2].phase is Phase.ROLLING_BACK:
                # from the rollback's recorded start (the breach or the command), across ticks and restarts
                began = after.rollback_started
                self.rollback_ms.labels(plugin).observe((now - began).total_seconds() * 1000)
        for batch in state.batches:
            if batch.ended == now and any(t.batch == batch.name for t in decision.transitions):
                self.batch_minutes.labels(plugin).observe((batch.ended - batch.started).total_seconds() / 60)
        self._in_flight(state)

    def count_reports(self, reports: Mapping[str, str]) -> None:
        """Count the finished rollouts reports/ records (path -> text); each rollout is counted once."""
        for _path, text in sorted(reports.items()):
            found = read_outcome(text)
            if found is not None and found.result in _RESULTS:
                self.finished(found)

    def finished(self, done: Outcome) -> None:
        """One finished rollout, counted once by its id whether seen finishing or read from its report."""
        with self._lock:
            if done.rollout_id in self._counted:
                return
            self._counted.add(done.rollout_id)
        plugin = done.plugin
        self.rollouts.labels(plugin, _RESULTS[done.result]).inc()
        counts = self._finished[plugin]
        counts[_RESULTS[done.result]] += 1
        self.success_rate.labels(plugin).set(counts["succeeded"] / sum(counts.values()))
        upgraded = self._upgraded[plugin]
        for result, count in done.instances.items():
            if result in upgraded and count:
                self.instances.labels(plugin, result).inc(count)
                upgraded[result] += count
        tried = upgraded["succeeded"] + upgraded["failed"] + upgraded["rolled_back"]
        if tried:
            self.instance_success_rate.labels(plugin).set(upgraded["succeeded"] / tried)

    def _in_flight(self, state: RolloutState) -> None:
        """Gauges of the batch in flight, replaced as a whole: what ended is removed, not left stale."""
        live: set[tuple[str, ...]] = set()
        batch = None if state.phase.terminal else state.current_batch
        if batch is not None:
            self.batch_started.labels(state.plugin, batch.name).set(batch.started.timestamp())
            live.add(("batch", batch.name))
            for track in batch.metrics:
                if track.last is not None and track.last.value is not None:
                    self.analysis_value.labels(state.plugin, track.name).set(track.last.value)
                    live.add(("value", track.name))
                if track.no_data_since is not None:
                    self.no_data_since.labels(state.plugin, track.name).set(track.no_data_since.timestamp())
                    live.add(("nodata", track.name))
        gauges = {"batch": self.batch_started, "value": self.analysis_value, "nodata": self.no_data_since}
        for kind, name in self._gauged[state.plugin] - live:
            gauges[kind].remove(state.plugin, name)
        self._gauged[state.plugin] = live

    # --- read by the server -------------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            if not self._in_force:
                return False, "no valid revision of the fleet repository in force yet"
            if self._last_tick is None:
                return False, "no tick completed yet"
            age = self._monotonic() - self._last_tick
        if age > self.stale_after:
            return False, f"last tick completed {age:.0f}s ago (limit {self.stale_after:.0f}s)"
        return True, "ok"

    def render(self) -> bytes:
        return generate_latest(self.registry)


class TelemetryServer(AsgiServer):
    """`/metrics`, `/healthz` (the process answers) and `/readyz` (a revision in force, a recent tick); every other
    path is `root`'s (mounted at `/`), else a 404."""

    name = "telemetry"

    def __init__(self, telemetry: Telemetry, host: str = "127.0.0.1", port: int = 0, root: ASGIApp | None = None,
                 grace: int = 3) -> None:
        routes: list[BaseRoute] = [Route("/metrics", self.metrics), Route("/healthz", self.healthz),
                                   Route("/readyz", self.readyz)]
        routes.append(Mount("/", root) if root is not None else Route("/{path:path}", self.not_found))
        super().__init__(Starlette(routes=routes), host, port, grace)
        self.telemetry = telemetry

    def metrics(self, request: Request) -> Response:
        return Response(self.telemetry.render(), media_type=CONTENT_TYPE_LATEST)

    def healthz(self, request: Request) -> Response:
        return Response(b"ok\n", media_type=TEXT)

    def readyz(self, request: Request) -> Response:
        ok, why = self.telemetry.ready()
        return Response(f"{why}\n", status_code=200 if ok else 503, media_type=TEXT)

    def not_found(self, request: Request) -> Response:
        return Response(b"not found: /metrics, /healthz, /readyz\n", status_code=404, media_type=TEXT)


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT` (`0.0.0.0:9100`, `127.0.0.1:0`, `[::1]:9100`) -> (host, port); ValueError when malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:9100")
    return host.strip("[]") or "0.0.0.0", int(port)
