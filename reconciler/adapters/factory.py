"""Picks the adapters that grayops.yaml names: cluster drivers, the metrics source, the notifiers.

Adding a provider is one new module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.adapters.notify.fanout import FanOut
from reconciler.adapters.notify.log import LogNotifier
from reconciler.adapters.ports import Clock, Closable, ClusterDriver, MetricsSource, Notifier, RolloutWatcher
from reconciler.adapters.sim import SimFleet, SimMetrics
from reconciler.adapters.unavailable import UnavailableMetrics
from reconciler.core.spec import Settings


@dataclass
class Runtime:
    """The adapters in force for one revision of grayops.yaml."""

    drivers: Mapping[str, ClusterDriver]  # driver kind -> driver
    metrics: MetricsSource
    notifier: Notifier
    sim: SimFleet | None = None
    cluster_driver: Mapping[str, str] = field(default_factory=dict)  # cluster name -> driver kind
    watchers: Sequence[RolloutWatcher] = ()
    closers: Sequence[Callable[[], None]] = ()

    def close(self) -> None:
        """Stop what the adapters run in the background (informers, Slack senders) when a new runtime replaces
        this one."""
        for close in self.closers:
            close()


NotifierBuilder = Callable[[Settings], Sequence[Notifier]]
"""Notifiers from grayops.yaml's `notifiers` (Slack, webhook), given by the program that wires grayops together:
`grayops run` passes the bot's builder, so this package does not depend on the bot."""


def build_runtime(settings: Settings, workdir: Path, clock: Clock,
                  notifier_builders: Sequence[NotifierBuilder] = ()) -> Runtime:
    kinds = {cluster.driver for cluster in settings.clusters}
    drivers: dict[str, ClusterDriver] = {}
    sim: SimFleet | None = None
    sim_clusters = [c for c in settings.clusters if c.driver == "sim"]
    if "sim" in kinds or settings.metrics.provider == "sim":
        sim = SimFleet(workdir, settings.sim, sim_clusters, clock)
        drivers["sim"] = sim
    metrics: MetricsSource
    if settings.metrics.provider == "sim":
        assert sim is not None
        metrics = SimMetrics(sim, settings.sim, clock)
    elif settings.metrics.provider == "prometheus":
        from reconciler.adapters.prometheus import PrometheusMetrics

        metrics = PrometheusMetrics(settings.metrics)
    else:
        provider = settings.metrics.provider
        metrics = UnavailableMetrics(f"the {provider} metrics provider is not part of this grayops version yet")
    if "kubernetes" in kinds:
        from reconciler.adapters.kube.driver import KubernetesDriver

        drivers["kubernetes"] = KubernetesDriver([c for c in settings.clusters if c.driver == "kubernetes"], metrics)
    notifiers: list[Notifier] = [LogNotifier(), *(n for build in notifier_builders for n in build(settings))]
    watchers = [n for n in notifiers if isinstance(n, RolloutWatcher)]
    closers = [adapter.close for adapter in (*drivers.values(), *notifiers) if isinstance(adapter, Closable)]
    return Runtime(drivers, metrics, FanOut(notifiers), sim, {c.name: c.driver for c in settings.clusters},
                   watchers, closers)
