"""The web metrics provider against a loopback HTTP server that serves JSON: a value picked with a JSON path and
judged like any other; every failure (HTTP 500, a slow answer, invalid JSON, nothing at the path, not a number,
nobody listening, a missing secret) a reading with an error or no data, never an exception; and `grayops run`
rolling a version back on the web provider's readings."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from policies import builtin_policies
from reconciler.adapters.web import WebMetrics, WebSettings, parse_path, pick
from reconciler.cli import full_registry
from reconciler.core.analysis import judge
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.core.model import Verdict
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import MetricSpec, Plugin
from tests.conftest import FAST_POLICY, Human, free_port, plugin_yaml, remote_file, remote_status, wait_for

BATCH = [InstanceRef("canary-1", "tenant-a"), InstanceRef("prod-1", "tenant-b")]
TOKEN = "s3cret-token-NEVER-SHOWN"


class JsonServer:
    """Serves `routes` (path -> (status, body)), `/slow` after `release` (or 10 s), and `/echo`: what it was sent."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, str]] = {}
        self.release = threading.Event()
        self.seen: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer(b"")

            def do_POST(self) -> None:
                self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _answer(self, body: bytes) -> None:
                url = urllib.parse.urlsplit(self.path)
                received: dict[str, Any]  # a JSON document: /echo answers with it
                received = {"method": self.command, "path": url.path, "query": urllib.parse.parse_qs(url.query),
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": json.loads(body) if body else None}
                server.seen.append(received)
                if url.path == "/slow":
                    server.release.wait(10)
                if url.path in ("/echo", "/echo-error"):  # what was sent, as some APIs answer with it
                    status, text = (200 if url.path == "/echo" else 500), json.dumps(received)
                else:
                    status, text = server.routes.get(url.path, (404, '{"error": "no such route"}'))
                if url.path == "/by-version":
                    version = received["query"]["version"][0]
                    status, text = 200, json.dumps({"data": {"errorRate": 0.2 if version == "1.6.0" else 0.001}})
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[JsonServer]:
    found = JsonServer()
    found.routes.update({
        "/good": (200, '{"data": {"value": 0.01}}'),
        "/bad": (200, '{"data": {"value": 0.2}}'),
        "/text": (200, '{"data": {"value": "0.05"}}'),
        "/word": (200, '{"data": {"value": "high"}}'),
        "/flag": (200, '{"data": {"value": true}}'),
        "/null": (200, '{"data": {"value": null}}'),
        "/nan": (200, '{"data": {"value": "NaN"}}'),
        "/series": (200, '{"data": {"value": [0.01, 0.03, 0.02]}}'),
        "/missing": (200, '{"data": {}}'),
        "/invalid": (200, '{"data": {"value": 0.01'),
        "/error": (500, '{"error": "database is down"}'),
    })
    try:
        yield found
    finally:
        found.close()


def plugin() -> Plugin:
    return Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"},
                                  "spec": {"version": "1.6.0"}})


def metric(name: str = "error_rate", **fields: Any) -> MetricSpec:
    return MetricSpec.model_validate({"name": name, "max": 0.05, **fields})


def web(server: JsonServer, path: str = "/good", json_path: str = "$.data.value", env: dict[str, str] | None = None,
        **settings: Any) -> WebMetrics:
    query = {"url": server.url + path, "jsonPath": json_path, **settings.pop("query", {})}
    return WebMetrics(WebSettings.model_validate({"provider": "web", "timeout": "500ms",
                                                  "queries": {"error_rate": query}, **settings}), env or {})


def read(source: WebMetrics, spec: MetricSpec | None = None) -> Any:
    return source.measure(plugin(), "1.6.0", spec or metric(), BATCH, 60.0)


