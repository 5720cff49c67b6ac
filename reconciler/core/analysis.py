"""Metric judgement: a measurement and its thresholds make a reading; readings make a metric's running track.

A missing value is Inconclusive and a failed query is Error, never Successful: a silent canary is not a
healthy one. NaN is no evidence either way (Inconclusive); an infinite value is judged like any other.
"""

from __future__ import annotations

import math
from datetime import datetime

from reconciler.core.model import Measurement, MetricTrack, Reading, Verdict
from reconciler.core.spec import MetricSpec


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def judge(metric: MetricSpec, measurement: Measurement, at: datetime) -> Reading:
    """One reading of `metric` from one measurement."""
    name = metric.name
    if measurement.error is not None:
        return Reading(name, Verdict.ERROR, None, at, f"{name}: query failed: {measurement.error}")
    value = measurement.value
    if value is None:
        return Reading(name, Verdict.INCONCLUSIVE, None, at, f"{name}: no data")
    if math.isnan(value):
        return Reading(name, Verdict.INCONCLUSIVE, None, at, f"{name}: value is NaN (no evidence)")
    if metric.max is not None and value > metric.max:
        return Reading(name, Verdict.FAILED, value, at, f"{name} {_fmt(value)} > max {_fmt(metric.max)}")
    if metric.min is not None and value < metric.min:
        return Reading(name, Verdict.FAILED, value, at, f"{name} {_fmt(value)} < min {_fmt(metric.min)}")
    bounds = " ".join(
        part for part in (
            f"<= {_fmt(metric.max)}" if metric.max is not None else "",
            f">= {_fmt(metric.min)}" if metric.min is not None else "",
        ) if part
    )
    if metric.max_increase is not None:
        return _against_baseline(metric, measurement, value, at, bounds)
    return Reading(name, Verdict.SUCCESSFUL, value, at, f"{name} {_fmt(value)} {bounds}")


def _against_baseline(metric: MetricSpec, measurement: Measurement, value: float, at: datetime,
                      bounds: str) -> Reading:
    """Canary versus baseline (as Kayenta judges): at most `maxIncrease` above the old version's value.

    Baseline instances that give no evidence make the reading Inconclusive; with none left to compare with
    (the last batch), maxIncrease does not apply and the absolute thresholds decide alone.
    """
    name, limit = metric.name, metric.max_increase
    assert limit is not None
    baseline = measurement.baseline
    if baseline is None or math.isnan(baseline):
        why = measurement.baseline_missing or ("baseline is NaN" if baseline is not None else None)
        if why is not None:
            return Reading(name, Verdict.INCONCLUSIVE, None, at, f"{name}: {why} (no evidence to compare with)")
        # Every instance is in this batch (the last one): earlier batches were compared; nothing is left to.
        return Reading(name, Verdict.SUCCESSFUL, value, at,
                       " ".join(p for p in (f"{name} {_fmt(value)}", bounds, "(no baseline instances left)") if p))
    allowed = baseline * (1 + limit) if baseline >= 0 else baseline * (1 - limit)
    relation = f"baseline {_fmt(baseline)} + {limit:.0%} = {_fmt(allowed)}"
    if value > allowed:
        return Reading(name, Verdict.FAILED, value, at, f"{name} {_fmt(value)} > {relation}")
    return Reading(name, Verdict.SUCCESSFUL, value, at,
                   " ".join(p for p in (f"{name} {_fmt(value)}", bounds, f"<= {relation}") if p))


def track(previous: MetricTrack, reading: Reading) -> MetricTrack:
    """Fold one reading into a metric's track: failures add up, errors and missing data run in streaks."""
    verdict = reading.verdict
    return MetricTrack(
        name=previous.name,
        last=reading,
        failures=previous.failures + (verdict is Verdict.FAILED),
        readings=previous.readings + 1,
        consecutive_errors=previous.consecutive_errors + 1 if verdict is Verdict.ERROR else 0,
        no_data_since=(previous.no_data_since or reading.at) if verdict is Verdict.INCONCLUSIVE else None,
        inconclusives=previous.inconclusives + (verdict is Verdict.INCONCLUSIVE),
    )
