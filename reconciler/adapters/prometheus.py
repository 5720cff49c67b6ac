"""The Prometheus metrics source: one PromQL query per metric per batch, judged by the core.

Owns: rendering a metric's query template for a batch, running it with `prometheus-api-client` (auth, TLS,
timeout from grayops.yaml), turning the answer into a `Measurement`, and checking a fleet's queries once each
(`check_queries`, for `grayops validate --check-queries`). Must not: raise, retry on its own (the
next interval is the retry), or judge thresholds (that is `core.analysis`).

What comes back, by what Prometheus answered:
- an instant vector: one value per series, reduced by the metric's `aggregate` (max, avg, sum); any NaN makes
  the value NaN (no evidence); +Inf/-Inf are values like any other;
- a scalar: its value; an empty vector: no data (`value=None`);
- a range vector (matrix) or a string: an error naming the query, never a guess;
- 4xx/5xx: an error with the HTTP status and the message Prometheus gave, and the query; a timeout or an
  unreachable server: an error naming the URL; a missing secret: an error naming the variable or file.

Placeholders in templates: `{plugin}`, `{version}`, `{namespace}`, `{cluster}` and `{instances}` (regex
alternations of the batch's namespaces, clusters and `cluster/namespace` ids, for `=~`), `{window}` (a PromQL
duration: the analysis interval, at least `metrics.minWindow`). Other braces (label matchers) are left alone.

`metrics: {provider: prometheus, ...}` in grayops.yaml is `PrometheusSettings` (README "Prometheus and
telemetry"). The client libraries are loaded when the first query is sent, not when grayops.yaml is validated.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from reconciler.adapters.ports import Context, MetricsAdapter
from reconciler.adapters.secrets import SecretMissing, read_secret
from reconciler.core.fleet import Fleet
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef, select_instances
from reconciler.core.queries import placeholder_values, query_template, render
from reconciler.core.spec import Duration, MetricSpec, MetricsSettings, Plugin, SecretRef, Strict

if TYPE_CHECKING:
    from prometheus_api_client import PrometheusConnect


class BasicAuth(Strict):
    username: str
    password: SecretRef


class MetricsAuth(Strict):
    bearer: SecretRef | None = Field(None, description="Authorization: Bearer <token>")
    basic: BasicAuth | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> MetricsAuth:
        if (self.bearer is None) == (self.basic is None):
            raise ValueError("give exactly one of bearer or basic")
        return self


class MetricsTls(Strict):
    verify: bool = True
    ca_file: str | None = Field(None, description="CA bundle to verify the server with")


class PrometheusSettings(MetricsSettings):
    provider: Literal["prometheus"]
    url: str | None = None
    timeout: Duration = 10.0
    queries: dict[str, str] = Field(
        default_factory=dict, description="PromQL per normalised metric name, with {plugin} {version} {namespace} "
                                          "{cluster} {instances} {window}; error_rate and latency_p99_ms have defaults")
    auth: MetricsAuth | None = None
    tls: MetricsTls = Field(default_factory=MetricsTls)
    min_window: Duration = Field(60.0, description="{window} is the analysis interval, but at least this")

    @model_validator(mode="after")
    def _prometheus_needs_url(self) -> PrometheusSettings:
        if not self.url:
            raise ValueError("the prometheus provider needs a url")
        return self

    def missing_query(self, metric: MetricSpec) -> str | None:
        if query_template(self.queries, metric) is not None:
            return None
        return f"no PromQL for metric {metric.name!r}: add metrics.queries.{metric.name} to grayops.yaml"


@dataclass(frozen=True)
class Answer:
    """One query's outcome: the series' values, or an error that says what went wrong."""

    values: tuple[float, ...] = ()
    error: str | None = None


class PrometheusMetrics:
    """Implements `MetricsSource` against one Prometheus server; every failure is a `Measurement` error."""

    def __init__(self, settings: PrometheusSettings, environ: Mapping[str, str] | None = None) -> None:
        assert settings.url, "the prometheus provider needs a url"
        self.settings = settings
        self.url = settings.url.rstrip("/")
        self.environ = os.environ if environ is None else environ
        self.queries = 0  # how many queries were sent, for the benchmark and telemetry
        self._cached: tuple[object, PrometheusConnect] | None = None

    # --- MetricsSource ------------------------------------------------------------------------------------------

    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        template = query_template(self.settings.queries, metric)
        if template is None:
            return Measurement(None, error=f"no query for metric {metric.name!r}: add metrics.queries."
                                           f"{metric.name} to grayops.yaml")
        window = max(window_seconds, self.settings.min_window)
        query = render(template, placeholder_values(plugin.metadata.name, version, instances, window))
        answer = self.query(query)
        if answer.error is not None:
            return Measurement(None, error=answer.error)
        return reduce(answer.values, metric.aggregate)

    # --- one query ----------------------------------------------------------------------------------------------

    def query(self, promql: str) -> Answer:
        """Run one instant query; never raises."""
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        self.queries += 1
        try:
            client = self._client()
            result = client.custom_query(promql, timeout=self.settings.timeout)
        except SecretMissing as err:
            return Answer(error=f"Prometheus credentials for {self.url}: {err}")
        except requests.exceptions.Timeout:
            return Answer(error=f"Prometheus at {self.url} did not answer within {self.settings.timeout:g}s; "
                                f"query: {promql}")
        except requests.exceptions.RequestException as err:
            self._cached = None  # start the next query on fresh connections
            return Answer(error=f"Prometheus at {self.url} unreachable ({_short(err)}); query: {promql}")
        except PrometheusApiClientException as err:
            return Answer(error=f"Prometheus rejected the query ({_api_error(str(err))}); query: {promql}")
        except (KeyError, TypeError, ValueError) as err:
            return Answer(error=f"Prometheus at {self.url} gave an answer grayops cannot read ({err!r}); "
                                f"query: {promql}")
        return _values(result, promql)

    def _client(self) -> PrometheusConnect:
        """A client with the credentials as they are now (secrets are re-read, so a rotated file is picked up);
        kept while they do not change, so its connection pool is reused between queries."""
        import requests
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        headers: dict[str, str] = {}
        auth: tuple[str, str] | None = None
        if self.settings.auth is not None:
            if self.settings.auth.bearer is not None:
                headers["Authorization"] = f"Bearer {read_secret(self.settings.auth.bearer, self.environ)}"
            elif self.settings.auth.basic is not None:
                basic = self.settings.auth.basic
                auth = (basic.username, read_secret(basic.password, self.environ))
        key = (tuple(headers.items()), auth)
        if self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        session = requests.Session()
        tls = self.settings.tls
        session.verify = tls.ca_file if tls.ca_file and tls.verify else tls.verify
        # No retries of our own: a failed reading is an Error verdict, and the next interval asks again.
        client = PrometheusConnect(url=self.url, headers=headers or None, auth=auth, session=session,
                                   retry=Retry(total=0, read=False, raise_on_status=False),
                                   timeout=self.settings.timeout)
        self._cached = (key, client)
        return client


@dataclass(frozen=True)
class QueryCheck:
    """One metric query of a plugin's policy, run once: where it comes from, and what Prometheus answered."""

    plugin: str
    metric: str
    policy_path: str  # the policy file that declares the metric
    query: str
    answer: Answer


