"""The simulated fleet: a cluster driver (`SimFleet`) and a metrics source (`SimMetrics`), no cluster behind.

Owns: the sim fleet's state (per plugin and instance: the version its spec asks for, the one before, and when
the change started), its persistence in `<workdir>/sim-fleet.json` so a restarted reconciler sees the fleet as
it was, and the one place where `SimSettings.faults` are matched to an instance (`SimFleet.health`, also read
by the Prometheus exporter in `sim_exporter`). Time comes only from the injected `Clock`.

Must not: make rollout decisions, raise from `observe`, `check` or `measure`, or read the state file after the
constructor (the reconciler observes thousands of instances per tick; state lives in a plain dict).
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from reconciler.adapters.ports import Clock, Context, DriverAdapter, MetricsAdapter
from reconciler.core.effects import CheckResult, CheckStage, InstanceObservation, SetVersion
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import (
    Check,
    ClusterSpec,
    ExecCheck,
    HttpCheck,
    MetricSpec,
    MetricsSettings,
    Plugin,
    SimFault,
    SimSettings,
)

STATE_FILE = "sim-fleet.json"
STATE_FORMAT = 1

# What a healthy sim instance reports: a small error rate and a p99 latency, each with per-second noise.
HEALTHY_ERROR_RATE = (0.001, 0.004)
HEALTHY_LATENCY_P99_MS = (100.0, 140.0)
STEADY_ERROR_RATE = sum(HEALTHY_ERROR_RATE) / 2
STEADY_LATENCY_P99_MS = sum(HEALTHY_LATENCY_P99_MS) / 2

METRIC_NAMES = ("error_rate", "latency_p99_ms")

NOT_INSTALLED = InstanceObservation(version=None, ready=False)


@dataclass(frozen=True)
class InstanceHealth:
    """What a ready sim instance reports right now; `silent` ones export no metrics at all."""

    version: str
    error_rate: float  # with per-second noise when healthy; exact when a fault sets it
    latency_p99_ms: float
    silent: bool
    ready_since: float  # epoch seconds at which it became ready; the exporter's counters grow from here
    # Noise-free values, so counters derived from them only ever grow at a constant rate.
    steady_error_rate: float
    steady_latency_p99_ms: float


@dataclass(frozen=True)
class _FaultEffect:
    """The faults matching one cluster and version, merged: the first to set a value wins, flags add up."""

    error_rate: float | None = None
    latency_p99_ms: float | None = None
    fail_readiness: bool = False
    fail_checks: bool = False
    no_metrics: bool = False


NO_FAULT = _FaultEffect()


class _Entry(NamedTuple):
    target: str
    previous: str | None
    started: float  # epoch seconds


def _selector_matches(fault: SimFault, labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in fault.selector.items())


def _merge(faults: Sequence[SimFault]) -> _FaultEffect:
    return _FaultEffect(
        error_rate=next((f.error_rate for f in faults if f.error_rate is not None), None),
        latency_p99_ms=next((f.latency_p99_ms for f in faults if f.latency_p99_ms is not None), None),
        fail_readiness=any(f.fail_readiness for f in faults),
        fail_checks=any(f.fail_checks for f in faults),
        no_metrics=any(f.no_metrics for f in faults),
    )


def _noise(key: str) -> tuple[float, float]:
    """Two numbers in [0, 1) from `key`: deterministic across processes (unlike hash()) and 10x cheaper than
    seeding a random.Random, which matters when 10,000 instances are measured or scraped."""
    bits = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest())
    return (bits >> 32) / 2**32, (bits & 0xFFFFFFFF) / 2**32


def _between(bounds: tuple[float, float], share: float) -> float:
    return bounds[0] + (bounds[1] - bounds[0]) * share


def _unknown_cluster(cluster: str) -> str:
    return f"cluster {cluster!r} is not in the sim inventory"


def _describe(check: Check) -> str:
    if isinstance(check, HttpCheck):
        return f"http {check.url or check.path} answered {check.status}"
    if isinstance(check, ExecCheck):
        answer = f" answered {check.expect!r}" if check.expect is not None else " exited 0"
        return f"exec `{' '.join(check.command)}`{answer}"
    return f"metric {check.name} within bounds"


def _failing(check: Check) -> str:
    if isinstance(check, HttpCheck):
        return f"http {check.url or check.path} answered 500, expected {check.status}"
    if isinstance(check, ExecCheck):
        expected = f", expected {check.expect!r}" if check.expect is not None else ""
        return f"exec `{' '.join(check.command)}` exited 1{expected}"
    return f"metric {check.name} out of bounds"


class SimFleet:
    """A fleet of simulated plugin instances that upgrade in `upgrade_seconds` and misbehave as faults say.

    Implements `ClusterDriver`. Thread-safe: the exporter's thread reads while the reconciler's applies.
    """

    def __init__(self, workdir: Path, settings: SimSettings, clusters: Sequence[ClusterSpec],
                 clock: Clock) -> None:
        self.clock = clock
        self.settings = settings
        self._path = Path(workdir) / STATE_FILE
        self._lock = threading.Lock()
        self._labels: dict[str, dict[str, str]] = {c.name: dict(c.labels) for c in clusters}
        # cluster -> version -> merged faults, computed once: observing 10,000 instances is one lookup each.
        self._faults: dict[str, dict[str, _FaultEffect]] = {}
        for name, labels in self._labels.items():
            matching = [f for f in settings.faults if _selector_matches(f, labels)]
            versions = dict.fromkeys(f.version for f in matching)
            self._faults[name] = {v: _merge([f for f in matching if f.version == v]) for v in versions}
        self._state: dict[str, dict[str, _Entry]] = self._load()
        # The state file's plugins as last written, in its order (names sorted) and encoded: a change rewrites the
        # file but encodes only the plugin it changed (10,000 plugins apply one after the other, README "Sizing").
        self._names: list[str] | None = None  # None: not encoded yet
        self._encoded: list[str] = []

    # --- ClusterDriver ------------------------------------------------------------------------------------

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        now = self.clock.now().timestamp()
        upgrade = self.settings.upgrade_seconds
        result: dict[str, InstanceObservation] = {}
        # Observations are frozen values, so equal ones are shared rather than built 10,000 times.
        shared: dict[tuple[str | None, str, bool, bool], InstanceObservation] = {}
        with self._lock:
            entries = self._state.get(plugin.metadata.name, {})
            for ref in instances:
                iid = ref.id
                faults = self._faults.get(ref.cluster)
                if faults is None:
                    result[iid] = InstanceObservation(
                        None, False, reachable=False, message=_unknown_cluster(ref.cluster))
                    continue
                entry = entries.get(iid)
                if entry is None:
                    result[iid] = NOT_INSTALLED
                    continue
                upgrading = now - entry.started < upgrade
                failing = not upgrading and faults.get(entry.target, NO_FAULT).fail_readiness
                key = (entry.previous if upgrading else None, entry.target, upgrading, failing)
                obs = shared.get(key)
                if obs is None:
                    obs = shared[key] = self._observation(entry, upgrading, failing)
                result[iid] = obs
        return result

    @staticmethod
    def _observation(entry: _Entry, upgrading: bool, failing: bool) -> InstanceObservation:
        if upgrading:
            return InstanceObservation(
                entry.target, False, message=f"upgrading from {entry.previous} to {entry.target}")
        if failing:
            return InstanceObservation(
                entry.target, False, failed=f"readiness probe failed (sim fault for {entry.target})")
        return InstanceObservation(entry.target, True)

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        name = plugin.metadata.name
        errors: dict[str, str] = {}
        now = self.clock.now().timestamp()
        with self._lock:
            entries = self._state.setdefault(name, {})
            undo: dict[str, _Entry | None] = {}
            for change in changes:
                cluster = change.instance.partition("/")[0]
                if cluster not in self._labels:
                    errors[change.instance] = _unknown_cluster(cluster)
                    continue
                old = entries.get(change.instance)
                if old is not None and old.target == change.version:
                    continue  # already asked for: keep the original start time
                undo.setdefault(change.instance, old)
                entries[change.instance] = _Entry(change.version, old.target if old else None, now)
            if undo:
                self._encode(name)
                try:
                    self._save()
                except OSError as exc:
                    # Not persisted means not made: put memory back so it matches the file.
                    for iid, old in undo.items():
                        if old is None:
                            entries.pop(iid, None)
                        else:
                            entries[iid] = old
                    errors.update({iid: f"could not save sim fleet state: {exc}" for iid in undo})
            if not entries:
                self._state.pop(name, None)
            if undo:
                self._encode(name)  # as it stands now, saved or put back
        return errors

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        def result(ok: bool, message: str) -> CheckResult:
            return CheckResult(instance.id, stage, version, ok, message)

        faults = self._faults.get(instance.cluster)
        if faults is None:
            return result(False, _unknown_cluster(instance.cluster))
        now = self.clock.now().timestamp()
        with self._lock:
            entry = self._state.get(plugin.metadata.name, {}).get(instance.id)
        running = entry.target if entry else None
        if stage == "pre" and running is None:
            return result(True, "sim: not installed yet, nothing to check")
        # Pre-checks look at the instance as it runs now (before it is changed); verify checks at `version`.
        if stage == "verify" and running != version:
            return result(False, f"sim: instance runs {running or 'nothing'}, not {version}")
        assert entry is not None
        fault = faults.get(entry.target, NO_FAULT)
        if now - entry.started < self.settings.upgrade_seconds:
            return result(False, f"sim: not ready yet (upgrading from {entry.previous} to {entry.target})")
        if fault.fail_readiness:
            return result(False, f"sim: not ready: readiness probe failed (sim fault for {entry.target})")
        if fault.fail_checks:
            first = _failing(checks[0]) if checks else "health check failed"
            return result(False, f"sim: {first} (sim fault for {entry.target})")
        if not checks:
            return result(True, f"sim: ready on {entry.target}, no checks")
        passed = "; ".join(_describe(c) for c in checks)
        return result(True, f"sim: {len(checks)} check(s) passed on {entry.target}: {passed}")

    # --- reading the fleet ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, str | None]]:
        """Plugin -> instance id -> the version it runs (or is upgrading to)."""
        with self._lock:
            return {name: {iid: e.target for iid, e in entries.items()}
                    for name, entries in self._state.items()}

    def versions(self, plugin_name: str) -> dict[str, str | None]:
        with self._lock:
            return {iid: e.target for iid, e in self._state.get(plugin_name, {}).items()}

    def health(self, plugin_name: str, instance_id: str, now: float | None = None) -> InstanceHealth | None:
        """What a ready instance reports at `now` (default: the clock); None when it is not ready."""
        with self._lock:
            entry = self._state.get(plugin_name, {}).get(instance_id)
        if entry is None:
            return None
        when = self.clock.now().timestamp() if now is None else now
        return self._health(plugin_name, instance_id, entry, when)

    def health_all(self, now: float | None = None) -> list[tuple[str, str, InstanceHealth]]:
        """(plugin, instance id, health) of every ready instance, sorted: what the exporter serves."""
        when = self.clock.now().timestamp() if now is None else now
        with self._lock:
            items = [(name, iid, e) for name, entries in self._state.items() for iid, e in entries.items()]
        found = []
        for name, iid, entry in sorted(items):
            health = self._health(name, iid, entry, when)
            if health is not None:
                found.append((name, iid, health))
        return found

    def _health(self, plugin_name: str, instance_id: str, entry: _Entry, now: float) -> InstanceHealth | None:
        faults = self._faults.get(instance_id.partition("/")[0])
        if faults is None:
            return None
        ready_since = entry.started + self.settings.upgrade_seconds
        fault = faults.get(entry.target, NO_FAULT)
        if now < ready_since or fault.fail_readiness:
            return None
        noise = _noise(f"{plugin_name}/{instance_id}/{entry.target}/{int(now)}")
        noisy_error = _between(HEALTHY_ERROR_RATE, noise[0])
        noisy_latency = _between(HEALTHY_LATENCY_P99_MS, noise[1])
        return InstanceHealth(
            version=entry.target,
            error_rate=fault.error_rate if fault.error_rate is not None else noisy_error,
            latency_p99_ms=fault.latency_p99_ms if fault.latency_p99_ms is not None else noisy_latency,
            silent=fault.no_metrics,
            ready_since=ready_since,
            steady_error_rate=fault.error_rate if fault.error_rate is not None else STEADY_ERROR_RATE,
            steady_latency_p99_ms=(
                fault.latency_p99_ms if fault.latency_p99_ms is not None else STEADY_LATENCY_P99_MS),
        )

    # --- persistence ----------------------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, _Entry]]:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError):
            self._set_aside()
            return {}
        try:
            return _parse(json.loads(text))
        except (ValueError, TypeError, KeyError):
            self._set_aside()
            return {}

    def _set_aside(self) -> None:
        # Keep the unreadable file for a human to look at; the next apply overwrites the original.
        with contextlib.suppress(OSError):
            shutil.copyfile(self._path, self._path.with_name(STATE_FILE + ".corrupt"))

    def _save(self) -> None:
        """Write the whole state (what `json.dumps(..., sort_keys=True)` of it writes), atomically."""
        text = f'{{"format":{STATE_FORMAT},"plugins":{{{",".join(self._encoded)}}}}}'
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{STATE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        # No fsync: the file must survive a killed reconciler (os.replace is atomic), not a power cut.
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self._path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise

    def _encode(self, name: str) -> None:
        """Put the plugin's part of the state file, as memory holds it now, in its place (or take it out)."""
        if self._names is None:  # the first change: every plugin read from the file, encoded once
            self._names = sorted(self._state)
            self._encoded = [f"{json.dumps(other)}:{self._entries_json(other)}" for other in self._names]
        index = bisect.bisect_left(self._names, name)
        present = index < len(self._names) and self._names[index] == name
        entries = self._state.get(name)
        if not entries:
            if present:
                del self._names[index], self._encoded[index]
            return
        encoded = f"{json.dumps(name)}:{self._entries_json(name)}"
        if present:
            self._encoded[index] = encoded
        else:
            self._names.insert(index, name)
            self._encoded.insert(index, encoded)

    def _entries_json(self, name: str) -> str:
        return json.dumps({iid: {"target": e.target, "previous": e.previous, "started": e.started}
                           for iid, e in self._state[name].items()}, separators=(",", ":"), sort_keys=True)


