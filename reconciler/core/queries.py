"""Metric query templates: the defaults for the common conventions and how placeholders are filled. Pure.

Placeholders: `{plugin}`, `{version}`, `{namespace}`, `{cluster}` and `{instances}` (regex alternations of the
batch's namespaces, clusters and `cluster/namespace` ids, for `=~`; one name is the plain name), `{window}` (a
PromQL duration). Other braces (PromQL label matchers) are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from reconciler.core.plan import InstanceRef
from reconciler.core.spec import MetricSpec

_REGEX_SPECIAL = re.compile(r"[.^$*+?()\[\]{}|\\]")
_SCOPE = 'plugin="{plugin}",cluster=~"{cluster}",namespace=~"{namespace}",version="{version}"'
# Sensible defaults for the common conventions: a `http_requests_total` counter with a `code` label and a
# `http_request_duration_seconds` histogram. One series per instance, so `aggregate: max` is the worst one.
DEFAULT_QUERIES: Mapping[str, str] = {
    "error_rate": (
        f'(sum by (cluster, namespace) (rate(http_requests_total{{{_SCOPE},code=~"5.."}}[{{window}}]))'
        f" or sum by (cluster, namespace) (rate(http_requests_total{{{_SCOPE}}}[{{window}}])) * 0)"
        f" / sum by (cluster, namespace) (rate(http_requests_total{{{_SCOPE}}}[{{window}}]))"
    ),
    "latency_p99_ms": (
        "1000 * histogram_quantile(0.99, sum by (cluster, namespace, le) "
        f"(rate(http_request_duration_seconds_bucket{{{_SCOPE}}}[{{window}}])))"
    ),
}
PLACEHOLDERS = ("plugin", "version", "namespace", "cluster", "instances", "window")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill grayops placeholders only; PromQL's own braces (`{code="500"}`) stay as they are."""
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def alternation(items: Sequence[str]) -> str:
    """A regex matching exactly these strings, written for a PromQL double-quoted string (`=~"a|b"`).

    Only regex metacharacters are escaped, so one plain name (`tenant-a`) also works in an `=` matcher.
    """
    escaped = (_REGEX_SPECIAL.sub(r"\\\\\g<0>", item).replace('"', '\\"') for item in sorted(set(items)))
    return "|".join(escaped) or "$^"  # no instances: a regex that matches nothing


def promql_duration(seconds: float) -> str:
    """Seconds as PromQL writes them, in the largest whole unit: 0.5 -> 500ms, 60 -> 1m, 90 -> 90s."""
    millis = max(1, round(seconds * 1000))
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


def placeholder_values(plugin: str, version: str, instances: Sequence[InstanceRef], window_seconds: float
                       ) -> dict[str, str]:
    return {
        "plugin": plugin,
        "version": version,
        "namespace": alternation([ref.namespace for ref in instances]),
        "cluster": alternation([ref.cluster for ref in instances]),
        "instances": alternation([ref.id for ref in instances]),
        "window": promql_duration(window_seconds),
    }


def query_template(queries: Mapping[str, str], metric: MetricSpec) -> str | None:
    """The metric's own query, else grayops.yaml's (`queries`), else the default for its normalised name."""
    return metric.query or queries.get(metric.name) or DEFAULT_QUERIES.get(metric.name)


