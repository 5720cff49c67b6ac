"""The fleet repository format v1: one pydantic model per kind of file, strict and closed.

Field names are camelCase in YAML (the user-facing contract) and snake_case in Python. Every model forbids
unknown fields, so a typo is an error with its line, never a silently ignored setting. The JSON Schema that
editors use is generated from these models (`grayops schema`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from itertools import pairwise
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationError,
    WithJsonSchema,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUndefined

from reconciler.core.timing import format_duration, parse_clock, parse_duration

API_VERSION = "grayops.dev/v1"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class Strict(BaseModel):
    """Base of every file section: camelCase aliases, unknown fields refused, values frozen."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True, strict=False
    )


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h|d)?$", "examples": ["30s", "5m"]}),
]
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]


def _version_text(value: Any) -> Any:
    # YAML reads an unquoted 1.10 as the number 1.1 (and yes as true): the fleet loader echoes the text as written.
    if isinstance(value, int | float | bool | date):
        raise PydanticCustomError("unquoted_version", 'version {value} must be quoted, as in "{value}"',
                                  {"value": str(value)})
    return value


Version = Annotated[
    str, BeforeValidator(_version_text), Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._+-]+$")
]


SHARE_PATTERN = r"^\s*(100(\.0+)?|[1-9]\d?(\.\d+)?|0\.\d*[1-9]\d*)\s*%\s*$|^\s*[1-9]\d*\s*$"
# An IANA name (Europe/Berlin, America/Argentina/Buenos_Aires, Etc/GMT+2) or UTC; the validator looks it up in the
# time zone database, which the schema cannot name without tying it to one machine's copy.
ZONE_PATTERN = r"^(UTC|[A-Z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2})$"


def _batch_size(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a batch size is a count such as 1 or a share such as \"10%\"")
    if isinstance(value, int):
        if value < 1:
            raise ValueError("a batch size must be at least 1")
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if match and 0 < float(match.group(1)) <= 100:
            return f"{float(match.group(1)):g}%"
        if value.strip().isdigit() and int(value) >= 1:
            return int(value)
    raise ValueError(f"{value!r} is not a batch size: a count such as 1 or a share such as \"10%\" up to 100%")


BatchSize = Annotated[
    int | str,
    BeforeValidator(_batch_size),
    # a share is above 0% and at most 100%, as the validator says
    WithJsonSchema({"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": SHARE_PATTERN}]}),
]


def size_percent(size: int | str) -> float | None:
    """The share of a "10%" size, or None for an absolute count."""
    return float(size[:-1]) if isinstance(size, str) else None


