"""The git remote's health: fetch and push, and one alert per cause while it lasts (README "Git as the record").

The remote unreachable and pushes it refuses (a hook, a protected or checked-out branch) each alert once, however
many fetches fail meanwhile, and a log line says when the cause cleared. While either lasts, a push is tried
again after each fetch that succeeds, not on every tick. A push that finds a conflict or a rewritten history
hands it to `Divergence`.
"""

from __future__ import annotations

import logging
from typing import Literal, Protocol

from reconciler.adapters.gitrepo import PushResult, RemoteUnavailable
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.model import Severity
from reconciler.shell.alerts import FleetAlerts
from reconciler.shell.divergence import Divergence

log = logging.getLogger("grayops")

Cause = Literal["remote_unreachable", "push_refused"]


class Remote(Protocol):
    """What remote health needs of the clone (GitRepo, or a fake in tests)."""

    def fetch(self) -> bool: ...

    def push(self) -> PushResult: ...

    def unpushed(self) -> int: ...


class RemoteHealth:
    def __init__(self, remote: Remote, alerts: FleetAlerts, telemetry: Telemetry, divergence: Divergence) -> None:
        self._remote, self._alerts, self._telemetry, self._divergence = remote, alerts, telemetry, divergence
        self._troubles: dict[Cause, str] = {}  # each cause -> git's message, alerted once until it clears
        self._push_due = True  # a refused push is tried again after each fetch, not on every tick
        self.error: str | None = None  # why commits are not being pushed, while that lasts
        self.unpushed = 0  # commits not yet pushed, as of the last push: what a deleted clone loses

    def fetch(self) -> None:
        """Fetch; an unreachable remote is alerted once and the tick goes on with the clone as it is."""
        try:
            self._remote.fetch()
        except RemoteUnavailable as err:
            self.down(str(err))
            self._push_due = False  # a push would wait for the same remote
            return
        self.back()
        self._push_due = True

    def push(self) -> None:
        """Push what was committed. While the remote is unreachable or refuses our pushes, try again only after a
        fetch succeeds (each poll), not on every tick."""
        self.unpushed = self._remote.unpushed()
        if self.unpushed == 0:
            self.back("push_refused", "nothing left to push")
            return
        if not self._push_due:
            return
        result = self._remote.push()
        self.unpushed = result.pending
        self._push_due = result.pending == 0  # else wait for the next fetch
        if result.conflict is not None or result.error:
            self._telemetry.push_failed()
        if result.conflict is not None:
            self._divergence.conflict(result.conflict)
        elif result.error and result.pending and result.failure in ("refused", "unreachable"):
            self.down(result.error, "push_refused" if result.failure == "refused" else "remote_unreachable")
        elif result.error and result.pending:
            log.warning("%d commit(s) not pushed yet, tried again after the next fetch: %s", result.pending,
                        result.error)
        else:
            self.back("push_refused", "accepted again")
            self.back("remote_unreachable")
        self._divergence.follow_rewrites()  # a retried push may have found the remote rewritten

    def down(self, error: str, cause: Cause = "remote_unreachable") -> None:
        """Alert once per cause (the remote unreachable, or refusing our pushes) until it clears: a remote that
        stays down, or a hook that declines every push, is one alert, not one per fetch."""
        if cause not in self._troubles:
            pending = self._remote.unpushed()
            if cause == "push_refused":
                message = (f"git push refused by the remote, {pending} commit(s) kept in the clone and tried again "
                           f"after each fetch until it takes them: {error}")
                log.error(message)
                self._alerts.alert(cause, Severity.CRITICAL, message)
            else:
                log.warning("git remote unreachable; working on the local clone (%d commit(s) to push): %s", pending,
                            error)
                self._alerts.alert(cause, Severity.WARNING, f"git remote unreachable, {pending} commit(s) kept locally "
                                   f"until it is back: {error}")
        self._troubles[cause] = error
        self.error = next(iter(self._troubles.values()))

    def back(self, cause: Cause = "remote_unreachable", how: str = "") -> None:
        """The cause cleared: one log line says so (the next one alerts again)."""
        if self._troubles.pop(cause, None) is not None:
            if cause == "push_refused":
                log.info("git push no longer refused: %s", how)
            else:
                log.info("git remote reachable again; pushing %d commit(s)", self._remote.unpushed())
        self.error = next(iter(self._troubles.values()), None)
