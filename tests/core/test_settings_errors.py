"""grayops.yaml's adapter sections (clusters, metrics, notifiers): every error as `grayops.yaml:line: field: message`.

The expected lines are what grayops printed before the adapters moved into a registry; they must not change.
"""

from __future__ import annotations

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import FleetInvalid, load_fleet

ADAPTERS = full_registry().models

HEAD = "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n"
ONE = HEAD + "  - {name: a}\n"
PROM = ONE + "metrics:\n  provider: prometheus\n  url: http://prometheus:9090\n"


def errors_of(settings: str) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet({"grayops.yaml": settings}, builtin_policies(), adapters=ADAPTERS)
    return [str(e) for e in caught.value.errors]


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param(HEAD + "  - {name: a, driver: nomad}\n",
                 "grayops.yaml:4: clusters[0].driver: Input should be 'sim' or 'kubernetes'", id="unknown-driver"),
    pytest.param(HEAD + "  - {name: a, driver: 3}\n",
                 "grayops.yaml:4: clusters[0].driver: Input should be 'sim' or 'kubernetes'", id="driver-not-a-name"),
    pytest.param(HEAD + "  - {name: a, driver: kubernetes, kubeContxt: x}\n",
                 "grayops.yaml:4: clusters[0].kubeContxt: unknown field; did you mean 'kubeContext'?",
                 id="kubernetes-typo"),
    pytest.param(HEAD + "  - {name: a, labls: {}}\n",
                 "grayops.yaml:4: clusters[0].labls: unknown field; did you mean 'labels'?", id="sim-cluster-typo"),
    pytest.param(HEAD + "  - {driver: sim}\n",
                 "grayops.yaml:4: clusters[0].name: required field is missing", id="cluster-without-name"),
    pytest.param(HEAD + "  - a\n",
                 "grayops.yaml:4: clusters[0]: Input should be a valid dictionary or instance of ClusterSpec",
                 id="cluster-not-a-mapping"),
    pytest.param(HEAD + "  - {name: a}\n  - {name: a, driver: kubernetes}\n",
                 "grayops.yaml:1: document: cluster names must be unique; repeated: a", id="repeated-cluster"),
    pytest.param(ONE + "metrics: {provider: datadog}\n",
                 "grayops.yaml:5: metrics.provider: Input should be 'sim', 'prometheus' or 'web'",
                 id="unknown-provider"),
    pytest.param(ONE + "metrics: prometheus\n",
                 "grayops.yaml:5: metrics: Input should be a valid dictionary or instance of MetricsSettings",
                 id="metrics-not-a-mapping"),
    pytest.param(ONE + "metrics: {provider: prometheus}\n",
                 "grayops.yaml:5: metrics: the prometheus provider needs a url", id="prometheus-without-url"),
    pytest.param(PROM + "  timout: 5s\n",
                 "grayops.yaml:8: metrics.timout: unknown field; did you mean 'timeout'?", id="prometheus-typo"),
    pytest.param(PROM + "  timeout: soon\n",
                 "grayops.yaml:8: metrics.timeout: 'soon' is not a duration such as 500ms, 30s, 5m or 1h",
                 id="prometheus-bad-duration"),
    pytest.param(PROM + "  auth: {bearer: {env: A}, basic: {username: u, password: {env: B}}}\n",
                 "grayops.yaml:8: metrics.auth: give exactly one of bearer or basic", id="prometheus-two-auths"),
    pytest.param(PROM + "  auth: {bearer: {env: A, file: /x}}\n",
                 "grayops.yaml:8: metrics.auth.bearer: give exactly one of env (a variable name) or file (a path); "
                 "never the secret itself", id="prometheus-secret-twice"),
    pytest.param(PROM + "  tls: {verfy: true}\n",
                 "grayops.yaml:8: metrics.tls.verfy: unknown field; did you mean 'verify'?", id="prometheus-tls-typo"),
    pytest.param(ONE + "notifiers: [{type: webhook, url: x, secretEnvv: Y}]\n",
                 "grayops.yaml:5: notifiers[0].secretEnvv: unknown field; did you mean 'secretEnv'?",
                 id="webhook-typo"),
    pytest.param(ONE + "notifiers: [{type: webhook}]\n",
                 "grayops.yaml:5: notifiers[0].url: required field is missing", id="webhook-without-url"),
    pytest.param(ONE + "notifiers:\n  - type: slack\n    tiers: {prod: x}\n",
                 "grayops.yaml:6: notifiers[0].channel: required field is missing", id="slack-without-channel"),
    pytest.param(ONE + "notifiers:\n  - {type: log}\n  - {type: slack, channel: x, plugin: {}}\n",
                 "grayops.yaml:7: notifiers[1].plugin: unknown field; did you mean 'plugins'?", id="slack-typo"),
    pytest.param(ONE + "notifiers: [{type: log, level: x}]\n",
                 "grayops.yaml:5: notifiers[0].level: unknown field; allowed: name, type", id="log-takes-only-a-name"),
    pytest.param(ONE + "notifiers: {type: log}\n",
                 "grayops.yaml:5: notifiers: Input should be a valid list", id="notifiers-not-a-list"),
])
def test_each_adapter_setting_error_is_one_line_as_before(settings: str, expected: str) -> None:
    assert errors_of(settings) == [expected]


