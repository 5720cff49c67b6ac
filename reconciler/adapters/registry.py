"""The adapters grayops knows, by section and tag, and the runtime built from grayops.yaml with them.

Adding a cluster driver, a metrics provider or a notifier is one new module that declares itself (its tag, its
settings model and its builder: see `ports`) and one line in `ADAPTERS` (README "Adding an adapter"). The
registry gives the core the settings models (`models`) to validate grayops.yaml and generate the schema with, and
builds the adapters a valid revision names. The Slack notifier lives in `bot/` and is added by the program's
wiring (`reconciler.cli.wiring.full_registry`), so nothing here depends on the bot.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from reconciler.adapters.notify.fanout import FanOut
from reconciler.adapters.notify.log import LogNotifier
from reconciler.adapters.ports import (
    Adapter,
    Clock,
    Closable,
    ClusterDriver,
    Context,
    DriverAdapter,
    MetricsAdapter,
    MetricsSource,
    Notifier,
    NotifierAdapter,
    RolloutWatcher,
)
from reconciler.adapters.sim import SimFleet
from reconciler.adapters.unavailable import UnavailableDriver, UnavailableMetrics
from reconciler.core.spec import AdapterModels, Settings, Strict, check_adapter_model

log = logging.getLogger(__name__)

# One line per adapter: "<module>:<its declaration>".
ADAPTERS = (
    "reconciler.adapters.sim:DRIVER",
    "reconciler.adapters.kube:DRIVER",
    "reconciler.adapters.sim:METRICS",
    "reconciler.adapters.prometheus:PROVIDER",
    "reconciler.adapters.web:PROVIDER",
    "reconciler.adapters.notify.log:NOTIFIER",
    "reconciler.adapters.notify.webhook:NOTIFIER",
    "reconciler.adapters.notify.pagerduty:NOTIFIER",
)


@dataclass
class Runtime:
    """The adapters in force for one revision of grayops.yaml."""

    drivers: Mapping[str, ClusterDriver]  # driver tag -> driver
    metrics: MetricsSource
    notifier: Notifier
    sim: SimFleet | None = None
    cluster_driver: Mapping[str, str] = field(default_factory=dict)  # cluster name -> driver tag
    watchers: Sequence[RolloutWatcher] = ()
    closers: Sequence[Callable[[], None]] = ()
    notifiers: Sequence[Notifier] = ()  # what `notifier` fans out to
    named: Mapping[str, Notifier] = field(default_factory=dict)  # by the name escalation levels give (README
    # "Owners and escalation"): a notifier's `name`, else its type

    def close(self) -> None:
        """Stop what the adapters run in the background (informers, Slack senders) when a new runtime replaces
        this one."""
        for close in self.closers:
            close()


@dataclass(frozen=True)
class Registry:
    """Adapters by section and tag. Immutable: `with_` gives a registry with more."""

    drivers: Mapping[str, DriverAdapter[Any]] = field(default_factory=dict)
    metrics: Mapping[str, MetricsAdapter[Any]] = field(default_factory=dict)
    notifiers: Mapping[str, NotifierAdapter[Any]] = field(default_factory=dict)

    def with_(self, *adapters: Adapter) -> Registry:
        """This registry and `adapters`; a tag already taken in its section is an error."""
        drivers, metrics, notifiers = dict(self.drivers), dict(self.metrics), dict(self.notifiers)
        for adapter in adapters:
            if isinstance(adapter, DriverAdapter):
                _add(drivers, adapter, "clusters", "cluster driver")
            elif isinstance(adapter, MetricsAdapter):
                _add(metrics, adapter, "metrics", "metrics provider")
            else:
                _add(notifiers, adapter, "notifiers", "notifier type")
        return Registry(drivers, metrics, notifiers)

    @property
    def models(self) -> AdapterModels:
        """The settings models by section and tag, for `load_fleet` and the schema."""
        return {"clusters": _models(self.drivers), "metrics": _models(self.metrics),
                "notifiers": _models(self.notifiers)}

    def build_runtime(self, settings: Settings, workdir: Path, clock: Clock,
                      env: Mapping[str, str] | None = None) -> Runtime:
        """The adapters grayops.yaml names: the metrics source first (drivers may ask it), then one driver per
        tag with its clusters, then the notifiers after the log notifier (always on)."""
        context = Context(settings, workdir, clock, os.environ if env is None else env)
        metrics = self._metrics(settings, context)
        context = replace(context, metrics=metrics)
        drivers = {tag: self._driver(tag, settings, context)
                   for tag in dict.fromkeys(c.driver for c in settings.clusters)}
        named = dict(self._notifiers(settings, context))
        notifiers: list[Notifier] = [LogNotifier(), *named.values()]
        closers = [adapter.close for adapter in (*drivers.values(), *notifiers) if isinstance(adapter, Closable)]
        return Runtime(drivers, metrics, FanOut(notifiers), context.find(SimFleet),
                       {c.name: c.driver for c in settings.clusters},
                       [n for n in notifiers if isinstance(n, RolloutWatcher)], closers, notifiers, named)

    def _metrics(self, settings: Settings, context: Context) -> MetricsSource:
        adapter = self.metrics.get(settings.metrics.provider)
        if adapter is None:
            return UnavailableMetrics(f"no {settings.metrics.provider} metrics provider in this grayops")
        return adapter.build(_as(adapter.settings, settings.metrics), context)

    def _driver(self, tag: str, settings: Settings, context: Context) -> ClusterDriver:
        adapter = self.drivers.get(tag)
        if adapter is None:
            return UnavailableDriver(f"no {tag} cluster driver in this grayops")
        return adapter.build([_as(adapter.settings, c) for c in settings.clusters if c.driver == tag], context)

    def _notifiers(self, settings: Settings, context: Context) -> Iterable[tuple[str, Notifier]]:
        taken: set[str] = set()
        for index, entry in enumerate(settings.notifiers):
            adapter = self.notifiers.get(entry.type)
            if adapter is None:
                log.warning("no %s notifier in this grayops; its entry in grayops.yaml is left out", entry.type)
                continue
            built = adapter.build(_as(adapter.settings, entry), context)
            if built is not None:  # names repeat only where no escalation names them: keep every notifier
                yield (entry.target if entry.target not in taken else f"{entry.target}#{index}"), built
                taken.add(entry.target)


A = TypeVar("A", DriverAdapter[Any], MetricsAdapter[Any], NotifierAdapter[Any])


def _add(section: dict[str, A], adapter: A, name: str, what: str) -> None:
    if adapter.tag in section:
        raise ValueError(f"{what} {adapter.tag!r} is registered twice")
    check_adapter_model(name, adapter.tag, adapter.settings)
    section[adapter.tag] = adapter


def default_registry() -> Registry:
    """Every adapter of this package (`ADAPTERS`)."""
    return Registry().with_(*(_declaration(ref) for ref in ADAPTERS))


def _declaration(ref: str) -> Adapter:
    module, _, name = ref.partition(":")
    found = getattr(importlib.import_module(module), name)
    if not isinstance(found, DriverAdapter | MetricsAdapter | NotifierAdapter):
        raise TypeError(f"{ref} is not a DriverAdapter, MetricsAdapter or NotifierAdapter")
    return found


def _models(adapters: Mapping[str, DriverAdapter[Any] | MetricsAdapter[Any] | NotifierAdapter[Any]]
            ) -> Mapping[str, type[Strict]]:
    return {tag: adapter.settings for tag, adapter in adapters.items()}


def _as(model: type[Strict], value: Strict) -> Any:
    """`value` as its adapter's model (settings built in code from the section's base are validated again)."""
    return value if isinstance(value, model) else model.model_validate(value.model_dump())
