"""Stand-ins for a driver or provider that cannot be used: every instance unknown, every query an error.

They keep the reconciler running (and the rollout waiting, with the reason in its status) instead of crashing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.core.effects import CheckResult, CheckStage, InstanceObservation, SetVersion
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, MetricSpec, Plugin


class UnavailableDriver:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        return {ref.id: InstanceObservation(None, False, reachable=False, message=self.reason) for ref in instances}

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        return {change.instance: self.reason for change in changes}

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        return CheckResult(instance.id, stage, version, False, self.reason)


class UnavailableMetrics:
    def __init__(self, reason: str) -> None:
        self.reason = reason

    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        return Measurement(None, error=self.reason)