def _count_or_share(value: Any) -> Any:
    """A pod count such as 1 or a share such as "25%" (0 allowed), as Kubernetes' IntOrString fields take them."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if match and float(match.group(1)) <= 100:
            return f"{float(match.group(1)):g}%"
        if value.strip().isdigit():
            return int(value)
    raise ValueError(f"{value!r} is not a pod count such as 1 or a share such as \"25%\"")


CountOrShare = Annotated[
    int | str,
    BeforeValidator(_count_or_share),
    WithJsonSchema({"oneOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+(\.\d+)?%$"}]}),
]


def fail_at(model: str, field: str, value: Any, kind: str, message: str) -> ValidationError:
    """An error of a model's validator located at one of its fields, so it points at that field's line."""
    return ValidationError.from_exception_data(model, [InitErrorDetails(
        type=PydanticCustomError(kind, message), loc=(field,), input=value)])


# --- Plugin -----------------------------------------------------------------------------------------------


class Metadata(Strict):
    name: Name


class TrafficSpec(Strict):
    """`strategy: canary`: the Gateway API HTTPRoute whose backendRef weights grayops moves, step by step."""

    gateway_route: Name = Field(description="the HTTPRoute, in each instance's namespace, that sends traffic to the "
                                            "workload's service")
    steps: list[int] = Field(default_factory=lambda: [10, 50, 100], min_length=1,
                             description="the canary's share of traffic in percent at each step, growing to 100")

    @field_validator("steps")
    @classmethod
    def _grow_to_100(cls, steps: list[int]) -> list[int]:
        for step in steps:
            if not 1 <= step <= 100:
                raise ValueError(f"each step is a share of traffic from 1 to 100 (percent), not {step}")
        for before, after in pairwise(steps):
            if after <= before:
                raise ValueError(f"steps must grow: {after} comes after {before}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100, so the canary takes all traffic before it is promoted "
                             f"(the steps end at {steps[-1]})")
        return steps


class Workload(Strict):
    """What to change in each instance's namespace: a Deployment, a StatefulSet or a custom resource."""

    kind: str = "Deployment"
    name: str
    container: str | None = None
    api_version: str | None = None
    version_path: str | None = Field(None, description="JSON path of the version field, for custom resources")
    image_path: str | None = Field(
        None, description="custom resources: JSON path of an image reference field, which grayops sets to "
                          "<image>:<version> (@digest when the artifact gate pinned one, README \"Supply chain\")")
    ready_condition: str | None = Field(None, description="condition type that means ready, for custom resources")
    plural: str | None = Field(None, description="resource name of a custom resource's kind (default: derived)")
    partition: int | None = Field(
        None, ge=0, description="StatefulSet: start each change with this RollingUpdate partition (only ordinals >= "
                                "it move); grayops lowers it to 0 once they are ready")
    strategy: Literal["inPlace", "blueGreen", "canary"] = Field(
        "inPlace", description="inPlace: change the workload itself; blueGreen: a second Deployment <name>-<color> "
                               "made ready beside it, then the Service's selector switches; canary: a canary "
                               "Deployment beside it and the HTTPRoute's weights moved step by step (README "
                               "\"Strategies\")")
    service: Name | None = Field(
        None, description="blueGreen: the Service whose selector grayops switches between colors; canary: the "
                          "stable Service the HTTPRoute sends traffic to")
    traffic: TrafficSpec | None = Field(None, description="canary: the HTTPRoute and the traffic steps")
    scale_down_delay: Duration = Field(
        600.0, description="blueGreen: how long the old color keeps its pods after the switch (a rollback in that "
                           "time is a switch back, in seconds)")

    @model_validator(mode="after")
    def _strategy_has_what_it_needs(self) -> Workload:
        strategy = self.strategy
        if self.image_path is not None and self.kind in ("Deployment", "StatefulSet") and not self.api_version:
            raise fail_at("Workload", "imagePath", self.image_path, "custom_only",
                          f"imagePath is for custom resources (a {self.kind}'s image is its container's)")
        if strategy != "inPlace" and (self.kind != "Deployment" or self.api_version):
            raise fail_at("Workload", "strategy", strategy, "strategy_kind",
                          f"strategy {strategy} works on a Deployment, not a {self.kind}")
        if strategy != "inPlace" and self.service is None:
            what = "whose selector grayops switches between colors" if strategy == "blueGreen" else \
                "the HTTPRoute sends stable traffic to"
            raise fail_at("Workload", "strategy", strategy, "strategy_service",
                          f"strategy {strategy} needs service: the Service {what}")
        if strategy == "canary" and self.traffic is None:
            raise fail_at("Workload", "strategy", strategy, "strategy_traffic",
                          "strategy canary needs traffic: {gatewayRoute: NAME, steps: [10, 50, 100]}")
        if strategy != "canary" and self.traffic is not None:
            raise fail_at("Workload", "traffic", self.traffic, "strategy_only",
                          f"traffic is for strategy canary (this workload's strategy is {strategy})")
        if strategy != "blueGreen" and "scale_down_delay" in self.model_fields_set:
            raise fail_at("Workload", "scaleDownDelay", self.scale_down_delay, "strategy_only",
                          f"scaleDownDelay is for strategy blueGreen (this workload's strategy is {strategy})")
        return self


class PluginSpec(Strict):
    version: Version
    policy: str = "canary-waves"
    targets: dict[str, list[str]] = Field(default_factory=dict, description="label selector over clusters")
    namespaces: list[Name] = Field(default_factory=lambda: ["plugins"], min_length=1)
    workload: Workload | None = None
    image: str | None = None
    depends_on: list[Name] = Field(default_factory=list)
    paused: bool = False
    owners: list[str] = Field(default_factory=list, description="people of access.yaml (by name) whose alerts "
                                                                "mention them in Slack")

    @field_validator("targets", mode="before")
    @classmethod
    def _values_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value


class Plugin(Strict):
    api_version: Literal["grayops.dev/v1"]
    kind: Literal["Plugin"]
    metadata: Metadata
    spec: PluginSpec


# --- Policy -----------------------------------------------------------------------------------------------


class BatchSpec(Strict):
    name: Name
    size: BatchSize
    bake: Duration = 0.0
    approval: bool = False


class OrderSpec(Strict):
    label: str
    values: list[str] = Field(min_length=1)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ALL_DAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: str) -> str:
    parse_clock(value)
    return value


def _zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


class WindowSpec(Strict):
    days: list[Weekday] = Field(default_factory=lambda: list(ALL_DAYS), min_length=1)
    start: Annotated[str, AfterValidator(_clock)]
    end: Annotated[str, AfterValidator(_clock)]
    timezone: Annotated[str, AfterValidator(_zone), Field(json_schema_extra={"pattern": ZONE_PATTERN})] = "UTC"


class HttpCheck(Strict):
    type: Literal["http"]
    path: str = "/"
    port: int | None = None
    url: str | None = Field(None, description="URL template with {cluster}, {namespace}, {plugin}, {version}")
    status: int = 200
    timeout: Duration = 5.0


class ExecCheck(Strict):
    type: Literal["exec"]
    command: list[str] = Field(min_length=1)
    expect: str | None = None
    timeout: Duration = 10.0