@pytest.mark.parametrize(("settings", "expected"), [
    pytest.param(HEAD + "  - {name: a, kubeContext: x}\n",
                 "grayops.yaml:4: clusters[0].kubeContext: unknown field; allowed: driver, labels, name",
                 id="kubernetes-field-on-a-sim-cluster"),
    pytest.param(ONE + "metrics: {provider: sim, queries: {error_rate: up}}\n",
                 "grayops.yaml:5: metrics.queries: unknown field; allowed: provider", id="prometheus-field-for-sim"),
    pytest.param(ONE + "notifiers: [{type: email}]\n",
                 "grayops.yaml:5: notifiers[0].type: Input should be 'log', 'webhook', 'pagerduty' or 'slack'",
                 id="unknown-notifier-names-the-known-ones"),
    pytest.param(ONE + "notifiers:\n  - url: https://h\n",
                 "grayops.yaml:6: notifiers[0].type: required field is missing", id="notifier-without-type"),
])
def test_a_field_only_another_adapter_reads_is_refused(settings: str, expected: str) -> None:
    """Before the registry these were accepted and ignored (one model held every adapter's fields); now each
    adapter's model is closed, and an unknown notifier type points at `type`, like an unknown driver."""
    assert errors_of(settings) == [expected]


def test_every_adapter_section_accepts_what_it_did() -> None:
    settings = (HEAD + "  - {name: a, labels: {tier: prod}}\n"
                "  - {name: b, driver: kubernetes, kubeContext: b, kubeconfig: /etc/kubeconfig}\n"
                "metrics:\n  provider: prometheus\n  url: https://p\n  timeout: 3s\n  minWindow: 2m\n"
                "  queries: {error_rate: up}\n  auth: {basic: {username: u, password: {file: /run/p}}}\n"
                "  tls: {verify: false, caFile: /ca.pem}\n"
                "notifiers:\n  - {type: log}\n  - {type: webhook, url: https://h, secretEnv: S}\n"
                "  - {type: slack, channel: '#r', tiers: {prod: '#p'}, plugins: {billing: '#b'}}\n")
    fleet = load_fleet({"grayops.yaml": settings}, builtin_policies(), adapters=ADAPTERS)
    assert [c.driver for c in fleet.settings.clusters] == ["sim", "kubernetes"]
    assert fleet.settings.metrics.provider == "prometheus"
    assert [n.type for n in fleet.settings.notifiers] == ["log", "webhook", "slack"]
