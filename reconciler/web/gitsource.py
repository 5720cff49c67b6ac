"""The record of a fleet repository read from a clone the view keeps fresh (`grayops dashboard`).

The clone lives in a workdir of its own (held like `grayops run` holds its workdir, so neither can share it by
mistake). It is fetched every poll interval (`--poll`, else grayops.yaml's `git.pollInterval`) and at once when a
local remote changes, at most twice a second, and read through `GitRepo`, the same reader as the reconciler
(README "Limits": git objects only, size limits, no symlink followed). After each fetch that moved something the
source reads the revision (refused: the last valid one stays), status/ (each file through `load_status`: one it
cannot read is named, not fatal), the reports' front matter, each changed plugin's timeline and the status
commits it has not seen (for the metric readings), then publishes a new Record.
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
from reconciler.shell import StatusUnreadable, load_status
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


class GitRecordSource:
    def __init__(self, remote: str, workdir: Path, adapters: AdapterModels, *, branch: str = "main",
                 poll: float | None = None, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.repo = GitRepo(remote, workdir, branch=branch)
        self.adapters = adapters
        self.poll = poll
        self.clock = clock
        self._listeners = Listeners()
        self._readings = ReadingLog()
        self._record = Record(revision="0", source=f"{redact_url(remote)} ({branch})")
        self._serial = 0
        self._heads: tuple[str, str | None] | None = None
        self._files_key: int | None = None
        self._fleet: Fleet | None = None
        self._refused: tuple[str, ...] = ()
        self._status: dict[str, tuple[str, RolloutState | str]] = {}  # path -> (text, state or what is wrong)
        self._signatures: dict[str, tuple[str | None, ...]] = {}  # plugin -> the texts its timeline depends on
        self._timelines: dict[str, tuple[Commit, ...]] = {}
        self._observed: dict[str, None] = {}  # status commits whose readings were taken (the newest OBSERVED)
        self._finished: dict[str, Finished | None] = {}
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watcher: RemoteWatcher | None = None

    # --- RecordSource ---------------------------------------------------------------------------------------

    def record(self) -> Record:
        return self._record

    def report(self, path: str) -> str | None:
        if path in self._texts:
            return self._texts[path]
        if path not in self._finished:
            return None
        try:
            text = self.repo.read(path)
        except (GitError, ValueError):
            return None
        if text is not None:
            self._texts[path] = text
            while len(self._texts) > REPORT_TEXTS:
                self._texts.popitem(last=False)
        return text

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
        return self._fleet.settings.git.poll_interval if self._fleet is not None else 5.0

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

    # --- reading ----------------------------------------------------------------------------------------------

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
        heads = (self.repo.head(), self._record_head())
        old = self._record
        if heads == self._heads and problem == old.problem:
            return old
        if heads != self._heads:
            self._read()
            self._heads = heads
        self._serial += 1
        states = {p: v for p, (_, v) in self._plugin_status().items() if isinstance(v, RolloutState)}
        unreadable = {p: v for p, (_, v) in self._plugin_status().items() if isinstance(v, str)}
        self._record = Record(
            revision=str(self._serial), fleet=self._fleet, refused=self._refused, states=states,
            unreadable=unreadable, finished=by_plugin(f for f in self._finished.values() if f is not None),
            timelines=dict(self._timelines), readings=self._readings.snapshot(), head=heads[0],
            read_at=self.clock() if problem is None else old.read_at, source=old.source, problem=problem)
        self._listeners.tell(self._record)
        return self._record

    def _record_head(self) -> str | None:
        """The newest commit of the record when it lives on a status branch of its own (else the head covers it)."""
        if self.repo.status_branch is None:
            return None
        found = self.repo.history(["status", "reports"], limit=1)
        return found[0].commit if found else None

    def _plugin_status(self) -> dict[str, tuple[str, RolloutState | str]]:
        return {path[len("status/"):-len(".yaml")]: value for path, value in self._status.items()}

    def _read(self) -> None:
        self._read_fleet()
        self._read_status()
        self._read_reports()
        for plugin in sorted(set(self._plugin_status()) | set(self._fleet.plugins if self._fleet else ())):
            self._read_history(plugin)

    def _read_fleet(self) -> None:
        files = self.repo.desired_files()
        if files.key == self._files_key:
            return
        self._files_key = files.key
        try:
            self._fleet = load_fleet(files, builtin_policies(), adapters=self.adapters)
            self._refused = ()
        except FleetInvalid as err:  # the last valid revision read stays, as in the reconciler
            self._refused = tuple(str(e) for e in err.errors)
        branch = self._fleet.settings.status.branch if self._fleet is not None else None
        self.repo.use_status_branch(branch)

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
        plugin_path = self._fleet.plugin_paths.get(plugin) if self._fleet else None
        fleet_paths = [plugin_path or f"plugins/{plugin}.yaml", f"approvals/{plugin}.yaml", f"approvals/{plugin}.yml"]
        signature = (self._status.get(status_path, ("",))[0], self._fleet_texts(fleet_paths))
        if self._signatures.get(plugin) == signature:
            return
        self._signatures[plugin] = signature
        record = self.repo.history([status_path], limit=TIMELINE_LIMIT)
        desired = self.repo.history(fleet_paths, limit=TIMELINE_LIMIT)
        merged = {c.commit: Commit.of(c) for c in [*record, *desired]}
        self._timelines[plugin] = tuple(sorted(merged.values(), key=_newest_first_key))[:TIMELINE_LIMIT]
        unseen = [c.commit for c in record if c.commit not in self._observed][:BACKFILL]
        for commit in reversed(unseen):  # oldest first, as they happened
            self._observed[commit] = None
            text = self.repo.read(status_path, rev=commit)
            try:
                state = load_status(text, status_path) if text else None
            except StatusUnreadable:
                state = None
            if state is not None:
                self._readings.observe(state)
        for old in list(self._observed)[:max(0, len(self._observed) - OBSERVED)]:
            del self._observed[old]
        current = self._status.get(status_path)
        if current is not None and isinstance(current[1], RolloutState):
            self._readings.observe(current[1])

    def _fleet_texts(self, paths: list[str]) -> str:
        files: Mapping[str, str] = self.repo.desired_files()
        return "\0".join(files.get(path, "") for path in paths)


def _newest_first_key(commit: Commit) -> float:
    """Newest first; commits of the same second keep git's order (the sort is stable)."""
    return -(commit.at.timestamp() if commit.at else 0.0)
