"""The effect runner: each effect type goes to the one part that carries it out, version changes to the driver of
each instance's cluster, metrics with their baseline, and what comes back is given to the next decision once."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from reconciler.adapters.registry import Runtime
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.effects import (
    Alert,
    CommitSpec,
    Effect,
    QueryMetrics,
    RunChecks,
    SetVersion,
    WriteReport,
)
from reconciler.core.engine import Decision, Transition
from reconciler.core.model import Phase, Severity
from reconciler.core.spec import MetricSpec, Plugin
from reconciler.shell.effects import EffectRunner, Routed, notify
from tests.conftest import plugin_yaml
from tests.core.test_engine import T0, desired
from tests.shell.fakes import FakeDriver, FakeMetrics, Heard
from tests.shell.test_recorder import first_decision

PLUGIN = Plugin.model_validate(yaml.safe_load(plugin_yaml("billing", "1.5.0")))
WANT = desired("1.5.0")  # canary-1 and prod-1..7, one instance each
CANARY, PROD = "canary-1/plugins", "prod-1/plugins"
ERROR_RATE = MetricSpec.model_validate({"name": "error_rate", "max": 0.05})


def runtime(notifier: Heard | None = None) -> tuple[Runtime, FakeDriver, FakeDriver, FakeMetrics]:
    """canary-1 on driver "a", the prod clusters on driver "b"."""
    a, b, metrics = FakeDriver(), FakeDriver(), FakeMetrics({"1.5.0": 0.01, "1.4.0": 0.02})
    heard = notifier or Heard()
    drivers = {ref.cluster: "a" if ref.cluster == "canary-1" else "b" for ref in WANT.instances}
    return Runtime({"a": a, "b": b}, metrics, heard, cluster_driver=drivers, watchers=[heard]), a, b, metrics


def act(effects: tuple[Effect, ...]) -> tuple[EffectRunner, FakeDriver, FakeDriver, FakeMetrics]:
    run, a, b, metrics = runtime()
    runner = EffectRunner(Telemetry())
    runner.act(run, PLUGIN, WANT, Decision(first_decision().state, effects))
    return runner, a, b, metrics


EFFECTS: list[tuple[Effect, str]] = [
    (SetVersion("billing", CANARY, "1.5.0", "r1", "1.4.0"), "changes"),
    (RunChecks("billing", CANARY, "verify", "1.5.0", ()), "checks"),
    (QueryMetrics("billing", "r1", "canary", "1.5.0", (CANARY,), (ERROR_RATE,), 30.0), "queries"),
    (CommitSpec("billing", "paused", True, "pause", "held"), "commits"),
    (Alert("billing", "r1", "drift", Severity.WARNING, "prod-1 drifted"), "alerts"),
]


@pytest.mark.parametrize(("effect", "part"), EFFECTS, ids=[part for _, part in EFFECTS])
def test_each_effect_type_is_routed_to_one_part(effect: Effect, part: str) -> None:
    routed = Routed.of([effect])
    parts = {"changes": routed.changes, "checks": routed.checks, "queries": routed.queries,
             "commits": routed.commits, "alerts": routed.alerts}
    assert parts.pop(part) == [effect]
    assert not any(parts.values()) and not routed.report


def test_write_report_is_the_recorders() -> None:
    assert Routed.of([WriteReport("billing")]).report


def test_version_changes_go_to_the_driver_of_each_instances_cluster_in_one_call_each() -> None:
    changes = tuple(SetVersion("billing", ref.id, "1.5.0", "r1", "1.4.0") for ref in WANT.instances)
    _, a, b, _ = act(changes)
    assert [c.instance for c in a.applied] == [CANARY]
    assert sorted(c.instance for c in b.applied) == sorted(ref.id for ref in WANT.instances if ref.id != CANARY)


def test_an_instance_no_longer_selected_is_not_touched() -> None:
    _, a, b, _ = act((SetVersion("billing", "gone-1/plugins", "1.5.0", "r1", None),))
    assert a.applied == b.applied == []


def test_checks_run_on_the_instances_driver_and_come_back_once() -> None:
    runner, a, b, _ = act((RunChecks("billing", PROD, "pre", "1.5.0", ()),))
    assert b.checked == [(PROD, "pre")] and a.checked == []
    assert runner.pending
    results = runner.take("billing")
    assert [(c.instance, c.stage, c.ok) for c in results.checks] == [(PROD, "pre", True)]
    assert not runner.pending and not runner.take("billing")


def test_apply_errors_come_back_for_the_next_decision() -> None:
    run, a, _, _ = runtime()
    a.errors[CANARY] = "forbidden: patch deployments"
    runner = EffectRunner(Telemetry())
    runner.act(run, PLUGIN, WANT, Decision(first_decision().state,
                                           (SetVersion("billing", CANARY, "1.5.0", "r1", "1.4.0"),)))
    assert runner.take("billing").apply_errors == {CANARY: "forbidden: patch deployments"}


def test_a_metric_with_max_increase_is_also_read_on_the_baseline() -> None:
    metric = MetricSpec.model_validate({"name": "error_rate", "maxIncrease": 0.2})
    query = QueryMetrics("billing", "r1", "canary", "1.5.0", (CANARY,), (metric,), 30.0, baseline=(PROD,),
                         baseline_version="1.4.0")
    runner, _, _, metrics = act((query,))
    assert metrics.asked == [("1.5.0", (CANARY,)), ("1.4.0", (PROD,))]
    [result] = runner.take("billing").metrics
    assert (result.metric, result.measurement.value, result.measurement.baseline) == ("error_rate", 0.01, 0.02)


def test_notify_tells_each_transition_and_alert_and_shows_the_rollout_to_watchers() -> None:
    heard = Heard()
    run, *_ = runtime(heard)
    decided = first_decision()
    alert = Alert("billing", decided.state.rollout_id, "approval_needed", Severity.INFO, "wave-1 needs an approval")
    notify(run, Decision(decided.state, (alert,), decided.transitions), lambda: 3, T0 + timedelta(seconds=1))
    assert [(e.kind, e.message) for e in heard.events] == [
        *(("transition", t.reason) for t in decided.transitions), ("approval_needed", "wave-1 needs an approval")]
    assert heard.observed == [("billing", 3)]


def test_nothing_happened_nothing_is_said() -> None:
    heard = Heard()
    run, *_ = runtime(heard)
    notify(run, Decision(first_decision().state), lambda: 3, T0)
    assert heard.events == [] and heard.observed == []
    notify(run, Decision(first_decision().state, (), (Transition("batch canary passed", "batch-pass",
                                                                 Phase.PROGRESSING, "canary"),)), lambda: 3, T0)
    assert [e.message for e in heard.events] == ["batch canary passed"] and heard.observed == [("billing", 3)]