def _parse(doc: Any) -> dict[str, dict[str, _Entry]]:
    """The state file's content; raises ValueError, TypeError or KeyError when it is not one."""
    if not (isinstance(doc, dict) and doc.get("format") == STATE_FORMAT and isinstance(doc.get("plugins"), dict)):
        raise ValueError("not a sim fleet state document")
    state: dict[str, dict[str, _Entry]] = {}
    for name, entries in doc["plugins"].items():
        if not isinstance(entries, dict):
            raise ValueError(f"plugin {name!r}: not a mapping")
        parsed: dict[str, _Entry] = {}
        for iid, item in entries.items():
            target, previous, started = item["target"], item["previous"], item["started"]
            if not isinstance(target, str) or not (previous is None or isinstance(previous, str)):
                raise ValueError(f"{name} {iid}: bad version")
            if isinstance(started, bool) or not isinstance(started, int | float):
                raise ValueError(f"{name} {iid}: bad start time")
            parsed[iid] = _Entry(target, previous, float(started))
        if parsed:
            state[name] = parsed
    return state


class SimMetrics:
    """Implements `MetricsSource` over a `SimFleet`: the worst instance's value, never an exception.

    Fault matching is the fleet's (`SimFleet.health`); `settings` is kept for symmetry with the other providers.
    """

    def __init__(self, fleet: SimFleet, settings: SimSettings, clock: Clock) -> None:
        self.fleet = fleet
        self.settings = settings
        self.clock = clock

    def measure(self, plugin: Plugin, version: str, metric: MetricSpec, instances: Sequence[InstanceRef],
                window_seconds: float) -> Measurement:
        # The sim's values are instantaneous, so the window does not matter.
        try:
            if metric.name not in METRIC_NAMES:
                return Measurement(value=None, series=0)
            now = self.clock.now().timestamp()
            values: list[float] = []
            for ref in instances:
                health = self.fleet.health(plugin.metadata.name, ref.id, now)
                if health is None or health.version != version or health.silent:
                    continue
                values.append(health.error_rate if metric.name == "error_rate" else health.latency_p99_ms)
            if not values:
                return Measurement(value=None, series=0)
            return Measurement(value=max(values), series=len(values))
        except Exception as exc:  # a metrics source never raises: a failure is a reading with an error
            return Measurement(value=None, error=f"sim metrics failed: {exc}")