class MetricCheck(Strict):
    type: Literal["metric"]
    name: str
    max: float | None = None
    min: float | None = None


Check = Annotated[HttpCheck | ExecCheck | MetricCheck, Field(discriminator="type")]


class JobCheck(Strict):
    """A smoke test run as a Kubernetes Job in the instance's namespace, passed when it completes in time."""

    type: Literal["job"]
    template: dict[str, Any] | Name = Field(
        description="the Job's spec (batch/v1 JobSpec, e.g. {template: {spec: {containers: [...]}}}), or the name "
                    "of a ConfigMap in the instance's namespace holding it as YAML under the key job.yaml")
    timeout: Duration = Field(300.0, description="a Job not complete within this fails the smoke test")

    @field_validator("template")
    @classmethod
    def _has_containers(cls, template: dict[str, Any] | str) -> dict[str, Any] | str:
        if isinstance(template, dict):
            pod = (template.get("template") or {}).get("spec") if isinstance(template.get("template"), dict) else None
            if not isinstance(pod, dict) or not isinstance(pod.get("containers"), list) or not pod["containers"]:
                raise ValueError("a Job spec needs template.spec.containers (at least one container)")
        return template


SmokeCheck = Annotated[HttpCheck | ExecCheck | JobCheck, Field(discriminator="type")]


class MetricSpec(Strict):
    name: str = Field(description="normalised metric name, mapped to a provider query in grayops.yaml")
    max: float | None = None
    min: float | None = None
    max_increase: float | None = Field(
        None, ge=0, description="fail when the value exceeds the baseline (the same query over the instances still "
                                "on the old version) by more than this share: 0.2 = 20%")
    aggregate: Literal["max", "avg", "sum"] = Field("max", description="how several series reduce to one value")
    failure_limit: int = Field(0, ge=0, description="failed readings tolerated before the batch fails")
    inconclusive_limit: int | None = Field(
        None, ge=0, description="inconclusive readings (no data, NaN) tolerated in a bake before the rollout pauses; "
                                "default: only noData/noDataTimeout apply")
    consecutive_error_limit: int | None = Field(
        None, ge=0, description="failed queries in a row before pausing; default: the analysis' limit")
    interval: Duration | None = Field(None, description="how often this metric is read; default: the analysis'")
    count: int | None = Field(None, ge=1, description="readings needed before the bake may pass on this metric")
    query: str | None = Field(None, description="provider query for this metric, instead of grayops.yaml's")

    @model_validator(mode="after")
    def _has_threshold(self) -> MetricSpec:
        if self.max is None and self.min is None and self.max_increase is None:
            raise ValueError(f"metric {self.name!r} needs a threshold: max, min, maxIncrease or several")
        return self


class TemplateRef(Strict):
    """A foreign analysis template kept unchanged in the fleet repository under analysis/ (see README)."""

    kind: Literal["AnalysisTemplate", "ClusterAnalysisTemplate", "MetricTemplate"]
    name: str
    args: dict[str, str] = Field(default_factory=dict,
                                 description="Argo Rollouts template args (values may use grayops placeholders)")
    threshold_range: dict[str, float] = Field(default_factory=dict,
                                              description="Flagger canary thresholdRange: min, max")
    interval: Duration | None = Field(None, description="Flagger canary metric interval")
    template_variables: dict[str, str] = Field(default_factory=dict, description="Flagger templateVariables")

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> TemplateRef:
        if self.kind == "MetricTemplate" and self.args:
            raise ValueError("args are for Argo Rollouts templates; a MetricTemplate takes templateVariables")
        if self.kind != "MetricTemplate" and (self.threshold_range or self.interval or self.template_variables):
            raise ValueError(f"thresholdRange, interval and templateVariables are for Flagger MetricTemplates; "
                             f"an {self.kind} has its own conditions, interval and args")
        return self


class AnalysisSpec(Strict):
    interval: Duration = 30.0
    metrics: list[MetricSpec] = Field(default_factory=list)
    no_data: Literal["pause", "fail", "ignore"] = "pause"
    no_data_timeout: Duration = 300.0
    consecutive_error_limit: int = Field(4, ge=0)
    templates: list[TemplateRef] = Field(
        default_factory=list, description="Argo Rollouts / Flagger templates under analysis/, judged like metrics")

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("interval must be longer than 0s")
        return value


class RollbackSpec(Strict):
    on_failure: bool = True
    limit: int = Field(3, ge=0)
    deadline: Duration = Field(180.0, description="a rollback still running after this alerts rollback_slow "
                                                   "(critical) once (README \"Targets\": 3 minutes)")


# --- Supply chain: the scan gate (README "Supply chain") ---------------------------------------------------

Severity = Literal["NONE", "UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL"]
SEVERITY_ORDER: tuple[Severity, ...] = ("NONE", "UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")


