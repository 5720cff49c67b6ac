"""PrometheusMetrics against the real Prometheus server, scraping the sim fleet's exporter every second.

Every fault is a reading with a reason, never an exception: bad PromQL, a range vector, NaN and Inf, an
unreachable or silent server, missing credentials.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.adapters.notify.log import LogNotifier
from reconciler.adapters.ports import SystemClock
from reconciler.adapters.prometheus import PrometheusMetrics, PrometheusSettings
from reconciler.adapters.registry import Runtime
from reconciler.adapters.sim import SimFleet
from reconciler.adapters.sim_exporter import SimExporter
from reconciler.core.analysis import judge
from reconciler.core.effects import SetVersion
from reconciler.core.model import Measurement, Verdict
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ClusterSpec, MetricSpec, Plugin, SimFault, SimSettings
from tests.conftest import free_port, grayops, wait_for
from tests.prom.promserver import Prometheus

CLUSTERS = [ClusterSpec(name=n, labels={"tier": n.split("-")[0]}) for n in ("canary-1", "prod-1", "prod-2")]
CANARY = [InstanceRef("canary-1", "plugins")]
PROD = [InstanceRef("prod-1", "plugins"), InstanceRef("prod-2", "plugins")]
FAULTS = [SimFault(version="2.0.0", error_rate=0.2, latency_p99_ms=900.0)]


def plugin(name: str = "billing") -> Plugin:
    return Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": name},
                                  "spec": {"version": "1.0.0"}})


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    """billing 1.0.0 on prod-1 and prod-2, 2.0.0 (20% errors, p99 900 ms) on canary-1, as Prometheus sees them."""
    workdir = tmp_path_factory.mktemp("prom-source")
    fleet = SimFleet(workdir, SimSettings(upgrade_seconds=0, faults=FAULTS), CLUSTERS, SystemClock())
    fleet.apply(plugin(), [SetVersion("billing", r.id, "1.0.0", "r", None) for r in PROD]
                + [SetVersion("billing", r.id, "2.0.0", "r", None) for r in CANARY])
    with SimExporter(fleet) as exporter:
        server = Prometheus(workdir / "prometheus", [f"127.0.0.1:{exporter.port}"]).start()
        try:
            rates = 'rate(http_requests_total{plugin="billing",code="500"}[5s])'
            wait_for(lambda: len(server.values(rates)) == 3, timeout=60, what="rates of all three instances")
            yield server
        finally:
            server.stop()


def source(url: str, **settings: object) -> PrometheusMetrics:
    return PrometheusMetrics(PrometheusSettings.model_validate({"provider": "prometheus", "url": url,
                                                             "minWindow": "5s", **settings}), environ={})


def metric(name: str, **fields: object) -> MetricSpec:
    return MetricSpec.model_validate({"name": name, "max": fields.pop("max", 1e9), **fields})


class TestDefaultQueries:
    def test_a_bad_versions_error_rate_is_measured(self, prometheus: Prometheus) -> None:
        got = source(prometheus.url).measure(plugin(), "2.0.0", metric("error_rate"), CANARY, 1.0)
        assert got.error is None and got.series == 1
        assert got.value == pytest.approx(0.2, abs=0.02)

    def test_a_good_versions_error_rate_is_low_with_one_series_per_instance(self, prometheus: Prometheus) -> None:
        got = source(prometheus.url).measure(plugin(), "1.0.0", metric("error_rate"), PROD, 1.0)
        assert got.error is None and got.series == 2
        assert got.value is not None and got.value < 0.05

    def test_latency_p99_in_milliseconds(self, prometheus: Prometheus) -> None:
        slow = source(prometheus.url).measure(plugin(), "2.0.0", metric("latency_p99_ms"), CANARY, 1.0)
        fast = source(prometheus.url).measure(plugin(), "1.0.0", metric("latency_p99_ms"), PROD, 1.0)
        assert slow.value == pytest.approx(900, rel=0.1)
        assert fast.value is not None and fast.value < 500

    def test_one_query_per_metric_per_batch_not_per_instance(self, prometheus: Prometheus) -> None:
        prom = source(prometheus.url)
        prom.measure(plugin(), "1.0.0", metric("error_rate"), PROD + CANARY, 1.0)
        assert prom.queries == 1

    def test_a_version_nobody_runs_is_no_data(self, prometheus: Prometheus) -> None:
        got = source(prometheus.url).measure(plugin(), "9.9.9", metric("error_rate"), PROD, 1.0)
        assert got == Measurement(None, series=0)
        assert judge(metric("error_rate", max=0.05), got, _now()).verdict is Verdict.INCONCLUSIVE


class TestAggregate:
    # One series per version: 1.0.0 -> 2 instances, 2.0.0 -> 1 instance.
    QUERY = 'count by (version) (grayops_sim_error_rate{plugin="{plugin}"})'

    @pytest.mark.parametrize(("aggregate", "expected"), [("max", 2.0), ("avg", 1.5), ("sum", 3.0)])
    def test_several_series_are_reduced(self, prometheus: Prometheus, aggregate: str, expected: float) -> None:
        spec = metric("instances", query=self.QUERY, aggregate=aggregate)
        got = source(prometheus.url).measure(plugin(), "1.0.0", spec, PROD, 1.0)
        assert (got.value, got.series) == (expected, 2)


class TestBadAnswers:
    def test_bad_promql_is_an_error_with_the_query_and_prometheus_message(self, prometheus: Prometheus) -> None:
        spec = metric("broken", query="sum(rate(http_requests_total[{window}])")
        got = source(prometheus.url).measure(plugin(), "1.0.0", spec, PROD, 1.0)
        assert got.value is None and got.error is not None
        assert "HTTP 400 bad_data" in got.error and "parse error" in got.error
        assert "sum(rate(http_requests_total[5s])" in got.error
        reading = judge(spec, got, _now())
        assert reading.verdict is Verdict.ERROR and "parse error" in reading.message

    def test_a_range_vector_is_an_error_not_a_guess(self, prometheus: Prometheus) -> None:
        spec = metric("raw", query='http_requests_total{plugin="{plugin}"}[30s]')
        got = source(prometheus.url).measure(plugin(), "1.0.0", spec, PROD, 1.0)
        assert got.error is not None and "range vector (matrix)" in got.error

    def test_a_string_is_an_error(self, prometheus: Prometheus) -> None:
        got = source(prometheus.url).measure(plugin(), "1.0.0", metric("text", query='"hello"'), PROD, 1.0)
        assert got.error is not None and "string" in got.error

    @pytest.mark.parametrize("query", ["0/0", 'grayops_sim_error_rate{plugin="{plugin}"} * 0 / 0'])
    def test_nan_is_no_evidence(self, prometheus: Prometheus, query: str) -> None:
        spec = metric("ratio", query=query, max=0.05)
        got = source(prometheus.url).measure(plugin(), "1.0.0", spec, PROD, 1.0)
        assert got.error is None and got.value is not None and math.isnan(got.value)
        assert judge(spec, got, _now()).verdict is Verdict.INCONCLUSIVE

    def test_infinity_is_a_value_that_fails_a_max(self, prometheus: Prometheus) -> None:
        spec = metric("ratio", query="1/0", max=0.05)
        got = source(prometheus.url).measure(plugin(), "1.0.0", spec, PROD, 1.0)
        assert got.value == math.inf
        assert judge(spec, got, _now()).verdict is Verdict.FAILED


class TestUnreachable:
    def test_nothing_listening_is_an_error_naming_the_server(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        got = source(url).measure(plugin(), "1.0.0", metric("error_rate"), PROD, 1.0)
        assert got.value is None and got.error is not None
        assert f"Prometheus at {url} unreachable" in got.error

    def test_a_server_that_never_answers_times_out(self) -> None:
        with socket.socket() as silent:  # accepts connections (the kernel's backlog) but never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            got = source(url, timeout="500ms").measure(plugin(), "1.0.0", metric("error_rate"), PROD, 1.0)
        assert got.error is not None and "did not answer within 0.5s" in got.error

    def test_a_missing_token_is_an_error_naming_the_variable(self, prometheus: Prometheus) -> None:
        prom = source(prometheus.url, auth={"bearer": {"env": "GRAYOPS_TEST_PROM_TOKEN"}})
        got = prom.measure(plugin(), "1.0.0", metric("error_rate"), PROD, 1.0)
        assert got.error is not None and "GRAYOPS_TEST_PROM_TOKEN is not set" in got.error

    def test_an_unreadable_password_file_is_an_error_naming_it(self, prometheus: Prometheus, tmp_path: Path) -> None:
        missing = tmp_path / "nope"
        prom = source(prometheus.url, auth={"basic": {"username": "grayops", "password": {"file": str(missing)}}})
        got = prom.measure(plugin(), "1.0.0", metric("error_rate"), PROD, 1.0)
        assert got.error is not None and f"cannot read {missing}" in got.error


class TestCheckQueries:
    def fleet(self, root: Path, url: str, error_query: str) -> Path:
        root.mkdir()
        (root / "grayops.yaml").write_text(
            "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n"
            + "".join(f"  - {{name: {c.name}, labels: {{tier: {c.labels['tier']}}}}}\n" for c in CLUSTERS)
            + f"metrics:\n  provider: prometheus\n  url: {url}\n  queries:\n    error_rate: '{error_query}'\n")
        (root / "plugins").mkdir()
        (root / "plugins" / "billing.yaml").write_text(
            "apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\n"
            "spec: {version: \"1.0.0\", policy: canary-waves}\n")
        return root

    def test_a_bad_query_is_reported_with_prometheus_message(self, prometheus: Prometheus, tmp_path: Path) -> None:
        root = self.fleet(tmp_path / "fleet", prometheus.url, "sum(rate(http_requests_total[{window}])")
        done = grayops("validate", str(root), "--check-queries")
        assert done.returncode == 1
        assert "billing error_rate: Prometheus rejected the query (HTTP 400 bad_data:" in done.stderr
        assert "sum(rate(http_requests_total[1m])" in done.stderr
        assert "1 of 2 queries failed" in done.stderr

    def test_good_queries_pass(self, prometheus: Prometheus, tmp_path: Path) -> None:
        root = self.fleet(tmp_path / "fleet", prometheus.url,
                          'max(rate(http_requests_total{{plugin="{plugin}"}}[{window}]))'.replace("{{", "{")
                          .replace("}}", "}"))
        done = grayops("validate", str(root), "--check-queries")
        assert done.returncode == 0, done.stderr
        assert "ok: 2 queries answered" in done.stdout


def _now() -> datetime:
    return datetime.now(UTC)


class TestBaselineThroughTheShell:
    """The shell asks the same source for the baseline: the same query over the instances still on the old
    version; the core then judges canary against it."""

    def runtime(self, url: str) -> Runtime:
        return Runtime({}, source(url), LogNotifier())

    def test_a_canary_worse_than_its_baseline_fails(self, prometheus: Prometheus) -> None:
        from reconciler.shell.effects import with_baseline

        spec = metric("error_rate", max=0.5, maxIncrease=1.0)
        runtime = self.runtime(prometheus.url)
        canary = runtime.metrics.measure(plugin(), "2.0.0", spec, CANARY, 1.0)
        measured = with_baseline(runtime, plugin(), spec, canary, PROD, "1.0.0", 1.0)
        assert measured.baseline is not None and measured.baseline < 0.05
        reading = judge(spec, measured, _now())
        assert reading.verdict is Verdict.FAILED and "> baseline" in reading.message

    def test_a_silent_baseline_is_inconclusive(self, prometheus: Prometheus) -> None:
        from reconciler.shell.effects import with_baseline

        spec = metric("error_rate", max=0.5, maxIncrease=1.0)
        runtime = self.runtime(prometheus.url)
        canary = runtime.metrics.measure(plugin(), "2.0.0", spec, CANARY, 1.0)
        measured = with_baseline(runtime, plugin(), spec, canary, PROD, "0.9.0", 1.0)
        assert measured.baseline_missing == "no data for the baseline (2 instance(s) on 0.9.0)"
        assert judge(spec, measured, _now()).verdict is Verdict.INCONCLUSIVE


class TestTls:
    """Prometheus served over TLS with a certificate of our own CA (its --web.config.file)."""

    @pytest.fixture
    def tls_prometheus(self, tmp_path: Path) -> Iterator[tuple[Prometheus, Path]]:
        import datetime as dt
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "grayops test prometheus")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(hours=1))
                .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        web = tmp_path / "web.yml"
        web.write_text(f"tls_server_config:\n  cert_file: {cert_file}\n  key_file: {key_file}\n")
        server = Prometheus(tmp_path / "prometheus", [], web_config=web, scheme="https").start()
        yield server, cert_file
        server.stop()

    def test_verified_with_the_ca_file(self, tls_prometheus: tuple[Prometheus, Path]) -> None:
        server, ca = tls_prometheus
        answer = source(server.url, tls={"caFile": str(ca)}).query("vector(1)")
        assert answer.error is None and answer.values == (1.0,)

    def test_an_unknown_certificate_is_an_error(self, tls_prometheus: tuple[Prometheus, Path]) -> None:
        server, _ = tls_prometheus
        answer = source(server.url).query("vector(1)")
        assert answer.error is not None and "unreachable" in answer.error and "CERTIFICATE_VERIFY_FAILED" in \
            answer.error

    def test_verification_can_be_turned_off(self, tls_prometheus: tuple[Prometheus, Path]) -> None:
        server, _ = tls_prometheus
        assert source(server.url, tls={"verify": False}).query("vector(1)").values == (1.0,)
