"""What the API acts on: the fleet repository's clone (shared with the reconciler when hosted by it), the
settings models grayops.yaml is checked with, a clock, and the reconciler's wake-up.

Hosted by `grayops run`, reads (the tokens, the webhook secret, the plugins and their rollout states) are the
reconciler's in memory: its revision in force and the states it committed at its last tick, so a read never waits
on the clone's lock while a tick holds it. Without a reconciler (`grayops serve`) they are read from the clone,
fetched and read again at most every `fresh_for` seconds under a lock of their own, so many clients share one
read. Commands fetch first, as the CLI's do. The access rules and the webhook secret come from the newest valid
revision seen: a refused HEAD keeps the last good tokens in force, as the reconciler keeps its revision.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable
from reconciler.core.escalation import OpenAlert
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import plugin_of, reports_of, status_plugin
from reconciler.core.model import RolloutState
from reconciler.core.spec import AdapterModels, ApiToken
from reconciler.core.status import StatusUnreadable, load_status

log = logging.getLogger("grayops.api")

BODY_TIMEOUT = 10.0  # seconds for a request's whole body to arrive once its headers did (408), as for its headers


@dataclass(frozen=True)
class Rate:
    """Requests a token may make: `burst` at once, then `per_second` on average (a token bucket)."""

    per_second: float = 5.0
    burst: int = 50


@dataclass(frozen=True)
class ReadView:
    """What the API's reads answer from: the newest valid revision seen (its tokens and webhook secret are the ones
    in force), the plugins, their rollout states, and the status files that do not read (plugin -> why)."""

    fleet: Fleet | None
    plugins: frozenset[str]
    states: Mapping[str, RolloutState]
    unreadable: Mapping[str, str] = field(default_factory=dict)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ApiBackend:
    repo: GitRepo  # ensure_clone() done; the reconciler's own when hosted
    adapters: AdapterModels  # the registry's settings models (the CLI's wiring gives `full_registry().models`)
    wake: Callable[[], None] = lambda: None  # the reconciler fetches and ticks at once
    now: Callable[[], datetime] = _utc_now  # commit times
    monotonic: Callable[[], float] = time.monotonic  # rates and freshness
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)  # where the webhook secret is read
    rate: Rate = field(default_factory=Rate)
    fresh_for: float = 1.0  # seconds a read may lag the remote
    body_timeout: float = BODY_TIMEOUT
    open_alerts: Callable[[], Sequence[OpenAlert]] | None = None  # the hosting reconciler's (README "Owners and
    # escalation"); None when no reconciler runs here
    in_force: Callable[[], Fleet | None] | None = None  # the hosting reconciler's revision in force
    rollouts: Callable[[], Mapping[str, RolloutState]] | None = None  # and its rollout states, as committed
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _fetched_at: float | None = field(default=None, init=False, repr=False)
    _read: tuple[int, Fleet | None, FleetInvalid | None] | None = field(default=None, init=False, repr=False)
    _good: Fleet | None = field(default=None, init=False, repr=False)
    _view_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _view: tuple[float, ReadView] | None = field(default=None, init=False, repr=False)

    def view(self) -> ReadView:
        """The plugins and their states: the hosting reconciler's, else the clone's, read again at most every
        `fresh_for` seconds (concurrent readers wait for one read, not for one each)."""
        hosted = self.in_force() if self.in_force is not None else None
        if hosted is not None:
            return ReadView(hosted, frozenset(hosted.plugins), dict(self.rollouts() if self.rollouts else {}))
        with self._view_lock:
            if self._view is not None and self.monotonic() - self._view[0] < self.fresh_for:
                return self._view[1]
            self.refresh()
            view = self._read_view()
            self._view = (self.monotonic(), view)
            return view

    def _read_view(self) -> ReadView:
        states: dict[str, RolloutState] = {}
        unreadable: dict[str, str] = {}
        for path, text in sorted(self.statuses().items()):
            if (name := status_plugin(path)) is None:
                continue
            try:
                states[name] = load_status(text, path)
            except StatusUnreadable as err:
                unreadable[name] = str(err)
        fleet, _ = self.head()
        return ReadView(fleet or self._good, frozenset(self.plugins()), states, unreadable)

    def refresh(self) -> None:
        """Fetch and integrate when the last fetch is older than `fresh_for`; the remote down is logged only."""
        with self._lock:
            if self._fetched_at is not None and self.monotonic() - self._fetched_at < self.fresh_for:
                return
            self._fetched_at = self.monotonic()
        with self.repo.lock():
            try:
                self.repo.fetch()
            except RemoteUnavailable as err:
                log.warning("git remote unreachable, answering from the clone: %s", err)
                return
            self.repo.integrate()

    def head(self) -> tuple[Fleet | None, FleetInvalid | None]:
        """HEAD's revision: (its fleet, None), or (None, why it is refused)."""
        files = self.repo.desired_files()
        with self._lock:
            if self._read is not None and self._read[0] == files.key:
                return self._read[1], self._read[2]
        try:
            fleet: Fleet | None = load_fleet(files, builtin_policies(), adapters=self.adapters)
            refused = None
        except FleetInvalid as err:
            fleet, refused = None, err
        with self._lock:
            self._read = (files.key, fleet, refused)
            if fleet is not None:
                self._good = fleet
        return fleet, refused

    def good_fleet(self) -> Fleet | None:
        """The newest valid revision seen (HEAD's when valid): the one whose tokens and secret are in force; the
        hosting reconciler's revision in force, when it has one."""
        return self.view().fleet

    def tokens(self) -> tuple[ApiToken, ...]:
        fleet = self.good_fleet()
        return tuple(fleet.access.tokens) if fleet is not None and fleet.access is not None else ()

    def webhook_secret(self) -> str | None:
        fleet = self.good_fleet()
        hook = fleet.settings.git.webhook if fleet is not None else None
        return (self.env.get(hook.secret_env) or None) if hook is not None else None

    def plugins(self) -> list[str]:
        """The plugins with a file at HEAD, valid or not (a brake acts on them even at a refused HEAD)."""
        return sorted({name for path in self.repo.desired_files() if (name := plugin_of(path)) is not None})

    def statuses(self) -> dict[str, str]:
        """status/ files, where the reconciler writes them."""
        return dict(self.repo.status_files())

    def report_paths(self, plugin: str) -> list[str]:
        return [path for path in self.repo.report_paths() if path.startswith(reports_of(plugin))]

    def read_record(self, path: str) -> str | None:
        return self.repo.read(path)
