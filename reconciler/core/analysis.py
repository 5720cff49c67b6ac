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
    return Reading(name, Verdict.SUCCESSFUL, value, at, f"{name} {_fmt(value)} {bounds}")


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
    )
