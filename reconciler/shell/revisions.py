"""The revision source: which revision of the fleet repository is in force, and the clone it is read from.

Each poll (or at once when woken) it fetches, puts the clone's own commits on top of the remote's (a conflict or
a rewritten history goes to `Divergence`), and reads HEAD. A valid revision is put in force, with the adapters
its grayops.yaml names (a `Runtime`, rebuilt only when the settings change). An invalid one is refused as a
whole: every error is logged, one `invalid_revision` alert carries the root errors, and the last good revision
stays in force, except for the brakes its own plugin files ask for (README "Pause and rollback at an invalid
HEAD"). Started over a refused HEAD, the newest valid first-parent ancestor is put in force (README "Limits").

With `trust.commits.required` (README "Supply chain") HEAD's commit must also be trusted: the rule in force at the
last good revision judges the next one (at a start, HEAD's own rule, or the one before the last change of
grayops.yaml unless that change is itself trusted), so an unsigned commit cannot switch it off. An untrusted
revision is refused without obeying any brake it asks for, with one `untrusted_revision` alert per commit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.ports import Clock
from reconciler.adapters.registry import Registry, Runtime
from reconciler.core.brakes import with_brakes
from reconciler.core.fleet import Fleet, FleetInvalid, Parsed, load_fleet
from reconciler.core.layout import SETTINGS_PATH, status_branch
from reconciler.core.model import RolloutState, Severity
from reconciler.core.trust import UNTRUSTED_REVISION, CommitVerdict
from reconciler.shell.alerts import FleetAlerts
from reconciler.shell.divergence import Divergence
from reconciler.shell.remote import RemoteHealth
from reconciler.shell.trust import CommitTrust, SupplyChain, last_change

log = logging.getLogger("grayops")

ALERTED_ERRORS = 5  # the root errors an invalid_revision alert carries (the log has every one)
LOOK_BACK = 100  # first-parent commits searched for the last good revision when a start finds HEAD refused


class RevisionSource:
    def __init__(self, repo: GitRepo, builtin_policies: Mapping[str, str], registry: Registry, workdir: Path,
                 clock: Clock, alerts: FleetAlerts, remote: RemoteHealth, divergence: Divergence,
                 states: Mapping[str, RolloutState], poll_interval: float | None = None,
                 supply: SupplyChain | None = None) -> None:
        self._repo, self._builtins, self._registry = repo, builtin_policies, registry
        self._workdir, self._clock, self._alerts = workdir, clock, alerts
        self._remote, self._divergence, self._states = remote, divergence, states
        self._poll_override = poll_interval
        self._trust = CommitTrust(supply)
        self.wake = threading.Event()  # set by the remote watcher or a chat command: fetch now
        self.fleet: Fleet | None = None  # in force: the last good revision, with the brakes a refused one asks for
        self.runtime: Runtime | None = None  # the adapters of the revision in force
        self.refused: tuple[str, ...] = ()  # the errors of HEAD, while it is refused
        self._good: Fleet | None = None  # the last good revision as it is
        self._fleet_key: int | None = None
        self._refused_key: int | None = None
        self._next_fetch = 0.0
        self._parsed = Parsed()  # the files of the last revision read: a new HEAD parses only what changed

    @property
    def signer(self) -> str | None:
        """Who vouched for the revision in force, when its signature was required (README "Supply chain")."""
        return self._trust.signer

    @property
    def poll_interval(self) -> float:
        if self._poll_override is not None:
            return self._poll_override
        return self.fleet.settings.git.poll_interval if self.fleet else 5.0

    def open(self) -> None:
        """Clone (or reuse the clone), with the record where grayops.yaml as it stands puts it."""
        self._repo.ensure_clone()
        self._trust.sign_in(self._repo.path)
        if self._repo.status_branch is None:  # else given on the command line
            self._repo.use_status_branch(status_branch(self._repo.read(SETTINGS_PATH)))

    def sync(self) -> None:
        """Fetch when due, integrate, and put HEAD's revision in force or refuse it."""
        if time.monotonic() >= self._next_fetch or self.wake.is_set():
            self.wake.clear()
            self._next_fetch = time.monotonic() + self.poll_interval
            self._remote.fetch()
            self._trust.refresh()
            conflict = self._repo.integrate()
            if conflict is not None:
                self._divergence.conflict(conflict)
            self._divergence.follow_rewrites()
        try:
            files = self._repo.desired_files()
            if files.key == self._fleet_key:
                self._refused_key, self.refused = None, ()  # back to the revision in force
                return
            if files.key == self._refused_key:
                return
            head = self._repo.first_parents(1)
            verdict: CommitVerdict | None = None
            if head and self._good is not None and self._good.settings.trust.commits.required:
                verdict = self._trust.judge(self._repo.path, head[0])  # the rule of the last good revision
                if not verdict.verified:
                    self._refuse_untrusted(files.key, verdict)
                    return
            fleet = load_fleet(files, self._builtins, adapters=self._registry.models, parsed=self._parsed)
            if head and self._good is None:  # a start: no rule in force yet
                at_start = self._judge_at_start(head[0], fleet)
                if at_start is not None and not at_start.verified:
                    self._refuse_untrusted(files.key, at_start)
                    return
                verdict = at_start
        except FleetInvalid as err:
            self._refuse(files.key, [str(e) for e in err.errors], files)
            return
        except Exception as err:  # reading a revision never ends the process: it is refused
            if self._repo.lost():  # the clone went away under us (rm -rf): cloned again next tick, no revision fault
                log.warning("the clone disappeared while reading the revision: %s", " ".join(str(err).split()))
                return
            reason = f"the revision could not be read: {' '.join(str(err).split())}"
            if self.refused != (reason,):
                log.exception("reading the revision at HEAD failed")
                self._refuse(None, [reason])
            return
        self._put_in_force(fleet, files.key)
        if head:
            self._trust.verified(head[0], verdict)

    # --- trust ------------------------------------------------------------------------------------------------

    def _judge_at_start(self, commit: str, fleet: Fleet) -> CommitVerdict | None:
        """The verdict on `commit` at a start (None: no signature required). The rule is the revision's own, or
        the one before the last change of grayops.yaml unless that change is trusted itself: a restart does not
        let an unsigned commit switch the rule off."""
        if fleet.settings.trust.commits.required or self._required_before_last_change(commit):
            return self._trust.judge(self._repo.path, commit)
        return None

    def _required_before_last_change(self, commit: str) -> bool:
        changed = last_change(self._repo.path, commit, SETTINGS_PATH)
        if changed is None:
            return False
        try:
            before = load_fleet(self._repo.desired_files(f"{changed}^"), self._builtins,
                                adapters=self._registry.models)
        except Exception:  # no parent, or not a valid revision: it had no rule in force
            return False
        if not before.settings.trust.commits.required:
            return False
        return not self._trust.judge(self._repo.path, changed).verified

    def _refuse_untrusted(self, key: int, verdict: CommitVerdict) -> None:
        """Refuse HEAD's revision because its commit is not trusted: no brake it asks for is obeyed."""
        self._refuse(key, [f"untrusted: {verdict.line()}"], kind=UNTRUSTED_REVISION,
                     alert=self._trust.first_alert(verdict))

    def _refuse(self, key: int | None, errors: Sequence[str], files: Mapping[str, str] | None = None, *,
                kind: str = "invalid_revision", alert: bool = True) -> None:
        """Refuse HEAD's revision: log every error, alert with the root errors, keep the last good one in force.

        Nothing in force yet (a start over a refused HEAD): the newest first-parent ancestor that is valid is put
        in force, so a restart comes up as the process that was stopped, with the rollouts in force.
        """
        self._refused_key, self.refused = key, tuple(errors)
        history = self._repo.first_parents(LOOK_BACK if self.fleet is None else 1)
        head = history[0][:12] if history else "(none yet)"
        found = self._last_good(key if kind != UNTRUSTED_REVISION else None, history[1:]) \
            if self.fleet is None else None
        if found is not None:
            kept = f"the last good revision ({found[:12]}) is in force"
        else:
            kept = "the last good revision stays in force" if self.fleet else "nothing is in force yet"
        log.error("revision %s refused (%d error(s)); %s:\n  %s", head, len(errors), kept, "\n  ".join(errors))
        shown = "; ".join(errors[:ALERTED_ERRORS]) + (
            f"; and {len(errors) - ALERTED_ERRORS} more" if len(errors) > ALERTED_ERRORS else "")
        if alert:
            self._alerts.alert(kind, Severity.CRITICAL,
                               f"revision {head} refused, {kept}: {len(errors)} error(s): {shown}")
        if files is not None:
            self._take_brakes(files, head)

    def _last_good(self, refused: int | None, ancestors: Sequence[str]) -> str | None:
        """Put in force the newest valid revision among `ancestors` (newest first); its commit, or None."""
        tried = {refused}
        for commit in ancestors:
            files = self._repo.desired_files(commit)
            if files.key in tried:
                continue  # e.g. grayops' own status commits over the refused revision
            tried.add(files.key)
            try:
                fleet = load_fleet(files, self._builtins, adapters=self._registry.models)
            except FleetInvalid:
                continue
            verdict = self._judge_at_start(commit, fleet)
            if verdict is not None and not verdict.verified:
                continue
            self._put_in_force(fleet, files.key, commit)
            self._trust.verified(commit, verdict)
            return commit
        return None

    def _put_in_force(self, fleet: Fleet, key: int, commit: str | None = None) -> None:
        wanted = fleet.settings.status.branch
        if self.fleet is not None and wanted and wanted != self._repo.status_branch:
            log.warning("status.branch changed to %s: restart grayops to move the record there", wanted)
        if self.fleet is None or fleet.settings != self.fleet.settings or self.runtime is None:
            if self.runtime is not None:
                self.runtime.close()
            self.runtime = self._registry.build_runtime(fleet.settings, self._workdir, self._clock)
        if commit is None:
            self._refused_key, self.refused = None, ()
        self.fleet, self._fleet_key, self._good = fleet, key, fleet
        log.info("revision %s in force: %d plugin(s), %d cluster(s)", (commit or self._repo.head())[:12],
                 len(fleet.plugins), len(fleet.settings.clusters))

    def _take_brakes(self, files: Mapping[str, str], head: str) -> None:
        """At a refused revision, obey the pauses and rollbacks its own plugin files ask for (README "Pause and
        rollback at an invalid HEAD"); the last good revision stays in force for everything else."""
        if self._good is None:
            return
        self.fleet, taken = with_brakes(self._good, files, self._states)
        for brake in taken:
            log.warning("revision %s is refused, but %s: obeyed", head, brake)
