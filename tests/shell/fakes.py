"""Fakes of the shell's ports: a record store in memory, drivers, a metrics source and notifiers that remember."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.fleet import RevisionFiles
from reconciler.core.model import Measurement, RolloutState
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, MetricSpec, Plugin


@dataclass(frozen=True)
class Commit:
    files: dict[str, str | None]
    message: str | Sequence[str]  # several lines: a tick's transitions
    trailers: list[tuple[str, str]]
    status: bool


@dataclass
class FakeStore:
    """A record store in memory: files by path, and the commits made, in order."""

    files: dict[str, str] = field(default_factory=dict)
    commits: list[Commit] = field(default_factory=list)

    def commit(self, files: Mapping[str, str | None], message: str | Sequence[str],
               trailers: Sequence[tuple[str, str]] = (), *, status: bool = False) -> str | None:
        if all(self.files.get(path) == text for path, text in files.items()):
            return None
        for path, text in files.items():
            if text is None:
                self.files.pop(path, None)
            else:
                self.files[path] = text
        self.commits.append(Commit(dict(files), message, list(trailers), status))
        return f"{len(self.commits):040x}"

    def read(self, path: str, rev: str = "HEAD") -> str | None:
        return self.files.get(path)

    def status_files(self) -> RevisionFiles:
        return RevisionFiles({p: t for p, t in self.files.items() if p.startswith("status/")})

    def report_paths(self) -> list[str]:
        return sorted(p for p in self.files if p.startswith("reports/"))


@dataclass
class FakeDriver:
    """Remembers what it was asked; every instance runs `version`, ready."""

    version: str | None = "1.0.0"
    applied: list[SetVersion] = field(default_factory=list)
    checked: list[tuple[str, CheckStage]] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        return {ref.id: InstanceObservation(self.version, True) for ref in instances}

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        self.applied.extend(changes)
        return {c.instance: self.errors[c.instance] for c in changes if c.instance in self.errors}

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        self.checked.append((instance.id, stage))
        return CheckResult(instance.id, stage, version, True)


@dataclass
class FakeMetrics:
    """A value per version; remembers each query as (version, instance ids)."""

    values: dict[str, float | None] = field(default_factory=dict)
    asked: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        self.asked.append((version, tuple(ref.id for ref in instances)))
        return Measurement(self.values.get(version))


@dataclass
class Heard:
    """A notifier and rollout watcher that remembers."""

    events: list[Event] = field(default_factory=list)
    observed: list[tuple[str, int]] = field(default_factory=list)

    def notify(self, event: Event) -> None:
        self.events.append(event)

    def observe(self, state: RolloutState, batches_total: int) -> None:
        self.observed.append((state.plugin, batches_total))

    def notes(self, state: RolloutState) -> Mapping[str, str]:
        return {}
