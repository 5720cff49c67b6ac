"""Benchmark of metric judgement against the real Prometheus; prints figures (no pass/fail).

    python tests/bench/bench_prometheus.py [--instances 100] [--intervals 30]

A batch of `--instances` sim instances (10 namespaces per cluster) is scraped every second by Debian's
prometheus server; each interval measures 3 metrics for the whole batch the way the reconciler does
(`PrometheusMetrics.measure`, one query per metric per batch): error_rate and latency_p99_ms with the default
PromQL, and a third from the sim's gauges. Prints queries per interval and query latency (p50, p95, max), and
for comparison what one query per instance would cost for one interval.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.adapters.ports import SystemClock
from reconciler.adapters.prometheus import PrometheusMetrics, PrometheusSettings
from reconciler.adapters.sim import SimFleet
from reconciler.adapters.sim_exporter import SimExporter
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ClusterSpec, MetricSpec, Plugin, SimSettings
from tests.conftest import wait_for
from tests.prom.promserver import Prometheus

PLUGIN = Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"},
                                "spec": {"version": "1.0.0"}})
METRICS = (
    MetricSpec(name="error_rate", max=0.05),
    MetricSpec(name="latency_p99_ms", max=500),
    MetricSpec(name="saturation", max=1, aggregate="avg",
               query='grayops_sim_error_rate{plugin="{plugin}",version="{version}",cluster=~"{cluster}",'
                     'namespace=~"{namespace}"}'),
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--intervals", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between measurements")
    args = parser.parse_args()
    namespaces = [f"tenant-{i}" for i in range(10)]
    clusters = [ClusterSpec(name=f"prod-{i}", labels={"tier": "prod"}) for i in range(-(-args.instances // 10))]
    refs = [InstanceRef(c.name, ns) for c in clusters for ns in namespaces][:args.instances]
    with tempfile.TemporaryDirectory(prefix="grayops-bench-prom-") as tmp:
        fleet = SimFleet(Path(tmp), SimSettings(upgrade_seconds=0), clusters, SystemClock())
        fleet.apply(PLUGIN, [SetVersion("billing", ref.id, "1.0.0", "bench", None) for ref in refs])
        with SimExporter(fleet) as exporter:
            prometheus = Prometheus(Path(tmp) / "prometheus", [f"127.0.0.1:{exporter.port}"]).start()
            try:
                source = PrometheusMetrics(PrometheusSettings(provider="prometheus", url=prometheus.url,
                                                           min_window=5.0))
                wait_for(lambda: (m := source.measure(PLUGIN, "1.0.0", METRICS[0], refs, 1.0)).series == len(refs)
                         and m, timeout=120, what=f"rates of all {len(refs)} instances")
                series = len(prometheus.query('{__name__=~"http_.*|grayops_sim_.*"}'))
                latencies: list[float] = []
                per_interval: list[float] = []
                before = source.queries
                incomplete = 0
                for _ in range(args.intervals):
                    started = time.perf_counter()
                    for metric in METRICS:
                        t0 = time.perf_counter()
                        measured = source.measure(PLUGIN, "1.0.0", metric, refs, args.interval)
                        latencies.append((time.perf_counter() - t0) * 1000)
                        incomplete += measured.error is not None or measured.series != len(refs)
                    per_interval.append((time.perf_counter() - started) * 1000)
                    time.sleep(max(0.0, args.interval - (time.perf_counter() - started)))
                queries = source.queries - before
                t0 = time.perf_counter()
                for ref in refs:  # what one query per instance would cost, for one metric and one interval
                    source.measure(PLUGIN, "1.0.0", METRICS[0], [ref], args.interval)
                per_instance = (time.perf_counter() - t0) * 1000
            finally:
                prometheus.stop()
    print(f"batch of {len(refs)} instances, {len(METRICS)} metrics, {series} scraped series, "
          f"{args.intervals} intervals of {args.interval:g}s")
    print(f"queries per interval: {queries / args.intervals:g} (one per metric per batch); "
          f"answers missing series or failed: {incomplete}")
    print(f"query latency ms: p50 {statistics.median(latencies):.1f}, p95 {percentile(latencies, 0.95):.1f}, "
          f"max {max(latencies):.1f}")
    print(f"all {len(METRICS)} metrics of one interval, ms: p50 {statistics.median(per_interval):.1f}, "
          f"p95 {percentile(per_interval, 0.95):.1f}, max {max(per_interval):.1f}")
    print(f"for comparison, one query per instance: {len(refs)} queries, {per_instance:.0f} ms for one metric")


if __name__ == "__main__":
    main()