class ScanAllowance(Strict):
    """A finding accepted for a while, with the reason on record."""

    id: str = Field(min_length=1, max_length=128, description="the finding's VulnerabilityID, e.g. CVE-2024-1234")
    until: date = Field(description="accepted through the end of this day (UTC); after it the finding blocks again")
    reason: str = Field(min_length=1, max_length=500)


class ScanSpec(Strict):
    """The vulnerability report of the image's digest must exist and show nothing above `maxSeverity`."""

    max_severity: Severity = Field(
        "NONE", description="the highest severity allowed (HIGH: HIGH passes, CRITICAL blocks); NONE allows no "
                            "finding at all. Order: UNKNOWN < LOW < MEDIUM < HIGH < CRITICAL")
    ignore_unfixed: bool = Field(False, description="findings with no fixed version do not block (as trivy "
                                                    "--ignore-unfixed)")
    allow: list[ScanAllowance] = Field(default_factory=list)
    report_url: str | None = Field(
        None, description="where the Trivy JSON report is read instead of the registry: a URL template with "
                          "{image}, {repository}, {version} and {digest}")

    @field_validator("allow")
    @classmethod
    def _one_allowance_per_id(cls, allow: list[ScanAllowance]) -> list[ScanAllowance]:
        ids = [a.id for a in allow]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"one allowance per finding; repeated: {', '.join(repeated)}")
        return allow

    @field_validator("report_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("reportUrl must be an https:// URL (http:// only for a loopback host)")
        return value


class PolicySpec(Strict):
    order: OrderSpec | None = None
    batches: list[BatchSpec] = Field(min_length=1)
    max_parallel: int = Field(10, ge=1)
    instance_timeout: Duration = 300.0
    batch_timeout: Duration = 1800.0
    failure_budget: int = Field(0, ge=0)
    windows: list[WindowSpec] = Field(default_factory=list)
    pre_checks: list[Check] = Field(default_factory=list)
    verify: list[Check] = Field(default_factory=list)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    rollback: RollbackSpec = Field(default_factory=RollbackSpec)
    offline: Literal["wait", "skip", "fail"] = Field(
        "wait", description="an instance whose cluster is unreachable: wait for it (with an alert), skip it (left "
                            "out, not counted against the failure budget) or fail it")
    drift: Literal["reconverge", "pause"] = Field(
        "reconverge", description="an instance of a passed batch that no longer runs the version: alert drift and "
                                  "upgrade it again (reconverge), or pause for a human first (pause)")
    scan: ScanSpec | None = Field(
        None, description="the vulnerability report of the image must pass before the first instance is touched "
                          "(README \"Supply chain\")")
    max_surge: CountOrShare | None = Field(
        None, description="Deployments: the RollingUpdate maxSurge while grayops changes them (restored after)")
    max_unavailable: CountOrShare | None = Field(
        None, description="Deployments: the RollingUpdate maxUnavailable while grayops changes them (restored after)")
    partition_steps: list[CountOrShare] = Field(
        default_factory=list, description="StatefulSets: the RollingUpdate partition at each step, a pod count or "
                                          "a share of the replicas, going down to 0 (e.g. [75%, 50%, 0])")
    smoke: list[SmokeCheck] = Field(
        default_factory=list, description="smoke tests after each promotion and after a rollback: http, exec, or a "
                                          "Kubernetes Job run to completion")

    @field_validator("partition_steps")
    @classmethod
    def _partitions_go_down_to_0(cls, steps: list[int | str]) -> list[int | str]:
        if not steps:
            return steps
        counts = [s for s in steps if isinstance(s, int) and s > 0]
        shares = [s for s in steps if isinstance(s, str) and size_percent(s) != 0]
        if counts and shares:
            raise ValueError("partitionSteps are all pod counts or all shares such as \"75%\" (and 0)")
        values = [size_percent(s) if isinstance(s, str) else float(s) for s in steps]
        for before, after, text in zip(values, values[1:], steps[1:], strict=False):
            if after is not None and before is not None and after >= before:
                raise ValueError(f"partitionSteps must go down: {text} comes after a lower or equal step")
        if values[-1] != 0:
            raise ValueError(f"the last partition step must be 0, so every pod is updated (it is {steps[-1]})")
        return steps

    @model_validator(mode="after")
    def _surge_or_unavailable(self) -> PolicySpec:
        if self.max_surge is not None and self.max_unavailable is not None and \
                _zero(self.max_surge) and _zero(self.max_unavailable):
            raise fail_at("PolicySpec", "maxUnavailable", self.max_unavailable, "no_progress",
                          "maxSurge and maxUnavailable cannot both be 0: no pod could ever be replaced")
        return self

    @model_validator(mode="after")
    def _batches_grow_to_all(self) -> PolicySpec:
        names = [b.name for b in self.batches]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"batch names must be unique; repeated: {', '.join(duplicates)}")
        last_percent, last_count = 0.0, 0
        for batch in self.batches:
            percent = size_percent(batch.size)
            if percent is None:
                assert isinstance(batch.size, int)
                if batch.size <= last_count:
                    raise ValueError(f"batch {batch.name!r}: sizes are cumulative and must grow ({batch.size})")
                last_count = batch.size
            else:
                if percent <= last_percent:
                    raise ValueError(f"batch {batch.name!r}: sizes are cumulative and must grow ({batch.size})")
                last_percent = percent
        if size_percent(self.batches[-1].size) != 100.0:
            last = self.batches[-1].name
            raise ValueError(f"the last batch ({last!r}) must have size \"100%\" so every instance is reached")
        return self


