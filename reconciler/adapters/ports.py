"""The ports: one small Protocol per concern. Adding an adapter is one new file and one line in `registry`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.model import Measurement, RolloutState
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



@runtime_checkable
class RolloutWatcher(Protocol):
    """A notifier that shows whole rollouts (the Slack message per rollout), not only events."""

    def observe(self, state: RolloutState, batches_total: int) -> None:
        """The rollout's state after a transition or alert; must only queue, never block."""
        ...

    def notes(self, state: RolloutState) -> Mapping[str, str]:
        """The rollout's notes to keep in its status file (e.g. the Slack message's ts)."""
        ...


@runtime_checkable
class Closable(Protocol):
    """An adapter that runs something in the background (informers, a sender thread) to stop when replaced."""

    def close(self) -> None: ...
