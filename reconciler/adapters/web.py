"""The web metrics provider (`provider: web`): a metric read from any HTTP API that answers JSON.

As Argo Rollouts' `web` provider (README "The web metrics provider"): per metric, one GET (or POST with a JSON
body) to a URL template, with headers whose values are written in grayops.yaml or read from a secret at each
request, and the value picked from the JSON answer with `jsonPath`. Templates take the placeholders of PromQL
queries (`core.queries`), URL-encoded in the URL and as they are in the body. A metric's request is
`metrics.queries.<name>`, or the policy metric's own `query` (a URL, read with `metrics.jsonPath`).

What comes back, never an exception:
- a number at the path, or a string that is one: its value (NaN: no evidence); a list of numbers: reduced by the
  metric's `aggregate`, as Prometheus series are;
- nothing at the path, or null: no data (value None, Inconclusive);
- a non-2xx answer, a timeout, nobody listening, an answer that is not JSON or a value that is not a number: an
  error naming the request (method, host and path) and what went wrong, with any secret sent masked as `***`.

JSON paths are a small subset, checked when grayops.yaml is read: `$`, `.name`, `['any name']`, `[index]`
(negative from the end), e.g. `$.data.result[0].value`; Argo's `{$.a.b}` is read too.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AfterValidator, Field, model_validator

from reconciler.adapters.ports import Context, MetricsAdapter
from reconciler.adapters.prometheus import reduce
from reconciler.adapters.secrets import SecretMissing, read_secret
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef
from reconciler.core.queries import placeholder_values, render
from reconciler.core.spec import Duration, MetricSpec, MetricsSettings, Plugin, SecretRef, Strict

ANSWER_LIMIT = 1 << 20  # a metric's answer is small; more than 1 MiB is refused rather than read
SHOWN = 300  # characters of a refusal's body kept in the error

# --- JSON paths ---------------------------------------------------------------------------------------------------

Step = str | int
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(-?\d+)\]|\['([^']*)'\]|\[\"([^\"]*)\"\]")
_HINT = "use $.a.b[0].c or $['a-b']"


def parse_path(text: str) -> tuple[Step, ...]:
    """`$.a.b[0]['c d']` (or Argo's `{$.a.b}`) as its steps; anything else is a ValueError that says why."""
    path = text.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1].strip()
    if not path.startswith("$"):
        raise ValueError(f"{text!r} is not a JSON path grayops reads (it starts with $): {_HINT}")
    steps: list[Step] = []
    at = 1
    while at < len(path):
        match = _STEP.match(path, at)
        if match is None:
            raise ValueError(f"{text!r} is not a JSON path grayops reads (at {path[at:]!r}): {_HINT}")
        name, index, quoted, double = match.groups()
        steps.append(int(index) if index is not None else next(s for s in (name, quoted, double) if s is not None))
        at = match.end()
    return tuple(steps)


def pick(document: Any, steps: Sequence[Step]) -> tuple[bool, Any]:
    """(True, the value at `steps`), or (False, None) when the document has nothing there."""
    node = document
    for step in steps:
        in_list = isinstance(step, int) and isinstance(node, list) and -len(node) <= step < len(node)
        if not (in_list or (isinstance(step, str) and isinstance(node, dict) and step in node)):
            return False, None
        node = node[step]
    return True, node


def _json_path(text: str) -> str:
    parse_path(text)
    return text


JsonPath = Annotated[str, AfterValidator(_json_path)]

# --- grayops.yaml -------------------------------------------------------------------------------------------------


class Header(Strict):
    name: str
    value: str | None = None
    value_from: SecretRef | None = Field(None, description="read at each request: {env: NAME} or {file: PATH}")

    @model_validator(mode="after")
    def _one_value(self) -> Header:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("give exactly one of value or valueFrom")
        return self


class WebQuery(Strict):
    url: str = Field(description="URL template with {plugin} {version} {namespace} {cluster} {instances} {window}")
    json_path: JsonPath = Field(description="where the value is in the JSON answer, e.g. $.data.result[0].value")
    method: Literal["GET", "POST"] = "GET"
    body: Any = Field(None, description="JSON sent with POST; the placeholders are filled in its strings")
    headers: list[Header] = Field(default_factory=list, description="sent with this request, after metrics.headers")

    @model_validator(mode="after")
    def _body_with_post(self) -> WebQuery:
        if self.body is not None and self.method != "POST":
            raise ValueError("a body is sent with method: POST only")
        return self


