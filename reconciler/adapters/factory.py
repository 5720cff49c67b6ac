"""Picks the adapters that grayops.yaml names: cluster drivers, the metrics source, the notifiers.

Adding a provider is one new module and one line here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.adapters.notify import FanOut, LogNotifier
from reconciler.adapters.ports import Clock, ClusterDriver, MetricsSource, Notifier
from reconciler.adapters.sim import SimFleet, SimMetrics
from reconciler.adapters.unavailable import UnavailableDriver, UnavailableMetrics
from reconciler.core.spec import Settings


@dataclass
class Runtime:
    """The adapters in force for one revision of grayops.yaml."""

    drivers: Mapping[str, ClusterDriver]  # driver kind -> driver
    metrics: MetricsSource
    notifier: Notifier
    sim: SimFleet | None = None
    cluster_driver: Mapping[str, str] = field(default_factory=dict)  # cluster name -> driver kind


def build_runtime(settings: Settings, workdir: Path, clock: Clock, extra_notifiers: Sequence[Notifier] = ()) -> Runtime:
    kinds = {cluster.driver for cluster in settings.clusters}
    drivers: dict[str, ClusterDriver] = {}
    sim: SimFleet | None = None
    sim_clusters = [c for c in settings.clusters if c.driver == "sim"]
    if "sim" in kinds or settings.metrics.provider == "sim":
        sim = SimFleet(workdir, settings.sim, sim_clusters, clock)
        drivers["sim"] = sim
    if "kubernetes" in kinds:
        drivers["kubernetes"] = UnavailableDriver("the kubernetes driver is not part of this grayops version yet")
    metrics: MetricsSource
    if settings.metrics.provider == "sim":
        assert sim is not None
        metrics = SimMetrics(sim, settings.sim, clock)
    else:
        provider = settings.metrics.provider
        metrics = UnavailableMetrics(f"the {provider} metrics provider is not part of this grayops version yet")
    notifiers: list[object] = [LogNotifier(), *extra_notifiers]
    return Runtime(drivers, metrics, FanOut(notifiers), sim, {c.name: c.driver for c in settings.clusters})