# --- the sim driver and provider, as grayops.yaml names them ---------------------------------------------------


class SimCluster(ClusterSpec):
    """`driver: sim` (the default): a simulated cluster; what goes wrong on it is grayops.yaml's `sim.faults`."""

    driver: Literal["sim"] = "sim"


class SimMetricsSettings(MetricsSettings):
    """`provider: sim` (the default): the simulated fleet's own error rate and p99 latency."""

    provider: Literal["sim"] = "sim"

    def missing_query(self, metric: MetricSpec) -> str | None:
        if metric.name in METRIC_NAMES:
            return None
        # any other name would never have data, and every bake would wait for it
        return f"the sim provider measures {' and '.join(METRIC_NAMES)} only, not {metric.name!r}"


def _fleet(context: Context) -> SimFleet:
    """The one simulated fleet: the driver of the sim clusters and the source of the sim metrics."""
    settings = context.settings
    return context.shared(SimFleet, lambda: SimFleet(context.workdir, settings.sim,
                                                     [c for c in settings.clusters if c.driver == "sim"],
                                                     context.clock))


def _driver(clusters: Sequence[SimCluster], context: Context) -> SimFleet:
    return _fleet(context)


def _metrics(settings: SimMetricsSettings, context: Context) -> SimMetrics:
    return SimMetrics(_fleet(context), context.settings.sim, context.clock)


DRIVER = DriverAdapter("sim", SimCluster, _driver)
METRICS = MetricsAdapter("sim", SimMetricsSettings, _metrics)