def _zero(value: int | str) -> bool:
    return value == 0 or (isinstance(value, str) and size_percent(value) == 0)


class Policy(Strict):
    api_version: Literal["grayops.dev/v1"]
    kind: Literal["Policy"]
    metadata: Metadata
    spec: PolicySpec


# --- Settings (grayops.yaml) ------------------------------------------------------------------------------
#
# Three sections name adapters: each cluster's `driver`, the metrics `provider` and each notifier's `type`. The
# core keeps only that tag; each adapter's module declares a settings model (a subclass of the section's base
# below, with its own fields) and the registry hands them to `load_fleet` and the schema as `AdapterModels`
# (README "Adding an adapter"). `settings_model` joins them into the closed model grayops.yaml is validated with.


class ClusterSpec(Strict):
    """A cluster of the inventory; its driver's settings model adds the driver's own fields."""

    name: Name
    labels: dict[str, str] = Field(default_factory=dict)
    driver: str = "sim"


class SecretRef(Strict):
    """Where a secret is read at run time: an environment variable or a file. Never the secret itself."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env (a variable name) or file (a path); never the secret itself")
        return self


class MetricsSettings(Strict):
    """The `metrics` section; its provider's settings model adds the provider's own fields."""

    provider: str = "sim"

    def missing_query(self, metric: MetricSpec) -> str | None:
        """Why this provider has nothing to ask for `metric` (the revision is refused with it), or None."""
        return None


class NotifierSettings(Strict):
    """One entry of `notifiers`; its notifier's settings model adds the notifier's own fields."""

    type: str
    name: str | None = Field(None, min_length=1, description="what escalation levels call it (default: its type)")

    @property
    def target(self) -> str:
        """The name an escalation level's `notify` gives it."""
        return self.name or self.type


class EscalationLevel(Strict):
    """One level of `escalation` (README "Owners and escalation"): who hears of a critical alert not acknowledged
    `after` it was raised."""

    notify: str = Field(min_length=1, description="a notifier of `notifiers`, by its name (default: its type)")
    after: Duration = Field(0.0, description="since the alert was raised; 0: at once")
    mention: list[str] = Field(default_factory=list, description="Slack user or user-group IDs the Slack "
                                                                 "notifiers mention when this level is reached")


AdapterModels = Mapping[str, Mapping[str, type[Strict]]]
"""The adapters' settings models, as the registry gives them: section (`clusters`, `metrics`, `notifiers`) ->
tag -> model. Each model subclasses its section's base and declares its tag as `Literal["<tag>"]`."""


@dataclass(frozen=True)
class Section:
    """A section of grayops.yaml whose entries are told apart by a tag naming their adapter."""

    name: str  # the Settings field
    tag: str  # the field that names the adapter
    base: type[Strict]
    default: str | None  # the tag when the field is left out
    many: bool  # a list of entries, or one


SECTIONS = (
    Section("clusters", "driver", ClusterSpec, "sim", many=True),
    Section("metrics", "provider", MetricsSettings, "sim", many=False),
    Section("notifiers", "type", NotifierSettings, None, many=True),
)
# Tag fields of every tagged union in the format (checks are told apart by `type` too), with their defaults.
_TAGS: tuple[tuple[str, str | None], ...] = tuple(dict.fromkeys([*((s.tag, s.default) for s in SECTIONS),
                                                                  ("type", None)]))
_UNKNOWN = "?"  # the union member that reports a tag no adapter has


class StatusSettings(Strict):
    branch: str | None = Field(None, description="branch for status/ and reports/; default: the desired-state branch")


class GitWebhookSettings(Strict):
    """Push webhooks at /webhooks/git (README "HTTP API"): the secret they are verified with, by name only."""

    secret_env: str = Field(description="environment variable holding the webhook secret (GitHub and Gitea: the "
                                        "HMAC-SHA256 key; GitLab: the token it sends)")


class GitSettings(Strict):
    poll_interval: Duration = 5.0
    webhook: GitWebhookSettings | None = Field(None, description="verified push webhooks fetch at once")


class DashboardSettings(Strict):
    url: str | None = Field(None, description="where the web view is served, e.g. https://grayops.example.com; "
                                              "Slack messages link to <url>/rollouts/<plugin>")

    @field_validator("url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s<>|]+", value):
            raise ValueError(f"{value!r} is not an http:// or https:// URL (without spaces, <, > or |)")
        return value.rstrip("/") if value is not None else None


