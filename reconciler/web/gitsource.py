"""The record read from a clone of the fleet repository: `RepoReader` (the clone as it stands) and
`GitRecordSource` (a clone of its own, kept fresh, for `grayops dashboard`).

`RepoReader` reads through `GitRepo`, the same reader as the reconciler (README "Limits": git objects only, size
limits, no symlink followed): the revision (refused: the last valid one stays), status/ (each file through
`load_status`: one it cannot read is named, not fatal), the reports' front matter, each changed plugin's timeline
and the status commits it has not seen yet (for the metric readings). It reads again only what changed.

`GitRecordSource` keeps its clone in a workdir of its own (held like `grayops run` holds its workdir, so neither
can share it by mistake), fetches it every poll interval (`--poll`, else grayops.yaml's `git.pollInterval`) and at
once when a local remote changes, at most twice a second, and publishes a new Record when anything moved.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitError, GitRepo, RemoteUnavailable, RemoteWatcher, redact_url
from reconciler.core.fleet import Fleet, FleetInvalid, RevisionFiles, load_fleet
from reconciler.core.model import RolloutState
from reconciler.core.spec import AdapterModels
from reconciler.core.status import StatusUnreadable, load_status
from reconciler.web.record import (
    Commit,
    Finished,
    Listener,
    Listeners,
    ReadingLog,
    Record,
    by_plugin,
    finished_from_report,
)

log = logging.getLogger(__name__)

MIN_GAP = 0.5  # seconds between two refreshes, however often a local remote moves
TIMELINE_LIMIT = 200  # commits shown per plugin
BACKFILL = 40  # status commits read per plugin per refresh for the metric readings
REPORT_TEXTS = 16  # report texts kept in memory
OBSERVED = 20_000  # status commit ids remembered as read


class RepoReader:
    """The record in a clone as it stands; `read()` again after the clone moved."""

    def __init__(self, repo: GitRepo, adapters: AdapterModels, readings: ReadingLog) -> None:
        self.repo = repo
        self.adapters = adapters
        self.readings = readings
        self.fleet: Fleet | None = None
        self.refused: tuple[str, ...] = ()
        self.timelines: dict[str, tuple[Commit, ...]] = {}
        self._files_key: int | None = None
        self._status: dict[str, tuple[str, RolloutState | str]] = {}  # path -> (text, state or what is wrong)
        self._signatures: dict[str, tuple[str, ...]] = {}  # plugin -> the texts its timeline depends on
        self._observed: dict[str, None] = {}  # status commits whose readings were taken (the newest OBSERVED)
        self._finished: dict[str, Finished | None] = {}
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._texts_lock = threading.Lock()

    @property
    def states(self) -> dict[str, RolloutState]:
        return {plugin: v for plugin, (_, v) in self._by_plugin().items() if isinstance(v, RolloutState)}

    @property
    def unreadable(self) -> dict[str, str]:
        return {plugin: v for plugin, (_, v) in self._by_plugin().items() if isinstance(v, str)}

    @property
    def finished(self) -> dict[str, tuple[Finished, ...]]:
        return by_plugin(f for f in self._finished.values() if f is not None)

    def heads(self) -> tuple[str | None, str | None]:
        """The commit of the clone (None while the repository is empty), and of the record when it lives on a
        status branch of its own."""
        record = None
        if self.repo.status_branch is not None:
            found = self.repo.history(["status", "reports"], limit=1)
            record = found[0].commit if found else None
        first = self.repo.first_parents(1)
        return (first[0] if first else None), record

    def read(self, fleet: bool = True) -> None:
        """Read what changed; `fleet=False` leaves the revision to whoever has it in force (the reconciler)."""
        if fleet:
            self._read_fleet()
        self._read_status()
        self._read_reports()
        known = set(self.fleet.plugins) if self.fleet is not None else set()
        for plugin in sorted(set(self._by_plugin()) | known):
            self._read_history(plugin)

    def report(self, path: str) -> str | None:
        with self._texts_lock:
            if path in self._texts:
                return self._texts[path]
        if path not in self._finished:
            return None
        try:
            text = self.repo.read(path)
        except (GitError, ValueError):
            return None
        if text is not None:
            with self._texts_lock:
                self._texts[path] = text
                while len(self._texts) > REPORT_TEXTS:
                    self._texts.popitem(last=False)
        return text

    def _by_plugin(self) -> dict[str, tuple[str, RolloutState | str]]:
        return {path[len("status/"):-len(".yaml")]: value for path, value in self._status.items()}

    def _read_fleet(self) -> None:
        files = self.repo.desired_files()
        if files.key == self._files_key:
            return
        self._files_key = files.key
        try:
            self.fleet = load_fleet(files, builtin_policies(), adapters=self.adapters)
            self.refused = ()
        except FleetInvalid as err:  # the last valid revision read stays, as in the reconciler
            self.refused = tuple(str(e) for e in err.errors)
        self.repo.use_status_branch(self.fleet.settings.status.branch if self.fleet is not None else None)

    def _read_status(self) -> None:
        files = self.repo.status_files()
        status: dict[str, tuple[str, RolloutState | str]] = {}
        for path, text in files.items():
            if not path.endswith(".yaml") or "/" in path[len("status/"):]:
                continue
            cached = self._status.get(path)
            if cached is not None and cached[0] == text:
                status[path] = cached
                continue
            try:
                status[path] = (text, load_status(text, path))
            except StatusUnreadable as err:
                status[path] = (text, str(err))
        for error in files.errors if isinstance(files, RevisionFiles) else ():
            if error.path.startswith("status/") and error.path.endswith(".yaml"):
                status[error.path] = ("", f"{error} (the status file cannot be read)")
        self._status = status

    def _read_reports(self) -> None:
        paths = self.repo.report_paths()
        self._finished = {path: self._finished[path] if path in self._finished else self._summary(path)
                          for path in paths}

    def _summary(self, path: str) -> Finished | None:
        text = self.repo.read(path)
        return finished_from_report(path, text) if text is not None else None

    def _read_history(self, plugin: str) -> None:
        """The plugin's timeline, and the readings of status commits not seen yet, when one of its files changed."""
        status_path = f"status/{plugin}.yaml"
        plugin_path = self.fleet.plugin_paths.get(plugin) if self.fleet else None
        fleet_paths = [plugin_path or f"plugins/{plugin}.yaml", f"approvals/{plugin}.yaml", f"approvals/{plugin}.yml"]
        desired: Mapping[str, str] = self.repo.desired_files()
        signature = (self._status.get(status_path, ("",))[0], *(desired.get(path, "") for path in fleet_paths))
        if self._signatures.get(plugin) == signature:
            return
        self._signatures[plugin] = signature
        record = self.repo.history([status_path], limit=TIMELINE_LIMIT)
        changes = self.repo.history(fleet_paths, limit=TIMELINE_LIMIT)
        merged = {c.commit: Commit.of(c) for c in [*record, *changes]}
        self.timelines[plugin] = tuple(sorted(merged.values(), key=_newest_first))[:TIMELINE_LIMIT]
        unseen = [c.commit for c in record if c.commit not in self._observed][:BACKFILL]
        for commit in reversed(unseen):  # oldest first, as they happened
            self._observed[commit] = None
            text = self.repo.read(status_path, rev=commit)
            try:
                state = load_status(text, status_path) if text else None
            except StatusUnreadable:
                state = None
            if state is not None:
                self.readings.observe(state)
        for old in list(self._observed)[:max(0, len(self._observed) - OBSERVED)]:
            del self._observed[old]
        current = self._status.get(status_path)
        if current is not None and isinstance(current[1], RolloutState):
            self.readings.observe(current[1])


