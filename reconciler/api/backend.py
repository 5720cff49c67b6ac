"""What the API acts on: the fleet repository's clone (shared with the reconciler when hosted by it), the
settings models grayops.yaml is checked with, a clock, and the reconciler's wake-up.

Reads are served from the clone, fetched at most every `fresh_for` seconds (a hosted reconciler fetches it
anyway); commands fetch first, as the CLI's do. The access rules and the webhook secret come from the newest
valid revision seen: a refused HEAD keeps the last good tokens in force, as the reconciler keeps its revision.
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
from reconciler.core.layout import plugin_of, reports_of
from reconciler.core.spec import AdapterModels, ApiToken

log = logging.getLogger("grayops.api")


@dataclass(frozen=True)
class Rate:
    """Requests a token may make: `burst` at once, then `per_second` on average (a token bucket)."""

    per_second: float = 5.0
    burst: int = 50


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
    open_alerts: Callable[[], Sequence[OpenAlert]] | None = None  # the hosting reconciler's (README "Owners and
    # escalation"); None when no reconciler runs here
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _fetched_at: float | None = field(default=None, init=False, repr=False)
    _read: tuple[int, Fleet | None, FleetInvalid | None] | None = field(default=None, init=False, repr=False)
    _good: Fleet | None = field(default=None, init=False, repr=False)

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
        """The newest valid revision seen (HEAD's when valid): the one whose tokens and secret are in force."""
        fleet, _ = self.head()
        return fleet or self._good

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