class WebSettings(MetricsSettings):
    provider: Literal["web"]
    timeout: Duration = 10.0
    headers: list[Header] = Field(default_factory=list, description="sent with every request")
    queries: dict[str, WebQuery] = Field(default_factory=dict, description="the request per normalised metric name")
    json_path: JsonPath | None = Field(None, description="where the value is, for a policy metric's own query (a URL)")

    def request(self, metric: MetricSpec) -> WebQuery | None:
        """The metric's request: its own query (a URL) with `jsonPath`, else `queries.<name>`."""
        if metric.query and self.json_path:
            return WebQuery(url=metric.query, json_path=self.json_path)
        return None if metric.query else self.queries.get(metric.name)

    def missing_query(self, metric: MetricSpec) -> str | None:
        if metric.query and not self.json_path:
            return f"metric {metric.name!r} has its own query (a URL): add metrics.jsonPath to grayops.yaml"
        if self.request(metric) is None:
            return f"no URL for metric {metric.name!r}: add metrics.queries.{metric.name} to grayops.yaml"
        return None


# --- the provider -------------------------------------------------------------------------------------------------


class WebMetrics:
    """Implements `MetricsSource` against HTTP APIs that answer JSON; every failure is a `Measurement` error."""

    def __init__(self, settings: WebSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.environ = os.environ if environ is None else environ

    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        query = self.settings.request(metric)
        if query is None:
            return Measurement(None, error=self.settings.missing_query(metric))
        values = placeholder_values(plugin.metadata.name, version, instances, window_seconds)
        url = render(query.url, {k: quote(v, safe="") for k, v in values.items()})
        parts = urlsplit(url)
        where = f"web metric {metric.name}: {query.method} {parts.netloc}{parts.path}"
        try:
            headers, secrets = self._headers(query)
        except SecretMissing as err:
            return Measurement(None, error=f"{where}: credentials: {err}")
        body = None if query.body is None else json.dumps(_fill(query.body, values)).encode()
        answer, error = self._send(url, query.method, headers, body)
        if error is not None:
            return Measurement(None, error=f"{where} {_masked(error, secrets)}")
        return _reading(answer, query.json_path, metric, where)

    def _headers(self, query: WebQuery) -> tuple[dict[str, str], list[str]]:
        """The headers to send, secrets read now (a rotated file is picked up), and the secrets among them."""
        headers: dict[str, str] = {}
        secrets: list[str] = []
        for header in (*self.settings.headers, *query.headers):
            if header.value_from is None:
                headers[header.name] = header.value or ""
            else:
                headers[header.name] = read_secret(header.value_from, self.environ)
                secrets.append(headers[header.name])
        return headers, secrets

    def _send(self, url: str, method: str, headers: dict[str, str], body: bytes | None) -> tuple[Any, str | None]:
        """(the JSON answer, None), or (None, what went wrong)."""
        sent = {"Accept": "application/json", "User-Agent": "grayops", **headers}
        if body is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=body, method=method, headers=sent)
        timeout = self.settings.timeout
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read(ANSWER_LIMIT + 1)
        except urllib.error.HTTPError as err:
            text = err.read(SHOWN).decode("utf-8", "replace").strip()
            return None, f"answered HTTP {err.code}" + (f": {text}" if text else "")
        except TimeoutError:
            return None, f"did not answer within {timeout:g}s"
        except urllib.error.URLError as err:
            if isinstance(err.reason, TimeoutError):
                return None, f"did not answer within {timeout:g}s"
            return None, f"unreachable ({getattr(err.reason, 'strerror', None) or err.reason})"
        except (OSError, ValueError) as err:
            return None, f"unreachable ({err})"
        if len(raw) > ANSWER_LIMIT:
            return None, f"answered more than {ANSWER_LIMIT} bytes"
        try:
            return json.loads(raw), None
        except ValueError:
            return None, "answered something that is not JSON"


def _reading(answer: Any, json_path: str, metric: MetricSpec, where: str) -> Measurement:
    found, value = pick(answer, parse_path(json_path))
    if not found or value is None:
        return Measurement(None, series=0)
    values = value if isinstance(value, list) else [value]
    numbers: list[float] = []
    for item in values:
        number = _number(item)
        if number is None:
            return Measurement(None, error=f"{where}: the value at {json_path} is not a number: {item!r}")
        numbers.append(number)
    return reduce(numbers, metric.aggregate)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # as Prometheus-like APIs write values; "NaN" is no evidence, like theirs
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _fill(body: Any, values: Mapping[str, str]) -> Any:
    """The body with the placeholders filled in every string, keys included."""
    if isinstance(body, str):
        return render(body, values)
    if isinstance(body, list):
        return [_fill(item, values) for item in body]
    if isinstance(body, dict):
        return {render(str(k), values): _fill(v, values) for k, v in body.items()}
    return body


def _masked(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _build(settings: WebSettings, context: Context) -> WebMetrics:
    return WebMetrics(settings, context.env)


PROVIDER = MetricsAdapter("web", WebSettings, _build)