class SimFault(Strict):
    version: Version
    selector: dict[str, str] = Field(default_factory=dict, description="only on clusters with these labels")
    error_rate: float | None = Field(None, ge=0, le=1)
    latency_p99_ms: float | None = Field(None, ge=0)
    fail_readiness: bool = False
    fail_checks: bool = False
    no_metrics: bool = Field(False, description="the exporter goes silent for this version")


class SimSettings(Strict):
    upgrade_seconds: float = Field(0.05, ge=0)
    faults: list[SimFault] = Field(default_factory=list)


class CommitTrust(Strict):
    required: bool = Field(False, description="the commit a revision is read from must carry a valid signature of "
                                              "an allowed signer (README \"Supply chain\")")


class ArtifactTrust(Strict):
    required: bool = Field(False, description="a version's image must be signed (cosign) by a trusted key before "
                                              "any instance is touched")


class TrustSettings(Strict):
    """What must be signed; the keys themselves live outside the repository (`grayops run --trust DIR`)."""

    commits: CommitTrust = Field(default_factory=CommitTrust)
    artifacts: ArtifactTrust = Field(default_factory=ArtifactTrust)


def is_loopback_host(host: str) -> bool:
    """`host` (with or without a port, `[::1]:5000` for IPv6) names this machine: plain http is allowed only there."""
    name = host[: host.find("]") + 1] if host.startswith("[") else host.split(":", 1)[0]
    return name in ("localhost", "[::1]") or re.fullmatch(r"127(\.\d{1,3}){3}", name) is not None


class RegistrySettings(Strict):
    """How one container registry is reached: credentials read at request time, never written anywhere."""

    host: str = Field(min_length=1, pattern=r"^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9a-fA-F:]+\](:[0-9]+)?$",
                      description="registry host, with its port if not 443, e.g. registry.example.com:5000")
    username: SecretRef | None = None
    password: SecretRef | None = None
    insecure: bool = Field(False, description="plain http: only for a loopback registry (localhost, 127.0.0.1)")

    @model_validator(mode="after")
    def _safe(self) -> RegistrySettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        if self.insecure and not is_loopback_host(self.host):
            raise ValueError(f"insecure (plain http) is allowed only for a loopback registry, not {self.host}")
        return self


class Settings(Strict):
    """grayops.yaml with the adapter sections as their bases; `settings_model` gives the one to validate with."""

    api_version: Literal["grayops.dev/v1"]
    kind: Literal["Settings"]
    clusters: list[ClusterSpec] = Field(min_length=1)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    notifiers: list[NotifierSettings] = Field(default_factory=lambda: [NotifierSettings(type="log")])
    status: StatusSettings = Field(default_factory=StatusSettings)
    git: GitSettings = Field(default_factory=GitSettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)
    sim: SimSettings = Field(default_factory=SimSettings)
    trust: TrustSettings = Field(default_factory=TrustSettings)
    registries: list[RegistrySettings] = Field(default_factory=list)
    escalation: list[EscalationLevel] = Field(
        default_factory=list, description="critical alerts not acknowledged go from level to level")

    @model_validator(mode="after")
    def _unique_clusters(self) -> Settings:
        repeated = sorted(n for n, seen in Counter(c.name for c in self.clusters).items() if seen > 1)
        if repeated:
            raise ValueError(f"cluster names must be unique; repeated: {', '.join(repeated)}")
        return self

    @model_validator(mode="after")
    def _escalation_names_notifiers(self) -> Settings:
        """Each level names a notifier of `notifiers`, and the levels come in the order they are reached."""
        targets = [n.target for n in self.notifiers]
        for index, level in enumerate(self.escalation):
            if level.notify not in targets:
                raise _fail_in_list("Settings", ("escalation", index, "notify"), level.notify, "unknown_notifier",
                                    f"no notifier named {level.notify!r} (notifiers: {', '.join(targets) or 'none'}; "
                                    "a notifier's name is its `name`, else its type)")
            if index and level.after < self.escalation[index - 1].after:
                raise _fail_in_list("Settings", ("escalation", index, "after"), level.after, "unordered_levels",
                                    "levels come in the order they are reached: after must not be shorter than "
                                    "the level before")
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        if self.escalation and repeated:
            raise ValueError(f"notifier names must be unique when escalation names them; repeated: "
                             f"{', '.join(repeated)} (give each a name:)")
        return self


_SETTINGS_MODELS: dict[tuple[tuple[str, tuple[tuple[str, type[Strict]], ...]], ...], type[Settings]] = {}