# --- what an answer becomes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "value", "verdict"), [
    ("/good", 0.01, Verdict.SUCCESSFUL),
    ("/bad", 0.2, Verdict.FAILED),
    ("/text", 0.05, Verdict.SUCCESSFUL),  # a number written as a string, as Prometheus-like APIs answer
])
def test_a_value_at_the_path_is_judged_like_any_reading(server: JsonServer, path: str, value: float,
                                                        verdict: Verdict) -> None:
    measured = read(web(server, path))
    assert (measured.value, measured.error, measured.series) == (value, None, 1)
    assert judge(metric(), measured, datetime.now(UTC)).verdict is verdict


def test_a_list_at_the_path_is_reduced_by_the_metrics_aggregate(server: JsonServer) -> None:
    source = web(server, "/series")
    assert read(source).value == 0.03  # max: the worst instance
    assert read(source, metric(aggregate="sum")).value == pytest.approx(0.06)
    assert read(source).series == 3


@pytest.mark.parametrize(("path", "error"), [
    ("/error", "answered HTTP 500: {\"error\": \"database is down\"}"),
    ("/invalid", "answered something that is not JSON"),
    ("/word", "the value at $.data.value is not a number: 'high'"),
    ("/flag", "the value at $.data.value is not a number: True"),
    ("/nowhere", "answered HTTP 404"),
])
def test_a_failed_request_is_an_error_reading(server: JsonServer, path: str, error: str) -> None:
    measured = read(web(server, path))
    assert measured.value is None and measured.error is not None and error in measured.error, measured.error
    assert f"127.0.0.1:{server.url.rsplit(':', 1)[1]}{path}" in measured.error  # where, for the person reading it
    assert judge(metric(), measured, datetime.now(UTC)).verdict is Verdict.ERROR


@pytest.mark.parametrize("path", ["/missing", "/null"])
def test_nothing_at_the_path_is_no_data(server: JsonServer, path: str) -> None:
    measured = read(web(server, path))
    assert (measured.value, measured.error, measured.series) == (None, None, 0)
    assert judge(metric(), measured, datetime.now(UTC)).verdict is Verdict.INCONCLUSIVE


def test_nan_is_no_evidence(server: JsonServer) -> None:
    measured = read(web(server, "/nan"))
    assert measured.value is not None and math.isnan(measured.value)
    assert judge(metric(), measured, datetime.now(UTC)).verdict is Verdict.INCONCLUSIVE


def test_a_slow_answer_is_an_error_within_the_timeout(server: JsonServer) -> None:
    started = datetime.now(UTC)
    measured = read(web(server, "/slow"))
    assert measured.error is not None and "did not answer within 0.5s" in measured.error
    assert (datetime.now(UTC) - started).total_seconds() < 5


def test_nobody_listening_is_an_error(server: JsonServer) -> None:
    source = WebMetrics(WebSettings.model_validate({"provider": "web", "queries": {"error_rate": {
        "url": f"http://127.0.0.1:{free_port()}/value", "jsonPath": "$.v"}}}), {})
    measured = read(source)
    assert measured.value is None and measured.error is not None and "unreachable" in measured.error


def test_a_metric_without_a_request_is_an_error_reading(server: JsonServer) -> None:
    measured = read(web(server), metric("latency_p99_ms"))
    assert measured.error == "no URL for metric 'latency_p99_ms': add metrics.queries.latency_p99_ms to grayops.yaml"


# --- the request: placeholders, POST body, headers from secrets ----------------------------------------------------


def test_placeholders_are_filled_in_the_url_and_the_body(server: JsonServer) -> None:
    source = web(server, "/echo?plugin={plugin}&version={version}&clusters={cluster}&window={window}",
                 json_path="$.body.limit", query={"method": "POST", "body": {
                     "plugin": "{plugin}", "match": {"instances": "{instances}", "namespaces": ["{namespace}"]},
                     "limit": 5}})
    measured = read(source)
    [seen] = server.seen
    assert seen["method"] == "POST" and seen["headers"]["content-type"] == "application/json"
    assert seen["query"] == {"plugin": ["billing"], "version": ["1.6.0"], "clusters": ["canary-1|prod-1"],
                             "window": ["1m"]}
    assert seen["body"] == {"plugin": "billing", "match": {"instances": "canary-1/tenant-a|prod-1/tenant-b",
                                                           "namespaces": ["tenant-a|tenant-b"]}, "limit": 5}
    assert measured.value == 5


