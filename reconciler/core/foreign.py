"""Foreign analysis templates: Argo Rollouts `AnalysisTemplate` / `ClusterAnalysisTemplate` and Flagger
`MetricTemplate`, kept unchanged in the fleet repository under `analysis/` and translated into `MetricSpec`s.

Pure: documents in, metric specs or precise errors out (`ForeignError(loc, message)`; the fleet loader adds
the file and line). Anything a template uses that grayops does not support is an error that names it, never
silently ignored.

Supported from Argo Rollouts: `spec.args` (a `value`, or one given by the policy's reference), per metric
`name`, `interval`, `count`, `failureLimit`, `inconclusiveLimit`, `consecutiveErrorLimit`, `successCondition`
and `failureCondition` of the simple comparison forms (`result[0] < 0.05`, `result >= 0.95`, joined by `&&`
in a success condition or `||` in a failure condition), and `provider.prometheus` with `address` and `query`.
Supported from Flagger: `spec.provider` (`type: prometheus`, `address`) and `spec.query` with `{{ namespace }}`,
`{{ target }}`, `{{ interval }}` and `{{ variables.NAME }}`, judged by the reference's `thresholdRange`.
The template's `address` is not used: grayops queries the Prometheus of grayops.yaml (with its auth and TLS).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core.spec import MetricSpec, TemplateRef
from reconciler.core.timing import parse_duration

ARGO_API = "argoproj.io/v1alpha1"
FLAGGER_API = "flagger.app/v1beta1"
ARGO_KINDS = ("AnalysisTemplate", "ClusterAnalysisTemplate")
FLAGGER_KINDS = ("MetricTemplate",)

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class ForeignError:
    loc: Loc  # path inside the document the error is about
    message: str


@dataclass(frozen=True)
class Template:
    """One foreign template document, as it was written."""

    kind: str
    name: str
    doc: Mapping[str, Any]


class Invalid(Exception):
    def __init__(self, errors: Sequence[ForeignError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(e.message for e in errors))


def is_foreign(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("apiVersion") in (ARGO_API, FLAGGER_API)


def read_template(doc: Mapping[str, Any]) -> Template:
    """Check the envelope (apiVersion, kind, metadata.name); the spec is checked when a policy uses it."""
    errors: list[ForeignError] = []
    api, kind = doc.get("apiVersion"), doc.get("kind")
    kinds = ARGO_KINDS if api == ARGO_API else FLAGGER_KINDS if api == FLAGGER_API else ()
    if kind not in kinds:
        errors.append(ForeignError(("kind",), f"{kind!r} is not supported with apiVersion {api}: use one of "
                                              f"{', '.join(kinds) or 'AnalysisTemplate, MetricTemplate'}"))
    metadata = doc.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        errors.append(ForeignError(("metadata", "name"), "required field is missing"))
    if not isinstance(doc.get("spec"), dict):
        errors.append(ForeignError(("spec",), "required field is missing or not a mapping"))
    if errors:
        raise Invalid(errors)
    assert isinstance(name, str) and isinstance(kind, str)
    return Template(kind, name, doc)


def translate(template: Template, ref: TemplateRef) -> list[MetricSpec]:
    """The metrics a reference to `template` adds to a policy; raises Invalid with every problem found."""
    if template.kind in ARGO_KINDS:
        return _argo(template.doc, ref)
    return _flagger(template.doc, ref)


# --- Argo Rollouts ------------------------------------------------------------------------------------------

_ARGO_SPEC = {"args", "metrics"}
_ARGO_METRIC = {"name", "interval", "count", "failureLimit", "inconclusiveLimit", "consecutiveErrorLimit",
                "successCondition", "failureCondition", "provider"}
_ARGO_PROMETHEUS = {"address", "query"}
_ARGS = re.compile(r"\{\{\s*args\.([A-Za-z0-9_.-]+)\s*\}\}")


def _argo(doc: Mapping[str, Any], ref: TemplateRef) -> list[MetricSpec]:
    errors: list[ForeignError] = []
    spec = doc["spec"]
    for key in sorted(set(spec) - _ARGO_SPEC):
        errors.append(ForeignError(("spec", key), "not supported by grayops (supported: args, metrics)"))
    args = _argo_args(spec.get("args") or [], ref, errors)
    metrics = spec.get("metrics")
    if not isinstance(metrics, list) or not metrics:
        errors.append(ForeignError(("spec", "metrics"), "a list of at least one metric is required"))
        raise Invalid(errors)
    out: list[MetricSpec] = []
    for index, metric in enumerate(metrics):
        loc: Loc = ("spec", "metrics", index)
        if not isinstance(metric, dict):
            errors.append(ForeignError(loc, "must be a mapping"))
            continue
        found = _argo_metric(metric, loc, args, errors)
        if found is not None:
            out.append(found)
    if errors:
        raise Invalid(errors)
    return out


def _argo_args(declared: Any, ref: TemplateRef, errors: list[ForeignError]) -> dict[str, str]:
    values: dict[str, str] = {}
    if not isinstance(declared, list):
        errors.append(ForeignError(("spec", "args"), "must be a list of {name, value}"))
        return values
    for index, arg in enumerate(declared):
        loc: Loc = ("spec", "args", index)
        if not isinstance(arg, dict) or not isinstance(arg.get("name"), str):
            errors.append(ForeignError(loc, "an arg needs a name"))
            continue
        name = arg["name"]
        if "valueFrom" in arg and name not in ref.args:
            errors.append(ForeignError((*loc, "valueFrom"), f"arg {name!r}: valueFrom (secrets, field refs) is not "
                                                            "supported; give its value in the policy's reference "
                                                            "(analysis.templates[].args)"))
            continue
        if name in ref.args:
            values[name] = ref.args[name]
        elif "value" in arg:
            values[name] = str(arg["value"])
    for name in sorted(set(ref.args) - {a.get("name") for a in declared if isinstance(a, dict)}):
        errors.append(ForeignError(("spec", "args"), f"the policy gives arg {name!r}, which the template does "
                                                     "not declare"))
    return values


def _argo_metric(metric: Mapping[str, Any], loc: Loc, args: Mapping[str, str],
                 errors: list[ForeignError]) -> MetricSpec | None:
    before = len(errors)
    name = metric.get("name")
    if not isinstance(name, str) or not name:
        errors.append(ForeignError((*loc, "name"), "required field is missing"))
    for key in sorted(set(metric) - _ARGO_METRIC):
        errors.append(ForeignError((*loc, key), f"not supported by grayops (supported: "
                                                f"{', '.join(sorted(_ARGO_METRIC))})"))
    provider = metric.get("provider")
    prometheus = provider.get("prometheus") if isinstance(provider, dict) else None
    if not isinstance(provider, dict) or not isinstance(prometheus, dict):
        errors.append(ForeignError((*loc, "provider"), "only the prometheus provider is supported"))
        return None
    for key in sorted(set(provider) - {"prometheus"}):
        errors.append(ForeignError((*loc, "provider", key), "only the prometheus provider is supported"))
    for key in sorted(set(prometheus) - _ARGO_PROMETHEUS):
        errors.append(ForeignError((*loc, "provider", "prometheus", key),
                                   "not supported by grayops: it uses metrics.url, timeout, auth and tls of "
                                   "grayops.yaml"))
    query = prometheus.get("query")
    if not isinstance(query, str) or not query.strip():
        errors.append(ForeignError((*loc, "provider", "prometheus", "query"), "required field is missing"))
        return None

    def arg_value(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in args:
            errors.append(ForeignError((*loc, "provider", "prometheus", "query"),
                                       f"arg {key!r} has no value: declare it in spec.args with a value, or give "
                                       "it in the policy's reference (analysis.templates[].args)"))
            return match.group(0)
        return args[key]

    query = _ARGS.sub(arg_value, query)
    if "{{" in query:
        errors.append(ForeignError((*loc, "provider", "prometheus", "query"),
                                   f"unsupported template variable {query[query.index('{{'):].split('}}')[0]}}}}} "
                                   "(only {{args.NAME}})"))
    bounds: dict[str, float] = {}
    success, failure = metric.get("successCondition"), metric.get("failureCondition")
    if success is None and failure is None:
        errors.append(ForeignError(loc, "needs a successCondition or a failureCondition"))
    try:
        from_success = _condition(success, "success") if success is not None else None
        from_failure = _condition(failure, "failure") if failure is not None else None
        if from_success is not None and from_failure is not None and from_success != from_failure:
            raise ValueError("successCondition and failureCondition leave values that meet neither, which Argo "
                             "Rollouts judges Inconclusive; grayops does not support that band: keep one of them, "
                             "or make them exact opposites")
        bounds = from_success or from_failure or {}
    except ValueError as err:
        key = "successCondition" if success is not None and failure is None else \
            "failureCondition" if success is None else "successCondition"
        errors.append(ForeignError((*loc, key), str(err)))
    numbers: dict[str, Any] = {}
    for key in ("failureLimit", "inconclusiveLimit", "consecutiveErrorLimit", "count"):
        value = metric.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "count" else 0):
            errors.append(ForeignError((*loc, key), f"must be a whole number (got {value!r}; expressions such "
                                                    "as {{args.x}} are not supported here)"))
        else:
            numbers[key] = value
    interval = None
    if metric.get("interval") is not None:
        try:
            interval = parse_duration(metric["interval"])
        except ValueError as err:
            errors.append(ForeignError((*loc, "interval"), str(err)))
    if len(errors) > before:
        return None
    try:
        return MetricSpec(name=str(name), max=bounds.get("max"), min=bounds.get("min"), query=query.strip(),
                          interval=interval, failure_limit=numbers.get("failureLimit", 0),
                          inconclusive_limit=numbers.get("inconclusiveLimit"),
                          consecutive_error_limit=numbers.get("consecutiveErrorLimit"), count=numbers.get("count"))
    except ValueError as err:  # pydantic's ValidationError is a ValueError
        errors.append(ForeignError(loc, str(err).splitlines()[-1]))
        return None


_COMPARISON = re.compile(r"^\s*(result(?:\[0\])?)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
_REVERSED = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(<=|>=|<|>)\s*(result(?:\[0\])?)\s*$")
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<="}


def _condition(text: Any, which: str) -> dict[str, float]:
    """A success or failure condition -> the max/min bounds of grayops (inclusive, so `<` becomes the float
    just below). Success: every comparison must hold (`&&`). Failure: any comparison failing the batch (`||`)."""
    if not isinstance(text, str):
        raise ValueError(f"must be a text such as 'result[0] < 0.05' (got {text!r})")
    joiner = "&&" if which == "success" else "||"
    other = "||" if which == "success" else "&&"
    if other in text:
        raise ValueError(f"{other!r} is not supported in a {which}Condition (only {joiner!r} of simple comparisons "
                         "such as result[0] < 0.05)")
    bounds: dict[str, float] = {}
    for part in text.split(joiner):
        operator, number = _comparison(part)
        # For success, the comparison is what must hold; for failure, what must not.
        if which == "failure":
            operator = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}[operator]
        if operator in ("<", "<="):
            bound = number if operator == "<=" else math.nextafter(number, -math.inf)
            bounds["max"] = min(bound, bounds.get("max", math.inf))
        else:
            bound = number if operator == ">=" else math.nextafter(number, math.inf)
            bounds["min"] = max(bound, bounds.get("min", -math.inf))
    return bounds


def _comparison(part: str) -> tuple[str, float]:
    match = _COMPARISON.match(part)
    if match:
        return match.group(2), float(match.group(3))
    match = _REVERSED.match(part)
    if match:
        return _FLIP[match.group(2)], float(match.group(1))
    raise ValueError(f"{part.strip()!r} is not supported: grayops reads only comparisons of result[0] (or result) "
                     "with a number, using <, <=, > or >=")


# --- Flagger --------------------------------------------------------------------------------------------------

_FLAGGER_SPEC = {"provider", "query"}
_FLAGGER_PROVIDER = {"type", "address"}
_FLAGGER_VARS = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_NAMESPACE_EQUALS = re.compile(r'(\w+)\s*=\s*"\{\{\s*namespace\s*\}\}"')


def _flagger(doc: Mapping[str, Any], ref: TemplateRef) -> list[MetricSpec]:
    errors: list[ForeignError] = []
    spec = doc["spec"]
    for key in sorted(set(spec) - _FLAGGER_SPEC):
        errors.append(ForeignError(("spec", key), "not supported by grayops (supported: provider, query)"))
    provider = spec.get("provider")
    if not isinstance(provider, dict) or provider.get("type") != "prometheus":
        errors.append(ForeignError(("spec", "provider", "type"), "only provider type prometheus is supported"))
    else:
        for key in sorted(set(provider) - _FLAGGER_PROVIDER):
            errors.append(ForeignError(("spec", "provider", key),
                                       "not supported by grayops: it uses metrics.url, auth and tls of grayops.yaml"))
    query = spec.get("query")
    if not isinstance(query, str) or not query.strip():
        errors.append(ForeignError(("spec", "query"), "required field is missing"))
        raise Invalid(errors)
    unknown = sorted(set(ref.threshold_range) - {"min", "max"})
    if unknown:
        errors.append(ForeignError(("spec",), f"thresholdRange has {', '.join(unknown)}; only min and max exist"))
    if not ref.threshold_range:
        errors.append(ForeignError(("spec",), f"the policy's reference to MetricTemplate {ref.name} needs a "
                                              "thresholdRange (min, max or both)"))
    # Several namespaces make one regex: an equality on {{ namespace }} becomes a regex match (=~).
    query = _NAMESPACE_EQUALS.sub(r'\1=~"{{ namespace }}"', query)

    def variable(match: re.Match[str]) -> str:
        key = match.group(1)
        if key == "namespace":
            return "{namespace}"
        if key == "target":
            return "{plugin}"
        if key == "interval":
            return "{window}"
        if key.startswith("variables.") and key.removeprefix("variables.") in ref.template_variables:
            return ref.template_variables[key.removeprefix("variables.")]
        errors.append(ForeignError(("spec", "query"), f"template variable {{{{ {key} }}}} is not supported or has "
                                                      "no value (supported: namespace, target, interval, and "
                                                      "variables.NAME given in templateVariables)"))
        return match.group(0)

    query = _FLAGGER_VARS.sub(variable, query)
    if errors:
        raise Invalid(errors)
    try:
        return [MetricSpec(name=str(doc["metadata"]["name"]), max=ref.threshold_range.get("max"),
                           min=ref.threshold_range.get("min"), query=query.strip(), interval=ref.interval)]
    except ValueError as err:
        raise Invalid([ForeignError(("spec",), str(err).splitlines()[-1])]) from None
