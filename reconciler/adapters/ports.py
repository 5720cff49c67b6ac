"""The ports: one small Protocol per concern. Adding a provider is one new file and one line in a factory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol

from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, MetricSpec, Plugin


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ClusterDriver(Protocol):
    """Reads and changes plugin instances on the clusters of one driver kind."""

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        """What each instance runs and whether it is ready; unreachable ones are reported, never raised."""
        ...

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        """Start each change; returns instance id -> error message for the changes that could not be made."""
        ...

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        """Run checks on one instance; a check that cannot run is a failed result, never an exception."""
        ...


class MetricsSource(Protocol):
    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        """One value for the metric over the instances; no data is value None; never raises."""
        ...


class Notifier(Protocol):
    def notify(self, event: Event) -> None:
        """Deliver or queue; must not block the reconciler for long, and must not raise."""
        ...

