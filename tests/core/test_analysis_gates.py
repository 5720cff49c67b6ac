"""Metric gates beyond max/min: maxIncrease against the baseline (canary versus the instances still on the old
version), inconclusiveLimit, count, and a metric's own interval. Driven like tests/core/test_engine.py."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest

from reconciler.core.analysis import judge
from reconciler.core.effects import MetricResult, QueryMetrics
from reconciler.core.engine import Decision
from reconciler.core.model import Measurement, Phase, Verdict
from reconciler.core.spec import MetricSpec
from tests.core.test_engine import World, desired, installed, make_policy, run

AT = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)


def spec(**fields: object) -> MetricSpec:
    return MetricSpec.model_validate({"name": "error_rate", **fields})


class TestJudgeAgainstBaseline:
    @pytest.mark.parametrize(("measurement", "verdict", "message"), [
        (Measurement(0.011, baseline=0.01), Verdict.SUCCESSFUL,
         "error_rate 0.011 <= baseline 0.01 + 20% = 0.012"),
        (Measurement(0.013, baseline=0.01), Verdict.FAILED, "error_rate 0.013 > baseline 0.01 + 20% = 0.012"),
        (Measurement(0.001, baseline=0.0), Verdict.FAILED, "error_rate 0.001 > baseline 0 + 20% = 0"),
        (Measurement(0.013, baseline_missing="no data for the baseline (3 instance(s) on 1.5.0)"),
         Verdict.INCONCLUSIVE, "error_rate: no data for the baseline (3 instance(s) on 1.5.0) (no evidence to "
                               "compare with)"),
        (Measurement(0.013, baseline=float("nan")), Verdict.INCONCLUSIVE, "error_rate: baseline is NaN"),
        (Measurement(0.013), Verdict.SUCCESSFUL, "error_rate 0.013 (no baseline instances left)"),
    ], ids=["within", "above", "zero-baseline", "baseline-silent", "baseline-nan", "none-left"])
    def test_canary_versus_baseline(self, measurement: Measurement, verdict: Verdict, message: str) -> None:
        reading = judge(spec(maxIncrease=0.2), measurement, AT)
        assert reading.verdict is verdict
        assert reading.message.startswith(message)

    def test_absolute_thresholds_still_apply(self) -> None:
        reading = judge(spec(max=0.05, maxIncrease=0.2), Measurement(0.08, baseline=0.07), AT)
        assert reading.verdict is Verdict.FAILED and reading.message == "error_rate 0.08 > max 0.05"

    def test_a_metric_needs_some_threshold(self) -> None:
        with pytest.raises(ValueError, match="needs a threshold: max, min, maxIncrease"):
            spec()


@dataclass
class BaselineWorld(World):
    """Answers a QueryMetrics the way the shell does: the metric over the batch, and with maxIncrease, the same
    over the baseline instances at the old version."""

    baseline_seen: list[tuple[tuple[str, ...], str | None]] = field(default_factory=list)

    def act(self, decision: Decision) -> None:
        queries = [e for e in decision.effects if isinstance(e, QueryMetrics)]
        super().act(replace(decision, effects=tuple(e for e in decision.effects if not isinstance(e, QueryMetrics))))
        for query in queries:
            self.baseline_seen.append((query.baseline, query.baseline_version))
            for metric in query.metrics:
                measured = Measurement(self.error_rate.get(query.version, 0.001))
                if metric.max_increase is not None and query.baseline and query.baseline_version:
                    measured = replace(measured, baseline=self.error_rate.get(query.baseline_version, 0.001))
                self.results.append(MetricResult(query.rollout_id, query.batch, metric.name, measured))


def test_a_version_worse_than_its_baseline_is_rolled_back_though_under_max() -> None:
    state, _, now = installed("1.5.0")
    world = BaselineWorld(versions={iid: "1.5.0" for iid in state.instances})
    world.error_rate.update({"1.5.0": 0.01, "1.6.0": 0.03})
    policy = make_policy(analysis={"interval": "250ms", "metrics": [{"name": "error_rate", "max": 0.05,
                                                                     "maxIncrease": 0.5}]})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.ROLLED_BACK
    assert "> baseline 0.01 + 50% = 0.015" in result.state.batches[0].reason
    baseline, version = world.baseline_seen[0]
    assert version == "1.5.0" and len(baseline) == 7 and "canary-1/plugins" not in baseline


def test_a_version_as_good_as_its_baseline_rolls_out_and_the_last_batch_has_none_left() -> None:
    state, _, now = installed("1.5.0")
    world = BaselineWorld(versions={iid: "1.5.0" for iid in state.instances})
    world.error_rate.update({"1.5.0": 0.01, "1.6.0": 0.011})
    policy = make_policy(analysis={"interval": "250ms", "metrics": [{"name": "error_rate", "maxIncrease": 0.5}]})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    assert any(not baseline for baseline, _ in world.baseline_seen)  # the last batch: nothing left to compare
    last = result.state.batches[-1].metrics[0].last
    assert last is not None and "(no baseline instances left)" in last.message


def test_inconclusive_readings_beyond_the_limit_pause_before_the_no_data_timeout() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = None
    policy = make_policy(analysis={"interval": "250ms", "noDataTimeout": "1h", "metrics": [
        {"name": "error_rate", "max": 0.05, "inconclusiveLimit": 2}]})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.PAUSED
    assert "3 inconclusive readings of error_rate (limit 2)" in (result.state.pause_reason or "")
    assert "metrics_missing" in result.alerts()


def test_count_holds_the_bake_until_enough_readings() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(analysis={"interval": "250ms", "metrics": [{"name": "error_rate", "max": 0.05,
                                                                     "count": 10}]})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    assert all(b.metrics[0].readings >= 10 for b in result.state.batches)
    state, world, now = installed("1.5.0")
    unlimited = run(desired("1.6.0", make_policy()), world, state, now)
    assert unlimited.state is not None and min(b.metrics[0].readings for b in unlimited.state.batches) < 10


def test_a_metric_with_a_longer_interval_of_its_own_is_read_less_often() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(analysis={"interval": "250ms", "metrics": [
        {"name": "error_rate", "max": 0.05}, {"name": "slow_metric", "max": 0.05, "interval": "1s"}]})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    asked = [m.name for e in result.effects if isinstance(e, QueryMetrics) for m in e.metrics]
    assert asked.count("error_rate") >= 3 * asked.count("slow_metric") > 0
