"""Foreign analysis templates (Argo Rollouts, Flagger) in their projects' documented format, referenced unchanged
by a grayops policy: what they translate to, and the precise errors for what grayops does not support."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from reconciler.cli import full_registry
from reconciler.core.fleet import FleetInvalid, load_fleet
from tests.conftest import plugin_yaml, settings_yaml

ADAPTERS = full_registry().models

# Argo Rollouts' documented example (docs/features/analysis.md), unchanged.
ARGO_SUCCESS_RATE = """\
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata:
  name: success-rate
spec:
  args:
  - name: service-name
  metrics:
  - name: success-rate
    interval: 5m
    # NOTE: prometheus queries return results in the form of a vector.
    # So it is common to access the index 0 of the returned array to obtain the value
    successCondition: result[0] >= 0.95
    failureLimit: 3
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: |
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}",response_code!~"5.*"}[5m]
          )) /
          sum(irate(
            istio_requests_total{reporter="source",destination_service=~"{{args.service-name}}"}[5m]
          ))
"""

ARGO_CLUSTER_ERRORS = """\
apiVersion: argoproj.io/v1alpha1
kind: ClusterAnalysisTemplate
metadata:
  name: error-ratio
spec:
  args:
  - name: namespace
    value: plugins
  metrics:
  - name: error-ratio
    interval: 30s
    count: 4
    failureLimit: 1
    inconclusiveLimit: 2
    consecutiveErrorLimit: 3
    failureCondition: result[0] > 0.05 || result[0] < 0
    provider:
      prometheus:
        address: http://prometheus.example.com:9090
        query: sum(rate(errors_total{namespace="{{args.namespace}}"}[1m])) / sum(rate(requests_total[1m]))
"""

# Flagger's documented MetricTemplate example (docs/gitbook/usage/metrics.md), unchanged.
FLAGGER_NOT_FOUND = """\
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: not-found-percentage
  namespace: istio-system
spec:
  provider:
    type: prometheus
    address: http://prometheus.istio-system:9090
  query: |
    100 - sum(
        rate(
            istio_requests_total{
              reporter="destination",
              destination_workload_namespace="{{ namespace }}",
              destination_workload="{{ target }}",
              response_code!="404"
            }[{{ interval }}]
        )
    )
    /
    sum(
        rate(
            istio_requests_total{
              reporter="destination",
              destination_workload_namespace="{{ namespace }}",
              destination_workload="{{ target }}"
            }[{{ interval }}]
        )
    ) * 100
"""


def policy(templates: str, metrics: str = "") -> str:
    return f"""\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {{name: foreign}}