def _newest_first(commit: Commit) -> float:
    """Newest first; commits of the same second keep git's order (the sort is stable)."""
    return -(commit.at.timestamp() if commit.at else 0.0)


class GitRecordSource:
    """The record of a remote, read from a clone of its own that is kept fresh in the background."""

    def __init__(self, remote: str, workdir: Path, adapters: AdapterModels, *, branch: str = "main",
                 poll: float | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.repo = GitRepo(remote, workdir, branch=branch)
        self.poll = poll
        self.clock = clock
        self.reader = RepoReader(self.repo, adapters, ReadingLog())
        self._listeners = Listeners()
        self._record = Record(revision="0", source=f"{redact_url(remote)} ({branch})")
        self._serial = 0
        self._heads: tuple[str | None, str | None] | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: RemoteWatcher | None = None

    # --- RecordSource ---------------------------------------------------------------------------------------

    def record(self) -> Record:
        return self._record

    def report(self, path: str) -> str | None:
        return self.reader.report(path)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        return self._listeners.add(listener)

    # --- life -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Clone (or reuse the workdir's clone), read the record once, then keep it fresh in the background.
        Raises WorkdirBusy, RemoteUnavailable or GitError when it cannot begin."""
        self.repo.hold_workdir()
        try:
            self.repo.ensure_clone()
            self.refresh(fetch=False)
        except BaseException:
            self.repo.release_workdir()
            raise
        self._thread = threading.Thread(target=self._run, name="grayops-web-poll", daemon=True)
        self._thread.start()
        self._watcher = RemoteWatcher(self.repo.remote, self._wake.set)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.repo.release_workdir()

    def wake(self) -> None:
        """Fetch now rather than at the next poll (e.g. a push webhook arrived)."""
        self._wake.set()

    def poll_interval(self) -> float:
        if self.poll is not None:
            return self.poll
        return self.reader.fleet.settings.git.poll_interval if self.reader.fleet is not None else 5.0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval())
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.refresh()
            except Exception:  # one bad refresh must not end the view: the next one tries again
                log.exception("reading the record failed; trying again at the next poll")
            self._stop.wait(MIN_GAP)

    def refresh(self, fetch: bool = True) -> Record:
        """Fetch and read what changed; publish a new record when anything did."""
        problem = None
        if fetch:
            try:
                self.repo.fetch()
                self.repo.integrate()
            except RemoteUnavailable as err:
                when = self._record.read_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self._record.read_at else "never"
                why = " ".join(str(err).split())
                problem = f"the remote cannot be fetched ({why}); the record was last read {when}"
        heads = self.reader.heads()
        old = self._record
        if heads == self._heads and problem == old.problem:
            return old
        if heads != self._heads:
            self.reader.read()
            self._heads = heads
        self._serial += 1
        reader = self.reader
        self._record = Record(
            revision=str(self._serial), fleet=reader.fleet, refused=reader.refused, states=reader.states,
            unreadable=reader.unreadable, finished=reader.finished, timelines=dict(reader.timelines),
            readings=reader.readings.snapshot(), head=heads[0],
            read_at=self.clock() if problem is None else old.read_at, source=old.source, problem=problem)
        self._listeners.tell(self._record)
        return self._record