def test_headers_come_from_the_file_or_from_secrets(server: JsonServer, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text(TOKEN + "\n")
    source = web(server, "/echo", json_path="$.query.n[0]", env={"METRICS_KEY": "k-123"}, headers=[
        {"name": "Authorization", "valueFrom": {"file": str(secret)}},
        {"name": "X-Api-Key", "valueFrom": {"env": "METRICS_KEY"}},
        {"name": "X-Team", "value": "platform"},
    ], query={"url": server.url + "/echo?n=7", "headers": [{"name": "X-Metric", "value": "errors"}]})
    assert read(source).value == 7
    headers = server.seen[0]["headers"]
    assert (headers["authorization"], headers["x-api-key"], headers["x-team"], headers["x-metric"]) == (
        TOKEN, "k-123", "platform", "errors")


def test_a_missing_secret_is_an_error_that_names_it_and_no_request_is_sent(server: JsonServer) -> None:
    source = web(server, "/good", headers=[{"name": "Authorization", "valueFrom": {"env": "METRICS_TOKEN"}}])
    measured = read(source)
    assert measured.error is not None and "environment variable METRICS_TOKEN is not set" in measured.error
    assert server.seen == []


def test_a_secret_never_reaches_an_error_even_when_the_server_repeats_it(server: JsonServer) -> None:
    source = web(server, "/echo-error", env={"T": TOKEN},
                 headers=[{"name": "Authorization", "valueFrom": {"env": "T"}}])
    measured = read(source)
    assert measured.error is not None and "answered HTTP 500" in measured.error
    assert TOKEN not in measured.error and '"authorization": "***"' in measured.error.lower()


def test_a_policy_metrics_own_query_is_its_url(server: JsonServer) -> None:
    source = WebMetrics(WebSettings.model_validate({"provider": "web", "jsonPath": "{$.data.value}"}), {})
    assert read(source, metric(query=server.url + "/bad")).value == 0.2


# --- JSON paths ----------------------------------------------------------------------------------------------------

DOC = {"data": {"result": [{"value": 1}, {"value": 2}], "odd-key": {"x y": 3}}, "top": 4}


@pytest.mark.parametrize(("path", "found"), [
    ("$", (True, DOC)),
    ("$.top", (True, 4)),
    ("$.data.result[1].value", (True, 2)),
    ("$.data.result[-1].value", (True, 2)),
    ("$['data']['odd-key'][\"x y\"]", (True, 3)),
    ("{$.data.result[0].value}", (True, 1)),  # as Argo Rollouts writes it
    ("$.data.result[2].value", (False, None)),
    ("$.data.nothing", (False, None)),
    ("$.top.deeper", (False, None)),
    ("$.data[0]", (False, None)),
])
def test_a_json_path_picks_one_value(path: str, found: tuple[bool, Any]) -> None:
    assert pick(DOC, parse_path(path)) == found


@pytest.mark.parametrize("path", ["data.value", "$.", "$..value", "$.a[*]", "$.a[?(@.x)]", "$[0", "$.a b"])
def test_a_json_path_grayops_cannot_read_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="is not a JSON path grayops reads"):
        parse_path(path)


# --- grayops.yaml ---------------------------------------------------------------------------------------------------

HEAD = "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n  - {name: a, labels: {tier: prod}}\n"
PLUGIN = plugin_yaml("billing", "1.5.0")


