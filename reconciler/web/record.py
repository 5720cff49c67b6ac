"""The web view's read model: the fleet's record as the pages show it, and the port it comes through.

A `Record` is one immutable reading of the record: the revision in force (its clusters, plugins and policies), each
rollout's status, the finished rollouts (from the reports' front matter), each plugin's timeline (the commits
that touched its files, with their trailers) and the metric readings the view has seen. Pages render a Record
and never read git themselves, so a page is never held up by a slow remote.

A `RecordSource` hands out the newest Record and tells its listeners when there is a newer one. Two exist:
`GitRecordSource` (web/gitsource.py: a clone it keeps fresh, for `grayops dashboard`) and `MemoryRecordSource`
(here: a record published by its owner; the tests' source, and the one `grayops run` feeds with its in-process
states when it serves the view, see README "Web view").
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol

from reconciler.core.effects import Change
from reconciler.core.fleet import Fleet
from reconciler.core.model import Phase, RolloutState, Verdict, parse_time
from reconciler.core.report import read_outcome

log = logging.getLogger(__name__)

Listener = Callable[["Record"], None]
SeriesKey = tuple[str, str, str, str]  # plugin, rollout id, batch, metric


@dataclass(frozen=True)
class Point:
    """One metric reading as the view saw it (a status file keeps only the last reading of each metric)."""

    at: datetime
    value: float | None
    verdict: Verdict
    message: str = ""


@dataclass(frozen=True)
class Commit:
    """One commit of a plugin's timeline: which transition or command, who asked and why (from its trailers)."""

    commit: str
    at: datetime | None
    action: str | None
    batch: str | None
    rollout: str | None
    by: str | None
    why: str | None

    @classmethod
    def of(cls, change: Change) -> Commit:
        return cls(change.commit, change.at, change.action, change.trailer("Grayops-Batch"),
                   change.trailer("Grayops-Rollout"), change.by, change.reason)