spec:
  batches:
    - {{name: canary, size: 1, bake: 10m}}
    - {{name: all, size: 100%}}
  analysis:
    interval: 1m
    metrics: [{metrics}]
    templates:
{templates}"""


def fleet_files(templates: Mapping[str, str], policy_text: str) -> dict[str, str]:
    return {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 2}).replace(
            "metrics: {provider: sim}", "metrics: {provider: prometheus, url: 'http://127.0.0.1:9090'}"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.0.0", "foreign"),
        "policies/foreign.yaml": policy_text,
        **{f"analysis/{name}.yaml": text for name, text in templates.items()},
    }


def errors_of(files: Mapping[str, str]) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet(files, adapters=ADAPTERS)
    return [str(e) for e in caught.value.errors]


class TestArgoRollouts:
    def test_the_documented_success_rate_template(self) -> None:
        ref = "      - {kind: AnalysisTemplate, name: success-rate, args: {service-name: '{plugin}.svc'}}\n"
        fleet = load_fleet(fleet_files({"success-rate": ARGO_SUCCESS_RATE}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        assert metric.name == "success-rate"
        assert (metric.min, metric.max, metric.failure_limit, metric.interval) == (0.95, None, 3, 300.0)
        assert metric.query is not None and 'destination_service=~"{plugin}.svc"' in metric.query
        assert "{{" not in metric.query

    def test_a_cluster_template_with_failure_condition_and_limits(self) -> None:
        ref = "      - {kind: ClusterAnalysisTemplate, name: error-ratio}\n"
        fleet = load_fleet(fleet_files({"errors": ARGO_CLUSTER_ERRORS}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        # failure when > 0.05 or < 0: success is 0 <= value <= 0.05, the arg's default filled in
        assert (metric.max, metric.min) == (0.05, 0.0)
        assert (metric.count, metric.failure_limit, metric.inconclusive_limit, metric.consecutive_error_limit) == \
            (4, 1, 2, 3)
        assert metric.interval == 30.0 and 'namespace="plugins"' in (metric.query or "")

    @pytest.mark.parametrize(("condition", "bounds"), [
        ("result[0] < 0.05", {"max": math.nextafter(0.05, -math.inf)}),
        ("result[0] <= 0.05", {"max": 0.05}),
        ("result >= 0.95", {"min": 0.95}),
        ("0.95 < result[0]", {"min": math.nextafter(0.95, math.inf)}),
        ("result[0] >= 0.9 && result[0] <= 1.1", {"min": 0.9, "max": 1.1}),
    ], ids=["lt", "le", "scalar-ge", "reversed", "and"])
    def test_success_conditions_of_the_simple_forms(self, condition: str, bounds: dict[str, float]) -> None:
        template = ARGO_SUCCESS_RATE.replace("result[0] >= 0.95", condition)
        ref = "      - {kind: AnalysisTemplate, name: success-rate, args: {service-name: x}}\n"
        fleet = load_fleet(fleet_files({"t": template}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        assert {"max": metric.max, "min": metric.min} == {"max": bounds.get("max"), "min": bounds.get("min")}

    @pytest.mark.parametrize(("change", "expected"), [
        (("successCondition: result[0] >= 0.95", "successCondition: len(result) == 0 || result[0] >= 0.95"),
         "analysis/t.yaml:13: spec.metrics[0].successCondition: '||' is not supported in a successCondition"),
        (("successCondition: result[0] >= 0.95", "successCondition: isNaN(result[0])"),
         "analysis/t.yaml:13: spec.metrics[0].successCondition: 'isNaN(result[0])' is not supported"),
        (("    failureLimit: 3\n", "    failureLimit: 3\n    initialDelay: 5m\n"),
         "analysis/t.yaml:15: spec.metrics[0].initialDelay: not supported by grayops"),
        (("        address: http://prometheus.example.com:9090\n",
          "        address: http://prometheus.example.com:9090\n        timeout: 30\n"),
         "analysis/t.yaml:18: spec.metrics[0].provider.prometheus.timeout: not supported by grayops: it uses "
         "metrics.url, timeout, auth and tls of grayops.yaml"),
        (("    provider:\n      prometheus:", "    provider:\n      datadog: {}\n      prometheus:"),
         "spec.metrics[0].provider.datadog: only the prometheus provider is supported"),
        (("  - name: service-name\n", "  - name: service-name\n    valueFrom: {secretKeyRef: {name: s, key: k}}\n"),
         "spec.args[0].valueFrom: arg 'service-name': valueFrom (secrets, field refs) is not supported"),
        (("    failureLimit: 3\n", "    failureLimit: 3\n    failureCondition: result[0] < 0.5\n"),
         "successCondition and failureCondition leave values that meet neither"),
    ], ids=["or-in-success", "function", "initial-delay", "prometheus-timeout", "other-provider", "value-from",
            "inconclusive-band"])
    def test_what_grayops_does_not_support_is_an_error_that_says_what(self, change: tuple[str, str],
                                                                       expected: str) -> None:
        template = ARGO_SUCCESS_RATE.replace(*change)
        assert template != ARGO_SUCCESS_RATE
        args = "" if "valueFrom" in template else ", args: {service-name: x}"  # a value given overrides valueFrom
        ref = f"      - {{kind: AnalysisTemplate, name: success-rate{args}}}\n"
        errors = errors_of(fleet_files({"t": template}, policy(ref)))
        assert any(expected in e for e in errors), errors
        assert all("(used by policies/foreign.yaml)" in e for e in errors if e.startswith("analysis/"))

    def test_an_arg_without_a_value_is_an_error(self) -> None:
        ref = "      - {kind: AnalysisTemplate, name: success-rate}\n"
        errors = errors_of(fleet_files({"t": ARGO_SUCCESS_RATE}, policy(ref)))
        assert any("arg 'service-name' has no value" in e for e in errors), errors

    def test_complementary_conditions_are_accepted(self) -> None:
        template = ARGO_SUCCESS_RATE.replace("    failureLimit: 3\n",
                                             "    failureLimit: 3\n    failureCondition: result[0] < 0.95\n")
        ref = "      - {kind: AnalysisTemplate, name: success-rate, args: {service-name: x}}\n"
        fleet = load_fleet(fleet_files({"t": template}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        assert metric.min == 0.95


class TestFlagger:
    def test_the_documented_metric_template_with_a_threshold_range(self) -> None:
        ref = "      - {kind: MetricTemplate, name: not-found-percentage, thresholdRange: {max: 5}, interval: 1m}\n"
        fleet = load_fleet(fleet_files({"nf": FLAGGER_NOT_FOUND}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        assert (metric.name, metric.max, metric.min, metric.interval) == ("not-found-percentage", 5.0, None, 60.0)
        query = metric.query or ""
        assert 'destination_workload_namespace=~"{namespace}"' in query
        assert 'destination_workload="{plugin}"' in query and "[{window}]" in query and "{{" not in query

    def test_a_threshold_range_is_required(self) -> None:
        ref = "      - {kind: MetricTemplate, name: not-found-percentage}\n"
        errors = errors_of(fleet_files({"nf": FLAGGER_NOT_FOUND}, policy(ref)))
        assert any("needs a thresholdRange" in e for e in errors), errors

    def test_unsupported_provider_fields_and_variables_are_errors(self) -> None:
        template = FLAGGER_NOT_FOUND.replace("    type: prometheus\n",
                                             "    type: prometheus\n    secretRef: {name: prom-auth}\n")
        template = template.replace('response_code!="404"', 'response_code!="{{ variables.code }}"')
        ref = "      - {kind: MetricTemplate, name: not-found-percentage, thresholdRange: {max: 5}}\n"
        errors = errors_of(fleet_files({"nf": template}, policy(ref)))
        assert any("analysis/nf.yaml:9: spec.provider.secretRef: not supported by grayops" in e for e in errors)
        assert any("template variable {{ variables.code }} is not supported or has no value" in e for e in errors)

    def test_template_variables_fill_the_query(self) -> None:
        template = FLAGGER_NOT_FOUND.replace('response_code!="404"', 'response_code!="{{ variables.code }}"')
        ref = ("      - {kind: MetricTemplate, name: not-found-percentage, thresholdRange: {max: 5}, "
               "templateVariables: {code: '404'}}\n")
        fleet = load_fleet(fleet_files({"nf": template}, policy(ref)), adapters=ADAPTERS)
        [metric] = fleet.policies["foreign"].analysis.metrics
        assert 'response_code!="404"' in (metric.query or "")


class TestReferences:
    def test_an_unknown_template_names_the_policy_line_and_what_exists(self) -> None:
        ref = "      - {kind: AnalysisTemplate, name: nope}\n"
        errors = errors_of(fleet_files({"sr": ARGO_SUCCESS_RATE}, policy(ref)))
        assert errors == ["policies/foreign.yaml:12: spec.analysis.templates[0].name: no AnalysisTemplate named "
                          "'nope' under analysis/ (known: AnalysisTemplate success-rate)"]

    def test_a_metric_name_used_twice_is_an_error(self) -> None:
        ref = "      - {kind: AnalysisTemplate, name: success-rate, args: {service-name: x}}\n"
        errors = errors_of(fleet_files({"sr": ARGO_SUCCESS_RATE},
                                       policy(ref, "{name: success-rate, max: 1}")))
        assert any("metric 'success-rate' of AnalysisTemplate success-rate is already in the analysis" in e
                   for e in errors), errors

    def test_a_grayops_file_under_analysis_is_refused(self) -> None:
        files = fleet_files({"x": "apiVersion: grayops.dev/v1\nkind: Policy\n"}, policy("      []\n"))
        assert any(e.startswith("analysis/x.yaml:1: apiVersion: analysis/ holds Argo Rollouts")
                   for e in errors_of(files))

    def test_a_metric_without_a_query_is_an_error_with_the_prometheus_provider(self) -> None:
        files = fleet_files({}, policy("      []\n", "{name: saturation, max: 0.8}"))
        assert errors_of(files) == ["policies/foreign.yaml:10: spec.analysis.metrics[0].name: no PromQL for metric "
                                    "'saturation': add metrics.queries.saturation to grayops.yaml"]


@pytest.mark.parametrize(("ref", "message"), [
    ("{kind: MetricTemplate, name: not-found-percentage, thresholdRange: {max: 5}, args: {a: b}}",
     "args are for Argo Rollouts templates; a MetricTemplate takes templateVariables"),
    ("{kind: AnalysisTemplate, name: success-rate, args: {service-name: x}, thresholdRange: {max: 5}}",
     "thresholdRange, interval and templateVariables are for Flagger MetricTemplates"),
])
def test_a_reference_with_fields_of_the_other_project_is_refused(ref: str, message: str) -> None:
    files = fleet_files({"nf": FLAGGER_NOT_FOUND, "sr": ARGO_SUCCESS_RATE}, policy(f"      - {ref}\n"))
    errors = [e for e in errors_of(files) if e.startswith("policies/")]
    assert len(errors) == 1 and errors[0].startswith("policies/foreign.yaml:12: spec.analysis.templates[0]: ")
    assert message in errors[0]
