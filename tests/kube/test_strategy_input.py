"""Strategy settings as a user writes them: each mistake one `path:line: field: message`, by table over the pure
`load_fleet` (README "Strategies")."""

from __future__ import annotations

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.spec import JobCheck, Workload
from reconciler.core.strategy import Knobs
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml

ADAPTERS = full_registry().models
POLICY_HEAD = FAST_POLICY.replace("metadata: {name: fast}", "metadata: {name: knobs}")


def load(plugin_extra: str = "", policy_extra: str = "") -> Fleet:
    return load_fleet({"grayops.yaml": settings_yaml({"canary": 1}), "policies/fast.yaml": FAST_POLICY,
                       "policies/knobs.yaml": POLICY_HEAD + policy_extra,
                       "plugins/billing.yaml": plugin_yaml("billing", "1.0.0", extra=plugin_extra)},
                      builtin_policies(), adapters=ADAPTERS)


def errors(plugin_extra: str = "", policy_extra: str = "") -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load(plugin_extra, policy_extra)
    return [str(e) for e in caught.value.errors]


WORKLOAD = "  workload:\n    name: billing\n"


@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param(WORKLOAD + "    strategy: blueGreen\n",
                 "plugins/billing.yaml:9: spec.workload.strategy: strategy blueGreen needs service: the Service "
                 "whose selector grayops switches between colors", id="blue-green-without-service"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n",
                 "plugins/billing.yaml:9: spec.workload.strategy: strategy canary needs traffic: {gatewayRoute: NAME, "
                 "steps: [10, 50, 100]}", id="canary-without-traffic"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n    traffic: {steps: [10, 100]}\n",
                 "plugins/billing.yaml:11: spec.workload.traffic.gatewayRoute: required field is missing",
                 id="canary-without-route"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n    traffic:\n      gatewayRoute: billing\n"
                            "      steps: [10, 50]\n",
                 "plugins/billing.yaml:13: spec.workload.traffic.steps: the last step must be 100, so the canary "
                 "takes all traffic before it is promoted (the steps end at 50)", id="steps-not-ending-at-100"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n    traffic:\n      gatewayRoute: billing\n"
                            "      steps: [50, 10, 100]\n",
                 "plugins/billing.yaml:13: spec.workload.traffic.steps: steps must grow: 10 comes after 50",
                 id="steps-not-growing"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n    traffic:\n      gatewayRoute: billing\n"
                            "      steps: [0, 100]\n",
                 "plugins/billing.yaml:13: spec.workload.traffic.steps: each step is a share of traffic from 1 to "
                 "100 (percent), not 0", id="step-of-0"),
    pytest.param(WORKLOAD + "    traffic: {gatewayRoute: billing}\n",
                 "plugins/billing.yaml:9: spec.workload.traffic: traffic is for strategy canary (this workload's "
                 "strategy is inPlace)", id="traffic-without-canary"),
    pytest.param(WORKLOAD + "    strategy: canary\n    service: billing\n    traffic: {gatewayRoute: b}\n"
                            "    scaleDownDelay: 5m\n",
                 "plugins/billing.yaml:12: spec.workload.scaleDownDelay: scaleDownDelay is for strategy blueGreen "
                 "(this workload's strategy is canary)", id="delay-without-blue-green"),
    pytest.param("  workload: {kind: StatefulSet, name: redis, strategy: blueGreen, service: redis}\n",
                 "plugins/billing.yaml:7: spec.workload.strategy: strategy blueGreen works on a Deployment, not a "
                 "StatefulSet", id="blue-green-statefulset"),
    pytest.param(WORKLOAD + "    strategy: rolling\n",
                 "plugins/billing.yaml:9: spec.workload.strategy: Input should be 'inPlace', 'blueGreen' or 'canary'",
                 id="unknown-strategy"),
])
def test_workload_strategy_errors(extra: str, expected: str) -> None:
    assert errors(extra) == [expected]


@pytest.mark.parametrize(("extra", "expected"), [
    pytest.param("  maxSurge: 0\n  maxUnavailable: 0%\n",
                 "policies/knobs.yaml:18: spec.maxUnavailable: maxSurge and maxUnavailable cannot both be 0: no pod "
                 "could ever be replaced", id="no-progress"),
    pytest.param("  maxSurge: many\n",
                 "policies/knobs.yaml:17: spec.maxSurge: 'many' is not a pod count such as 1 or a share such as "
                 "\"25%\"", id="surge-not-a-count"),
    pytest.param("  partitionSteps: [50%, 75%, 0]\n",
                 "policies/knobs.yaml:17: spec.partitionSteps: partitionSteps must go down: 75% comes after a lower "
                 "or equal step", id="partition-going-up"),
    pytest.param("  partitionSteps: [75%, 50%]\n",
                 "policies/knobs.yaml:17: spec.partitionSteps: the last partition step must be 0, so every pod is "
                 "updated (it is 50%)", id="partition-not-ending-at-0"),
    pytest.param("  partitionSteps: [2, 50%, 0]\n",
                 "policies/knobs.yaml:17: spec.partitionSteps: partitionSteps are all pod counts or all shares such "
                 "as \"75%\" (and 0)", id="partition-mixed"),
    pytest.param("  smoke: [{type: job, timeout: 5m}]\n",
                 "policies/knobs.yaml:17: spec.smoke[0].template: required field is missing", id="job-without-spec"),
    pytest.param("  smoke: [{type: job, template: {template: {spec: {}}}}]\n",
                 "policies/knobs.yaml:17: spec.smoke[0].template: a Job spec needs template.spec.containers (at least "
                 "one container)", id="job-without-containers"),
    pytest.param("  smoke: [{type: metric, name: error_rate, max: 1}]\n",
                 "policies/knobs.yaml:17: spec.smoke[0]: Input tag 'metric' found using 'type' does not match "
                 "any of the expected tags: 'http', 'exec', 'job'", id="metric-is-not-a-smoke-test"),
])
def test_policy_knob_and_smoke_errors(extra: str, expected: str) -> None:
    assert errors(policy_extra=extra) == [expected]


def test_a_complete_strategy_setup_loads() -> None:
    fleet = load("  workload:\n    name: billing\n    strategy: canary\n    service: billing\n"
                 "    traffic: {gatewayRoute: billing-route, steps: [5, 25, 100]}\n",
                 "  maxSurge: 1\n  maxUnavailable: 0\n  partitionSteps: [75%, 50%, 0]\n"
                 "  smoke:\n    - {type: http, path: /health}\n    - {type: exec, command: [ping], expect: PONG}\n"
                 "    - {type: job, template: billing-smoke, timeout: 2m}\n"
                 "    - type: job\n      template: {template: {spec: {containers: [{name: t, image: curl}]}}}\n")
    workload = fleet.plugins["billing"].spec.workload
    assert isinstance(workload, Workload) and workload.traffic is not None
    assert (workload.strategy, workload.traffic.steps, workload.scale_down_delay) == ("canary", [5, 25, 100], 600.0)
    policy = fleet.policies["knobs"]
    assert Knobs.of(policy) == Knobs(1, 0, ("75%", "50%", 0))
    assert [type(c).__name__ for c in policy.smoke] == ["HttpCheck", "ExecCheck", "JobCheck", "JobCheck"]
    job = policy.smoke[2]
    assert isinstance(job, JobCheck) and (job.template, job.timeout) == ("billing-smoke", 120.0)
