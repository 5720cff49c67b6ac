"""The ports: one small Protocol per concern, and the declaration an adapter module makes of itself.

Adding an adapter is one new file and one line in `registry` (README "Adding an adapter"): the module declares
`DriverAdapter`, `MetricsAdapter` or `NotifierAdapter` with its tag, its settings model (a subclass of the core's
`ClusterSpec`, `MetricsSettings` or `NotifierSettings`) and its builder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.model import Measurement, RolloutState
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ClusterSpec, MetricSpec, MetricsSettings, NotifierSettings, Plugin, Settings
from reconciler.core.strategy import (
    CleanupResult,
    Knobs,
    Operation,
    OperationResult,
    Preflight,
    RunSmoke,
    SmokeResult,
    StrategyObservation,
)


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


@runtime_checkable
class StrategyDriver(Protocol):
    """A cluster driver that also runs strategies (README "Strategies"): blue-green, traffic canaries, partition
    steps, smoke tests and cleanup, as the operations of `core.strategy`. The kubernetes driver is one."""

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion], knobs: Knobs | None = None) -> Mapping[str, str]:
        """`ClusterDriver.apply`, with the policy's RollingUpdate knobs (maxSurge, maxUnavailable, the first
        partition step) for the time of the change."""
        ...

    def observe_strategy(self, plugin: Plugin, instances: Sequence[InstanceRef]
                         ) -> Mapping[str, StrategyObservation]:
        """Where each instance stands (from caches); unreachable ones are reported, never raised."""
        ...

    def preflight(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, Preflight]:
        """What each instance lacks for the strategy, as readable lines."""
        ...

    def perform_all(self, plugin: Plugin, operations: Sequence[Operation]
                    ) -> Sequence[OperationResult | CleanupResult]:
        """Each operation on its instance, clusters in parallel; never raises."""
        ...

    def smoke(self, plugin: Plugin, request: RunSmoke) -> SmokeResult:
        """The smoke tests of one instance; blocks up to their timeouts; never raises."""
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


# --- what an adapter module declares --------------------------------------------------------------------------

T = TypeVar("T")
C = TypeVar("C", bound=ClusterSpec)
M = TypeVar("M", bound=MetricsSettings)
N = TypeVar("N", bound=NotifierSettings)


@dataclass(frozen=True)
class Context:
    """What a builder may use besides its own settings."""

    settings: Settings  # the whole of grayops.yaml (e.g. cluster tiers for a notifier's routing)
    workdir: Path
    clock: Clock
    env: Mapping[str, str]  # where secrets named in grayops.yaml are read
    metrics: MetricsSource | None = None  # for drivers: the metrics source, built before them
    _shared: dict[type[Any], object] = field(default_factory=dict)

    def shared(self, kind: type[T], make: Callable[[], T]) -> T:
        """One object of `kind` for the adapters built together (e.g. the sim fleet is driver and metrics)."""
        found = self._shared.get(kind)
        if not isinstance(found, kind):
            found = self._shared[kind] = make()
        return found

    def find(self, kind: type[T]) -> T | None:
        found = self._shared.get(kind)
        return found if isinstance(found, kind) else None


@dataclass(frozen=True)
class DriverAdapter(Generic[C]):
    """Clusters with `driver: <tag>`, validated by `settings`, driven by what `build` makes of all of them."""

    tag: str
    settings: type[C]
    build: Callable[[Sequence[C], Context], ClusterDriver]


@dataclass(frozen=True)
class MetricsAdapter(Generic[M]):
    """`metrics: {provider: <tag>}`, validated by `settings`, read through what `build` makes of it."""

    tag: str
    settings: type[M]
    build: Callable[[M, Context], MetricsSource]


@dataclass(frozen=True)
class NotifierAdapter(Generic[N]):
    """A `notifiers` entry with `type: <tag>`, validated by `settings`; `build` returns None to leave it out (a
    missing secret, said in one log line)."""

    tag: str
    settings: type[N]
    build: Callable[[N, Context], Notifier | None]


Adapter = DriverAdapter[Any] | MetricsAdapter[Any] | NotifierAdapter[Any]
