"""The sim exporter over real HTTP on loopback, its output read by prometheus_client's own parser."""

from __future__ import annotations

import itertools
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from reconciler.adapters.sim import SimFleet
from reconciler.adapters.sim_exporter import BUCKETS, SimExporter, escape_label, latency_shares
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ClusterSpec, Plugin, SimFault, SimSettings
from tests.conftest import FakeClock

UPGRADE = 5.0


CLUSTERS = [
    ClusterSpec(name="canary-1", labels={"tier": "canary"}),
    ClusterSpec(name="prod-1", labels={"tier": "prod"}),
    ClusterSpec(name="prod-2", labels={"tier": "prod", "region": "us"}),
]
INSTANCES = [InstanceRef(c.name, "plugins") for c in CLUSTERS]
PLUGIN = Plugin.model_validate({
    "apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"}, "spec": {"version": "1.0.0"},
})
FAULTS = [
    SimFault(version="2.0.0", selector={"tier": "canary"}, error_rate=0.2, latency_p99_ms=800.0),
    SimFault(version="2.0.0", selector={"region": "us"}, no_metrics=True),
]

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fleet(tmp_path: Path, clock: FakeClock) -> SimFleet:
    return SimFleet(tmp_path, SimSettings(upgrade_seconds=UPGRADE, faults=FAULTS), CLUSTERS, clock)


@pytest.fixture
def exporter(fleet: SimFleet) -> Iterator[SimExporter]:
    with SimExporter(fleet) as running:
        yield running


def upgrade(fleet: SimFleet, clock: FakeClock, version: str, instances: list[InstanceRef] = INSTANCES) -> None:
    changes = [SetVersion("billing", i.id, version, "r1", None) for i in instances]
    assert fleet.apply(PLUGIN, changes) == {}
    clock.advance(UPGRADE)


def scrape(exporter: SimExporter) -> tuple[str, str]:
    with urllib.request.urlopen(exporter.url, timeout=5) as response:
        return response.headers["Content-Type"], response.read().decode("utf-8")