def settings_model(adapters: AdapterModels) -> type[Settings]:
    """The closed model of grayops.yaml for these adapters: each tagged entry validated by its adapter's model,
    an unknown tag refused with the known ones named. Built once per set of adapters."""
    key = tuple((section, tuple(models.items())) for section, models in adapters.items())
    found = _SETTINGS_MODELS.get(key)
    if found is None:
        unknown = sorted(set(adapters) - {s.name for s in SECTIONS})
        if unknown:
            raise ValueError(f"no section of grayops.yaml is named {', '.join(unknown)}")
        fields: dict[str, Any] = {}
        for section in SECTIONS:
            union = _tagged_union(section, adapters.get(section.name, {}))
            annotation = list[union] if section.many else union  # type: ignore[valid-type]
            default = Settings.model_fields[section.name].get_default(call_default_factory=True)
            if default is PydanticUndefined:
                fields[section.name] = (annotation, Field(min_length=1))
            else:  # the base's default, as the document would say it, validated by the adapters' models
                plain = [e.model_dump(by_alias=True) for e in default] if section.many else default.model_dump(
                    by_alias=True)
                fields[section.name] = (annotation, Field(default=plain, validate_default=True))
        built = create_model("Settings", __base__=Settings, __module__=__name__, **fields)
        found = _SETTINGS_MODELS.setdefault(key, built)  # built at once in two threads: both get the first
    return found


def _tagged_union(section: Section, models: Mapping[str, type[Strict]]) -> Any:
    """`Annotated[A | B | ..., Discriminator]` over the section's models, picked by the tag (or its default); any
    other tag goes to a member whose only field is the tag, typed as the known ones, so the error points at it."""
    if not models:
        raise ValueError(f"no adapter is registered for {section.name}")
    for tag, model in models.items():
        check_adapter_model(section.name, tag, model)
    unknown = create_model(section.base.__name__, __base__=_UnknownTag,
                           **{section.tag: (Literal[tuple(models)], ...)})  # type: ignore[call-overload]

    def pick(value: Any) -> str:
        tag = value.get(section.tag, section.default) if isinstance(value, dict) else getattr(value, section.tag, None)
        return tag if isinstance(tag, str) and tag in models else _UNKNOWN

    members = [Annotated[model, Tag(tag)] for tag, model in models.items()]
    members.append(Annotated[SkipJsonSchema[unknown], Tag(_UNKNOWN)])
    return Annotated[Union[tuple(members)], Discriminator(pick)]  # noqa: UP007 - built at run time


def check_adapter_model(section_name: str, tag: str, model: type[BaseModel]) -> None:
    """An adapter's settings model must subclass its section's base and declare its own tag, as `Literal`."""
    section = next((s for s in SECTIONS if s.name == section_name), None)
    if section is None:
        raise ValueError(f"no section of grayops.yaml is named {section_name}")
    declared = model.model_fields.get(section.tag)
    if not issubclass(model, section.base) or declared is None or get_args(declared.annotation) != (tag,):
        raise TypeError(f"{model.__name__} must subclass {section.base.__name__} and declare "
                        f"{section.tag}: Literal[{tag!r}]")


class _UnknownTag(BaseModel):
    """Base of the member that reports an unknown tag: only the tag is checked, so it is the one error."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def is_union_tag(node: Any, part: str) -> bool:
    """Whether `part`, in a validation error's location at `node`, is the tag pydantic adds for a member of a
    tagged union (e.g. `exec` in `verify.0.exec.command`) rather than a field of the document."""
    if part == _UNKNOWN:
        return True
    return isinstance(node, dict) and any(node.get(tag, default) == part for tag, default in _TAGS)


def picks(model: type[BaseModel], node: Mapping[str, Any]) -> bool:
    """Whether `node`'s tag selects `model` among the members of a tagged union."""
    if issubclass(model, _UnknownTag):
        return False
    for tag, default in _TAGS:
        declared = model.model_fields.get(tag)
        if declared is not None and get_origin(declared.annotation) is Literal:
            return node.get(tag, default) in get_args(declared.annotation)
    return False


# --- Access and approvals ---------------------------------------------------------------------------------

# The command vocabulary, the one definition the CLI, the bot and access.yaml derive theirs from (README "The CLI",
# "Slack"): each of these is a commit in the fleet repository; `rollout` only shows (chat).
CommitCommand = Literal["pause", "resume", "rollback", "approve", "retry"]
Command = Literal[CommitCommand, "rollout"]
COMMIT_COMMANDS: tuple[CommitCommand, ...] = get_args(CommitCommand)
COMMANDS: tuple[Command, ...] = get_args(Command)
# The brakes act even at a refused HEAD (README "Pause and rollback at an invalid HEAD").
BRAKES: tuple[CommitCommand, ...] = ("pause", "rollback")


class AccessRule(Strict):
    commands: list[Command] = Field(min_length=1)
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
    tiers: list[str] = Field(default_factory=list)


class Person(Strict):
    """One person under every name they act by (README "The two-person rule")."""

    name: str = Field(min_length=1)
    slack: str | None = Field(None, description="Slack user ID, e.g. U0OPS1")
    emails: list[str] = Field(default_factory=list, description="git author and committer emails")
    aliases: list[str] = Field(default_factory=list, description="git author names and --as names")