def check_queries(fleet: Fleet, settings: PrometheusSettings,
                  environ: Mapping[str, str] | None = None) -> Iterator[QueryCheck]:
    """Each distinct query of each plugin's policy, run once against `settings`' Prometheus as the plugin's first
    batch would run it (README "Prometheus and telemetry"), yielded as it is answered. Never raises."""
    prometheus = PrometheusMetrics(settings, environ)
    checked: set[str] = set()
    for name, plugin in sorted(fleet.plugins.items()):
        policy = fleet.policies[plugin.spec.policy]
        instances = select_instances(plugin.spec, fleet.settings.clusters)
        for metric in policy.analysis.metrics:
            template = query_template(settings.queries, metric)
            if template is None:
                continue  # the fleet check already refused the revision
            window = max(metric.interval or policy.analysis.interval, settings.min_window)
            query = render(template, placeholder_values(name, plugin.spec.version, instances, window))
            if query in checked:
                continue
            checked.add(query)
            yield QueryCheck(name, metric.name, fleet.policy_paths.get(plugin.spec.policy, plugin.spec.policy),
                             query, prometheus.query(query))


def reduce(values: Sequence[float], aggregate: str) -> Measurement:
    """Several series to one value by the metric's `aggregate`; NaN anywhere is no evidence (NaN)."""
    if not values:
        return Measurement(None, series=0)
    if any(math.isnan(v) for v in values):
        return Measurement(math.nan, series=len(values))
    if aggregate == "sum":
        value = math.fsum(values)
    elif aggregate == "avg":
        value = math.fsum(values) / len(values)
    else:
        value = max(values)
    return Measurement(value, series=len(values))


def _values(result: object, promql: str) -> Answer:
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        try:  # a scalar ([time, "value"]); a string result does not parse as a number
            return Answer((float(result[1]),))
        except (TypeError, ValueError):
            return Answer(error=f"query returned a string, not a number; query: {promql}")
    if not isinstance(result, list):
        return Answer(error=f"query returned {type(result).__name__}, not an instant vector; query: {promql}")
    values: list[float] = []
    for series in result:
        if not isinstance(series, dict):
            return Answer(error=f"query returned an unreadable series {series!r}; query: {promql}")
        if "values" in series:
            return Answer(error="query returned a range vector (matrix) where an instant vector was expected; "
                                f"wrap the range in a function such as rate(): {promql}")
        sample = series.get("value")
        if not (isinstance(sample, list) and len(sample) == 2):
            return Answer(error=f"query returned a series without a value; query: {promql}")
        try:
            values.append(float(sample[1]))
        except (TypeError, ValueError):
            return Answer(error=f"query returned a value that is not a number ({sample[1]!r}); query: {promql}")
    return Answer(tuple(values))


def _api_error(text: str) -> str:
    """`HTTP Status Code 400 (b'{"status":"error","errorType":"bad_data","error":"..."}')` -> `400 bad_data: ...`."""
    match = re.fullmatch(r"HTTP Status Code (\d+) \((.*)\)", text, flags=re.S)
    if not match:
        return text
    status, body = match.groups()
    try:
        raw = ast.literal_eval(body)
        doc = json.loads(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw))
        return f"HTTP {status} {doc.get('errorType', 'error')}: {doc.get('error', '')}".strip()
    except (ValueError, SyntaxError, AttributeError, TypeError):
        return f"HTTP {status}: {body[:300]}"


def _short(err: Exception) -> str:
    text = str(err)
    reason = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return reason.group(1).strip() if reason else text[:200]


def _build(settings: PrometheusSettings, context: Context) -> PrometheusMetrics:
    return PrometheusMetrics(settings, context.env)


PROVIDER = MetricsAdapter("prometheus", PrometheusSettings, _build)