def samples(text: str) -> Series:
    """(sample name, sorted labels) -> value, for every sample the official parser finds."""
    found: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def of(series: Series, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples named `name` whose labels include `labels`."""
    return {key: value for (sample, key), value in series.items()
            if sample == name and all((k, v) in key for k, v in labels.items())}


def total(series: Series, name: str, **labels: str) -> float:
    return sum(of(series, name, **labels).values())


class TestServing:
    def test_the_format_is_valid_and_complete(self, exporter: SimExporter, fleet: SimFleet, clock: FakeClock) -> None:
        upgrade(fleet, clock, "1.0.0")
        clock.advance(30)
        content_type, text = scrape(exporter)
        assert content_type.startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert {name: f.type for name, f in families.items()} == {
            "grayops_sim_error_rate": "gauge",
            "grayops_sim_latency_p99_ms": "gauge",
            "http_requests": "counter",  # the parser drops the _total suffix from a counter family's name
            "http_request_duration_seconds": "histogram",
        }
        assert all(f.documentation for f in families.values())
        gauges: list[Sample] = families["grayops_sim_error_rate"].samples
        assert sorted(s.labels["cluster"] for s in gauges) == ["canary-1", "prod-1", "prod-2"]
        assert gauges[0].labels == {"plugin": "billing", "cluster": "canary-1", "namespace": "plugins",
                                    "version": "1.0.0"}
        codes = {s.labels["code"] for s in families["http_requests"].samples}
        assert codes == {"200", "500"}
        bounds = {s.labels["le"] for s in families["http_request_duration_seconds"].samples if "le" in s.labels}
        assert bounds == {*(repr(b) for b in BUCKETS), "+Inf"}
        series = samples(text)
        assert total(series, "http_requests_total", cluster="prod-1") == pytest.approx(100 * 30, abs=0.01)
        assert total(series, "http_request_duration_seconds_count", cluster="prod-1") == pytest.approx(3000)

    def test_only_ready_instances_are_served(self, exporter: SimExporter, fleet: SimFleet,
                                             clock: FakeClock) -> None:
        assert samples(scrape(exporter)[1]) == {}
        fleet.apply(PLUGIN, [SetVersion("billing", INSTANCES[0].id, "1.0.0", "r1", None)])
        assert samples(scrape(exporter)[1]) == {}
        clock.advance(UPGRADE)
        assert {dict(k)["cluster"] for k in of(samples(scrape(exporter)[1]), "grayops_sim_error_rate")} == {
            "canary-1"}

    @pytest.mark.parametrize("path", ["/", "/metricsx", "/health"])
    def test_other_paths_are_not_found(self, exporter: SimExporter, path: str) -> None:
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(exporter.url.replace("/metrics", path), timeout=5)
        assert caught.value.code == 404

    def test_port_zero_gets_a_real_port_and_stop_releases_it(self, fleet: SimFleet) -> None:
        exporter = SimExporter(fleet).start()
        try:
            assert exporter.port > 0
            assert exporter.url == f"http://127.0.0.1:{exporter.port}/metrics"
            assert scrape(exporter)[1].startswith("# HELP")
        finally:
            exporter.stop()
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(exporter.url, timeout=2)


class TestCounters:
    def test_counters_never_go_down_across_scrapes(self, exporter: SimExporter, fleet: SimFleet,
                                                   clock: FakeClock) -> None:
        upgrade(fleet, clock, "1.0.0")
        scrapes = []
        for step in (0.3, 1.0, 0.7, 13.0, 0.0):
            clock.advance(step)
            scrapes.append(samples(scrape(exporter)[1]))
        clock.advance(-10)  # a clock stepping back still never lowers a counter
        scrapes.append(samples(scrape(exporter)[1]))
        for before, after in itertools.pairwise(scrapes):
            for key, value in before.items():
                if not key[0].startswith("grayops_sim_"):  # gauges may move either way
                    assert after[key] >= value, key
        assert total(scrapes[-2], "http_requests_total") > total(scrapes[0], "http_requests_total")

    def test_the_error_ratio_of_the_counters_is_the_fault(self, exporter: SimExporter, fleet: SimFleet,
                                                          clock: FakeClock) -> None:
        upgrade(fleet, clock, "2.0.0", INSTANCES[:1])
        first = samples(scrape(exporter)[1])
        clock.advance(60)
        second = samples(scrape(exporter)[1])

        def delta(**labels: str) -> float:
            return total(second, "http_requests_total", **labels) - total(first, "http_requests_total", **labels)

        assert delta() == pytest.approx(6000, abs=0.01)
        assert delta(code="500") / delta() == pytest.approx(0.2, abs=1e-6)
        gauge = of(second, "grayops_sim_error_rate")
        assert list(gauge.values()) == [0.2]

    def test_healthy_instances_have_a_small_error_ratio(self, exporter: SimExporter, fleet: SimFleet,
                                                        clock: FakeClock) -> None:
        upgrade(fleet, clock, "1.0.0")
        clock.advance(60)
        series = samples(scrape(exporter)[1])
        assert 0.001 <= total(series, "http_requests_total", code="500") / total(series, "http_requests_total") <= 0.004

    def test_a_silent_instance_disappears(self, exporter: SimExporter, fleet: SimFleet, clock: FakeClock) -> None:
        upgrade(fleet, clock, "1.0.0")
        before = samples(scrape(exporter)[1])
        assert of(before, "http_requests_total", cluster="prod-2")
        upgrade(fleet, clock, "2.0.0", INSTANCES[2:])  # prod-2 is in region us: no_metrics for 2.0.0
        after = samples(scrape(exporter)[1])
        assert not [key for key in after if ("cluster", "prod-2") in key[1]]
        assert of(after, "http_requests_total", cluster="prod-1")


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """PromQL's histogram_quantile over cumulative bucket counts keyed by upper bound (inf for +Inf)."""
    bounds = sorted(buckets)
    rank = q * buckets[float("inf")]
    lower, below = 0.0, 0.0
    for bound in bounds:
        if buckets[bound] >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / (buckets[bound] - below)
        lower, below = bound, buckets[bound]
    raise AssertionError("unreachable: +Inf holds every request")


class TestHistogram:
    def test_the_99th_percentile_of_the_bucket_rates_is_the_instance_p99(
            self, exporter: SimExporter, fleet: SimFleet, clock: FakeClock) -> None:
        upgrade(fleet, clock, "2.0.0", INSTANCES[:1])  # canary-1: p99 800 ms
        upgrade(fleet, clock, "1.0.0", INSTANCES[1:2])  # prod-1: healthy, steady p99 120 ms
        first = samples(scrape(exporter)[1])
        clock.advance(60)
        second = samples(scrape(exporter)[1])
        for cluster, p99 in (("canary-1", 0.8), ("prod-1", 0.12)):
            rates = {
                float(dict(key)["le"]): value - first[("http_request_duration_seconds_bucket", key)]
                for key, value in of(second, "http_request_duration_seconds_bucket", cluster=cluster).items()
            }
            assert histogram_quantile(0.99, rates) == pytest.approx(p99, rel=0.01)
            counted = total(second, "http_request_duration_seconds_count", cluster=cluster)
            assert counted == second[("http_request_duration_seconds_bucket",
                                      next(k for k in of(second, "http_request_duration_seconds_bucket",
                                                         cluster=cluster, le="+Inf")))]

    @pytest.mark.parametrize(("p99", "expected"), [
        pytest.param(0.03, 0.0495, id="under-the-first-bound-reads-as-49.5ms"),
        pytest.param(0.05, 0.05, id="on-a-bound"),
        pytest.param(0.12, 0.12, id="healthy"),
        pytest.param(0.8, 0.8, id="slow"),
        pytest.param(2.4, 2.4, id="in-the-last-finite-bucket"),
        pytest.param(4.0, 2.5, id="past-the-last-bound-reads-as-2.5s"),
    ])
    def test_latency_shares(self, p99: float, expected: float) -> None:
        cumulative, mean = latency_shares(p99)
        assert list(cumulative) == sorted(cumulative) and cumulative[-1] <= 1.0
        buckets = {**dict(zip(BUCKETS, cumulative, strict=True)), float("inf"): 1.0}
        assert histogram_quantile(0.99, buckets) == pytest.approx(expected, rel=1e-6)
        assert 0 < mean < max(p99, BUCKETS[-1])


@pytest.mark.parametrize(("raw", "escaped"), [
    pytest.param("plain", "plain", id="plain"),
    pytest.param('say "hi"', 'say \\"hi\\"', id="quote"),
    pytest.param("back\\slash", "back\\\\slash", id="backslash"),
    pytest.param("two\nlines", "two\\nlines", id="newline"),
])
def test_label_values_are_escaped(raw: str, escaped: str) -> None:
    assert escape_label(raw) == escaped
    text = f'# TYPE m gauge\nm{{v="{escaped}"}} 1.0\n'
    [family] = text_string_to_metric_families(text)
    assert family.samples[0].labels == {"v": raw}