ApiScope = Literal["read", "plan", "pause", "rollback", "approve", "ack"]
API_SCOPES: tuple[ApiScope, ...] = get_args(ApiScope)


class ApiToken(Strict):
    """A bearer token of the HTTP API (README "HTTP API"): known by the SHA-256 of the token, never the token."""

    name: Name
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 digest of the token")
    scopes: list[ApiScope] = Field(min_length=1)
    person: str = Field(min_length=1, description="the name of one of people:, who the token's actions are by")


class Access(Strict):
    api_version: Literal["grayops.dev/v1"]
    kind: Literal["Access"]
    rules: list[AccessRule] = Field(default_factory=list)
    people: list[Person] = Field(
        default_factory=list,
        description="each person's Slack user ID, git emails and names: every rule about a person (the two-person "
                    "rule) knows them by any of these")
    identities: dict[str, list[str]] = Field(
        default_factory=dict,
        description="deprecated, use people: Slack user ID -> the other names this person commits under")
    tokens: list[ApiToken] = Field(default_factory=list, description="bearer tokens of the HTTP API")

    @field_validator("people")
    @classmethod
    def _one_person_per_name(cls, people: list[Person]) -> list[Person]:
        owner: dict[str, int] = {}
        for index, person in enumerate(people):
            for key in dict.fromkeys(k for k in (person.name, person.slack, *person.emails, *person.aliases) if k):
                folded = " ".join(key.split()).casefold()
                first = owner.setdefault(folded, index)
                if first != index:
                    raise ValueError(f"{key} is listed for both {people[first].name} and {person.name}")
        return people

    @model_validator(mode="after")
    def _tokens_name_people(self) -> Access:
        """Each token acts for a person of `people:` (so the two-person rule knows them), under a name of its own."""
        listed = {" ".join(p.name.split()).casefold() for p in self.people}
        seen: set[str] = set()
        digests: set[str] = set()
        for index, token in enumerate(self.tokens):
            if " ".join(token.person.split()).casefold() not in listed:
                known = ", ".join(p.name for p in self.people) or "none"
                raise _fail_in_list("Access", ("tokens", index, "person"), token.person, "unknown_person",
                                    f"{token.person} is not a name of people: (listed: {known})")
            if token.name in seen:
                raise _fail_in_list("Access", ("tokens", index, "name"), token.name, "repeated_token",
                                    f"token name {token.name} is listed twice")
            if token.sha256 in digests:
                raise _fail_in_list("Access", ("tokens", index, "sha256"), token.sha256, "repeated_token",
                                    f"token {token.name} has the digest of another token: give each its own")
            seen.add(token.name)
            digests.add(token.sha256)
        return self


def _fail_in_list(model: str, loc: tuple[str | int, ...], value: Any, kind: str, message: str) -> ValidationError:
    return ValidationError.from_exception_data(model, [InitErrorDetails(
        type=PydanticCustomError(kind, message), loc=loc, input=value)])


class ApprovalRecord(Strict):
    version: Version
    batch: Name
    desired_commit: str = Field(pattern=r"^[0-9a-f]{7,40}$")
    by: str
    at: str


class RetryRecord(Strict):
    """`grayops retry`: run again what failed in one rollout (its failed batch, or its failed rollback), once.

    Bound to the rollout and to the failure it answers (`failedAt`, as status/<plugin>.yaml records it), so a
    record never re-runs a later failure of the same batch."""

    version: Version
    rollout_id: str = Field(pattern=r"^[0-9a-f]{10}$")
    batch: Name
    failed_at: str
    by: str
    at: str


ApprovalAction = Literal["approve", "retry", "resume"]
APPROVAL_ACTIONS: tuple[ApprovalAction, ...] = get_args(ApprovalAction)


class ApprovalTokenRecord(Strict):
    """An approval token (README "HTTP API"): one use of one action on the plugin's version, before `expires`.
    Known by the SHA-256 of the token; its `id` goes in the commit that uses it (`Approval-Token`)."""

    id: str = Field(pattern=r"^[0-9a-f]{12}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    version: Version
    action: ApprovalAction
    by: str
    at: str
    expires: str


class AckRecord(Strict):
    """A critical alert acknowledged (README "Owners and escalation"): it escalates no further."""

    alert: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?-[0-9a-f]{10}$", description="the alert's id")
    by: str
    at: str


class Approvals(Strict):
    api_version: Literal["grayops.dev/v1"]
    kind: Literal["Approvals"]
    metadata: Metadata
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    retries: list[RetryRecord] = Field(default_factory=list)
    tokens: list[ApprovalTokenRecord] = Field(default_factory=list, description="approval tokens issued")
    acks: list[AckRecord] = Field(default_factory=list, description="critical alerts acknowledged")


FILE_KINDS: dict[str, type[Strict]] = {
    "Settings": Settings,
    "Plugin": Plugin,
    "Policy": Policy,
    "Access": Access,
    "Approvals": Approvals,
}