@dataclass(frozen=True)
class Finished:
    """One finished rollout, as its report records it."""

    path: str
    plugin: str
    version: str
    rollout_id: str
    result: Phase
    started: datetime | None
    finished: datetime | None
    instances: Mapping[str, int]

    @property
    def seconds(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return (self.finished - self.started).total_seconds()


@dataclass(frozen=True)
class Record:
    """What the view shows, as of one reading. `revision` changes whenever anything in it does."""

    revision: str
    fleet: Fleet | None = None  # the newest valid revision read (None before any)
    refused: tuple[str, ...] = ()  # the errors of HEAD when it is refused (the last valid fleet stays)
    states: Mapping[str, RolloutState] = field(default_factory=dict)
    unreadable: Mapping[str, str] = field(default_factory=dict)  # plugin -> what is wrong, naming the file
    finished: Mapping[str, tuple[Finished, ...]] = field(default_factory=dict)  # plugin -> newest first
    timelines: Mapping[str, tuple[Commit, ...]] = field(default_factory=dict)  # plugin -> newest first
    readings: Mapping[SeriesKey, tuple[Point, ...]] = field(default_factory=dict)
    head: str | None = None  # the commit read
    read_at: datetime | None = None
    source: str = ""  # what is read, for the page footer
    problem: str | None = None  # why the record may be stale (e.g. the remote cannot be fetched)

    def plugins(self) -> list[str]:
        """Every plugin the fleet names or the record knows, sorted."""
        names = set(self.states) | set(self.unreadable) | set(self.finished)
        if self.fleet is not None:
            names |= set(self.fleet.plugins)
        return sorted(names)

    def knows(self, plugin: str) -> bool:
        return plugin in self.states or plugin in self.unreadable or plugin in self.finished or (
            self.fleet is not None and plugin in self.fleet.plugins)


class RecordSource(Protocol):
    """Where the view's record comes from."""

    def record(self) -> Record:
        """The newest record read; never waits on git or the network."""
        ...

    def report(self, path: str) -> str | None:
        """The text of one report (reports/<plugin>/<version>-<rolloutId>.md), None when there is none."""
        ...

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` (from any thread) with each newer record; returns the function that unsubscribes."""
        ...


class Listeners:
    """The listeners of a source: each called with every new record; one that raises is logged, not dropped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []

    def add(self, listener: Listener) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def tell(self, record: Record) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(record)
            except Exception:  # a listener's fault must not stop the source
                log.exception("a web view listener failed")


class ReadingLog:
    """A bounded history of metric readings per plugin, rollout, batch and metric.

    A status file keeps only the last reading of each metric of each batch, so the history is what the view has
    seen: each status it read (every commit of it, for the git source; every tick, in process). At most
    `per_series` points per series and the `rollouts_per_plugin` newest rollouts of each plugin are kept.
    """

    def __init__(self, per_series: int = 240, rollouts_per_plugin: int = 3) -> None:
        self.per_series = per_series
        self.rollouts_per_plugin = rollouts_per_plugin
        self._series: dict[SeriesKey, deque[Point]] = {}
        self._rollouts: dict[str, OrderedDict[str, None]] = {}  # plugin -> its rollouts, oldest first

    def observe(self, state: RolloutState) -> bool:
        """Add the last readings `state` holds; True when one was new."""
        self._keep_rollout(state.plugin, state.rollout_id)
        added = False
        for batch in state.batches:
            for track in batch.metrics:
                last = track.last
                if last is None:
                    continue
                key = (state.plugin, state.rollout_id, batch.name, track.name)
                series = self._series.setdefault(key, deque(maxlen=self.per_series))
                # to the millisecond, as status files keep it: the same reading from memory and from git is one
                at = last.at.replace(microsecond=last.at.microsecond // 1000 * 1000)
                if any(point.at == at for point in series):
                    continue
                series.append(Point(at, last.value, last.verdict, last.message))
                if len(series) > 1 and series[-2].at > at:  # an older commit read after a newer one
                    ordered = sorted(series, key=lambda p: p.at)
                    series.clear()
                    series.extend(ordered)
                added = True
        return added

    def _keep_rollout(self, plugin: str, rollout_id: str) -> None:
        rollouts = self._rollouts.setdefault(plugin, OrderedDict())
        if rollout_id in rollouts:
            return
        rollouts[rollout_id] = None
        while len(rollouts) > self.rollouts_per_plugin:
            gone, _ = rollouts.popitem(last=False)
            for key in [k for k in self._series if k[0] == plugin and k[1] == gone]:
                del self._series[key]

    def snapshot(self) -> dict[SeriesKey, tuple[Point, ...]]:
        return {key: tuple(points) for key, points in self._series.items()}


_DATE_ROW = re.compile(r"^\| Date \| (\S+) to (\S+) ", re.M)
_VERSION_IN_FRONT = re.compile(r'^version: "?([^"\n]+)"?$', re.M)


def finished_from_report(path: str, text: str) -> Finished | None:
    """A finished rollout from its report (front matter for the outcome, the Date row for the times); None when
    the text is not a finished rollout's report."""
    outcome = read_outcome(text)
    if outcome is None:
        return None
    front = text.split("\n---\n", 1)[0] if text.startswith("---\n") else ""
    match = _VERSION_IN_FRONT.search(front)
    stem = path.rsplit("/", 1)[-1].removesuffix(".md")
    version = match.group(1) if match else stem.rsplit("-", 1)[0]
    started = finished = None
    row = _DATE_ROW.search(text)
    if row:
        started, finished = _time_or_none(row.group(1)), _time_or_none(row.group(2))
    return Finished(path, outcome.plugin, version, outcome.rollout_id, outcome.result, started, finished,
                    dict(outcome.instances))


def _time_or_none(text: str) -> datetime | None:
    try:
        return parse_time(text) if text != "-" else None
    except ValueError:
        return None


_NEVER = datetime.min.replace(tzinfo=UTC)


def newest_first(entries: Iterable[Finished]) -> tuple[Finished, ...]:
    """Finished rollouts, the last to finish first (one without a finish time last)."""
    return tuple(sorted(entries, key=lambda f: (f.finished is not None, f.finished or _NEVER,
                                                f.path), reverse=True))


def by_plugin(entries: Iterable[Finished]) -> dict[str, tuple[Finished, ...]]:
    grouped: dict[str, list[Finished]] = {}
    for entry in entries:
        grouped.setdefault(entry.plugin, []).append(entry)
    return {plugin: newest_first(items) for plugin, items in grouped.items()}


class MemoryRecordSource:
    """A record its owner publishes: the tests' source, and the one an in-process reconciler feeds.

    `publish` replaces the parts it is given, keeps the rest, observes the readings of the states it is given,
    and tells the listeners when anything changed. Reports are kept by path (`reports`), as given.
    """

    def __init__(self, source: str = "in process", readings: ReadingLog | None = None) -> None:
        self._lock = threading.Lock()
        self._listeners = Listeners()
        self._readings = readings or ReadingLog()
        self._reports: dict[str, str] = {}
        self._serial = 0
        self._record = Record(revision="0", source=source)

    def record(self) -> Record:
        return self._record

    def report(self, path: str) -> str | None:
        with self._lock:
            return self._reports.get(path)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    def publish(self, *, fleet: Fleet | None = None, refused: tuple[str, ...] | None = None,
                states: Mapping[str, RolloutState] | None = None, unreadable: Mapping[str, str] | None = None,
                reports: Mapping[str, str] | None = None, timelines: Mapping[str, tuple[Commit, ...]] | None = None,
                head: str | None = None, read_at: datetime | None = None,
                problem: str | None = None) -> Record:
        """Publish a newer record; arguments left out (None) keep what the record had, except `problem`."""
        with self._lock:
            old = self._record
            changes: dict[str, object] = {"problem": problem}
            if fleet is not None:
                changes["fleet"] = fleet
            if refused is not None:
                changes["refused"] = refused
            if states is not None:
                changes["states"] = dict(states)
                for state in states.values():
                    self._readings.observe(state)
                changes["readings"] = self._readings.snapshot()
            if unreadable is not None:
                changes["unreadable"] = dict(unreadable)
            if reports is not None:
                self._reports.update(reports)
                found = (finished_from_report(path, text) for path, text in self._reports.items())
                changes["finished"] = by_plugin(entry for entry in found if entry is not None)
            if timelines is not None:
                changes["timelines"] = dict(timelines)
            if head is not None:
                changes["head"] = head
            if read_at is not None:
                changes["read_at"] = read_at
            new = replace(old, **changes)  # type: ignore[arg-type]
            if new == old:
                return old
            self._serial += 1
            self._record = replace(new, revision=str(self._serial))
            record = self._record
        self._listeners.tell(record)
        return record