def errors_of(settings: str) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet({"grayops.yaml": HEAD + settings, "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": PLUGIN},
                   builtin_policies(), adapters=full_registry().models)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param("metrics:\n  provider: web\n  queries:\n    error_rate: {url: 'https://m/e', jsonPath: 'data.v'}\n"
                 "    latency_p99_ms: {url: 'https://m/l', jsonPath: $.v}\n",
                 ["grayops.yaml:8: metrics.queries.error_rate.jsonPath: 'data.v' is not a JSON path grayops reads "
                  "(it starts with $): use $.a.b[0].c or $['a-b']"], id="bad-json-path"),
    pytest.param("metrics:\n  provider: web\n  queries:\n    error_rate: {url: 'https://m/e', jsonPth: $.v}\n"
                 "    latency_p99_ms: {url: 'https://m/l', jsonPath: $.v}\n",
                 ["grayops.yaml:8: metrics.queries.error_rate.jsonPath: required field is missing",
                  "grayops.yaml:8: metrics.queries.error_rate.jsonPth: unknown field; did you mean 'jsonPath'?"],
                 id="typo"),
    pytest.param("metrics:\n  provider: web\n  headers: [{name: A, value: x, valueFrom: {env: X}}]\n"
                 "  queries:\n    error_rate: {url: 'https://m/e', jsonPath: $.v}\n"
                 "    latency_p99_ms: {url: 'https://m/l', jsonPath: $.v}\n",
                 ["grayops.yaml:7: metrics.headers[0]: give exactly one of value or valueFrom"], id="header-twice"),
    pytest.param("metrics:\n  provider: web\n  queries:\n    error_rate: {url: 'https://m/e', jsonPath: $.v, "
                 "body: {a: 1}}\n    latency_p99_ms: {url: 'https://m/l', jsonPath: $.v}\n",
                 ["grayops.yaml:8: metrics.queries.error_rate: a body is sent with method: POST only"],
                 id="body-with-get"),
    pytest.param("metrics:\n  provider: web\n  queries:\n    error_rate: {url: 'https://m/e', jsonPath: $.v}\n",
                 ["policies/fast.yaml:16: spec.analysis.metrics[1].name: no URL for metric 'latency_p99_ms': add "
                  "metrics.queries.latency_p99_ms to grayops.yaml"], id="metric-without-url"),
])
def test_web_settings_errors_are_one_line_each(settings: str, expected: list[str]) -> None:
    assert errors_of(settings) == expected


# --- end to end -----------------------------------------------------------------------------------------------------


def test_grayops_run_rolls_back_a_version_the_web_provider_judges_bad(fleet_repo: Human, tmp_path: Path,
                                                                      server: JsonServer) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    settings = (HEAD.replace("  - {name: a, labels: {tier: prod}}\n",
                             "  - {name: canary-1, labels: {tier: canary}}\n  - {name: prod-1, labels: {tier: prod}}\n")
                + "metrics:\n  provider: web\n  headers: [{name: Authorization, valueFrom: {env: GRAYOPS_WEB_TOKEN}}]\n"
                f"  queries:\n    error_rate: {{url: '{server.url}/by-version?version={{version}}', "
                "jsonPath: $.data.errorRate}\n"
                f"    latency_p99_ms: {{url: '{server.url}/good', jsonPath: $.data.value}}\n")
    human.commit("fleet: billing 1.5.0 judged by a web API", {
        "grayops.yaml": settings, "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": PLUGIN})
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "GRAYOPS_WEB_TOKEN": TOKEN})
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Succeeded", timeout=120,
                 what="1.5.0 judged good and rolled out")
        human.pull()
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
        status = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "RolledBack" and s,
                          timeout=120, what="1.6.0 judged bad and rolled back")
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
    report = remote_file(human, f"reports/billing/1.6.0-{status['rolloutId']}.md") or ""
    assert "error_rate 0.2 > max 0.05" in report
    asked = [s for s in server.seen if s["path"] == "/by-version"]
    assert {s["query"]["version"][0] for s in asked} == {"1.5.0", "1.6.0"}
    assert all(s["headers"]["authorization"] == TOKEN for s in asked)
