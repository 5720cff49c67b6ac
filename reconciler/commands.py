"""Commands as commits: pause, resume, rollback and approve, shared by the CLI and the chat bot.

Each command edits one human-owned file in the fleet repository (keeping its comments), commits it with
trailers saying who asked and why, and pushes. A command that changes nothing makes no commit. When the
remote is down the commit stays in the clone (the reconciler's own, when shared, acts on it at once) and is
pushed later; the result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import yaml

from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable
from reconciler.core import yamledit
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.model import RolloutState, fmt_time
from reconciler.core.plan import cut, order_instances, select_instances
from reconciler.core.spec import AdapterModels
from reconciler.core.text import NAME_LIMIT, REASON_LIMIT, one_line

log = logging.getLogger(__name__)

CommandName = Literal["pause", "resume", "rollback", "approve"]
ONCE_WINDOW = timedelta(days=1)  # how far back a repeated request is looked for (Slack's are 5 minutes old at most)


class CommandRefused(Exception):
    """The command cannot be carried out as asked (unknown plugin, nothing to approve, ...); nothing changed."""


@dataclass(frozen=True)
class CommandResult:
    changed: bool  # a commit was made
    message: str  # one line for the person who asked
    commit: str | None = None  # as pushed (after any rebase), or as committed in the clone when not pushed
    pushed: bool = False
    done_before: bool = False  # `once` was found in a recent commit: nothing was done again


def run_command(
    repo: GitRepo,
    command: CommandName,
    plugin: str,
    by: str,
    now: datetime,
    reason: str | None = None,
    batch: str | None = None,
    trailers: Sequence[tuple[str, str]] = (),
    once: tuple[str, str] | None = None,
    *,
    adapters: AdapterModels,
) -> CommandResult:
    """Carry out one command on the fleet repository behind `repo`; raises CommandRefused.

    `by` and `reason` are made one line and capped (they become the subject and trailers). `once` is a trailer
    naming this request (e.g. a Slack trigger id): it is added to the commit, and when a commit of the last day
    already carries it, nothing is done again. `adapters` are the registry's settings models, which grayops.yaml
    is checked with (the program's wiring gives its own, Slack included).
    """
    by = one_line(by, NAME_LIMIT) or "unknown"
    reason = (one_line(reason, REASON_LIMIT) if reason else "") or None
    with repo.lock():
        remote_down = _refresh(repo)
        if once is not None and (done := repo.find_trailer(*once, since=now - ONCE_WINDOW)) is not None:
            return CommandResult(False, f"{once[0]} {once[1]} was already carried out in {done[:10]}",
                                 done, done_before=True)
        fleet = _fleet(repo, adapters)
        if plugin not in fleet.plugins:
            known = ", ".join(sorted(fleet.plugins)) or "none"
            raise CommandRefused(f"no plugin named {plugin!r} (known: {known})")
        path = fleet.plugin_paths[plugin]
        state = _state(repo, plugin)
        text = repo.read(path) or ""
        extra: list[tuple[str, str]] = []
        if command == "pause":
            files = {path: yamledit.set_field(text, ("spec", "paused"), True)}
            subject, unchanged = f"pause {plugin}", f"{plugin} is already paused"
        elif command == "resume":
            files = {path: yamledit.set_field(text, ("spec", "paused"), False)}
            subject, unchanged = f"resume {plugin}", f"{plugin} is not paused"
        elif command == "rollback":
            target = state.from_version if state else None
            if target is None:
                raise CommandRefused(f"no last good version is known for {plugin}; commit the version to run instead")
            files = {path: yamledit.set_field(text, ("spec", "version"), target)}
            subject, unchanged = f"roll back {plugin} to {target}", f"{plugin} is already at {target}"
        else:
            if state is None or state.phase.terminal:
                raise CommandRefused(f"{plugin} has no rollout in progress to approve")
            if same_person(by, state.requested_by, fleet.access.identities if fleet.access else {}):
                raise CommandRefused(f"{by} committed {plugin} {state.target_version} and cannot also approve it "
                                     "(two-person rule): ask someone else")
            batch = batch or _awaiting_batch(fleet, plugin, state)
            _check_batch(fleet, plugin, batch)
            approvals_path = f"approvals/{plugin}.yaml"
            approved = _approvals_text(repo.read(approvals_path), plugin, state, batch, by, now)
            if approved is None:
                return CommandResult(False, f"batch {batch} of {plugin} {state.target_version} is already approved")
            files = {approvals_path: approved}
            subject, unchanged = f"approve {plugin} {state.target_version} batch {batch}", ""
            extra = [("Grayops-Batch", batch), ("Approved-By", by), ("Desired-Commit", state.desired_commit)]
        if state is not None:
            extra.insert(0, ("Grayops-Rollout", state.rollout_id))
        message = subject + (f": {reason}" if reason else "")
        all_trailers = [*extra, ("Grayops-Action", command), ("Requested-By", by)]
        if reason:
            all_trailers.append(("Grayops-Reason", reason))
        commit = repo.commit(files, message, [*all_trailers, *trailers, *([once] if once else [])])
        if commit is None:
            return CommandResult(False, unchanged)
        pushed = False
        if not remote_down:
            result = repo.push()
            pushed = result.pushed
            if result.conflict is not None:
                raise CommandRefused(f"a concurrent change to {', '.join(result.conflict.files)} conflicts with "
                                     f"this command; nothing was pushed (kept on {result.conflict.saved_branch})")
            # A rejected push rebases our commit onto the remote's, under a new id; it stays the branch's tip
            # (we hold the clone's lock), and that id is the one to quote.
            commit = repo.head()
        where = "pushed" if pushed else "committed in the clone; the remote is unreachable, it is pushed when back"
        return CommandResult(True, f"{message} ({commit[:10]}, {where})", commit, pushed)


def person_key(name: str) -> str:
    """`U0OPS1 (alice)` -> `u0ops1`: a chat user is known by their ID; anyone else by the name, case-folded."""
    return name.split(" (", 1)[0].strip().casefold()


def same_person(by: str, requested_by: str | None, identities: Mapping[str, Sequence[str]]) -> bool:
    """Two-person rule: `by` is the one who committed the version change (`requested_by`: its Requested-By
    trailer, else its git author name). A chat user ID counts together with the names access.yaml's
    `identities` lists for it, so `U0OPS1 (alice)` is the same person as the git author `Alice Ops` when
    `identities: {U0OPS1: [Alice Ops]}`."""
    if not requested_by:
        return False

    def names(who: str) -> set[str]:
        key = person_key(who)
        found = {key}
        for user, aliases in identities.items():
            known = {user.casefold(), *(a.casefold() for a in aliases)}
            if key in known:
                found |= known
        return found

    return bool(names(by) & names(requested_by))


def _refresh(repo: GitRepo) -> bool:
    """Bring the clone up to date; True when the remote cannot be reached (the command still acts locally)."""
    try:
        repo.fetch()
    except RemoteUnavailable as err:
        log.warning("remote unreachable, acting on the local clone: %s", err)
        return True
    conflict = repo.integrate()
    if conflict is not None:
        raise CommandRefused(f"the clone's own commits conflict with the remote on {', '.join(conflict.files)}")
    return False


def _fleet(repo: GitRepo, adapters: AdapterModels) -> Fleet:
    from policies import builtin_policies

    try:
        return load_fleet(repo.desired_files(), builtin_policies(), adapters=adapters)
    except FleetInvalid as err:
        raise CommandRefused(f"the fleet repository is invalid at HEAD, fix it first:\n{err}") from None


def _state(repo: GitRepo, plugin: str) -> RolloutState | None:
    from reconciler.shell import load_status, status_path

    text = repo.status_files().get(status_path(plugin))
    return load_status(text) if text else None


def _awaiting_batch(fleet: Fleet, plugin: str, state: RolloutState) -> str:
    """The next batch that needs an approval, from the plan of what is left."""
    spec = fleet.plugins[plugin].spec
    policy = fleet.policies[spec.policy]
    assigned = {iid for b in state.batches for iid in b.instances}
    for planned in cut(order_instances(select_instances(spec, fleet.settings.clusters), policy), policy.batches,
                       assigned):
        if planned.spec.approval:
            return planned.name
    raise CommandRefused(f"no batch of {plugin} {state.target_version} is left that needs an approval")


def _check_batch(fleet: Fleet, plugin: str, batch: str) -> None:
    policy = fleet.policies[fleet.plugins[plugin].spec.policy]
    gated = [b.name for b in policy.batches if b.approval]
    if batch not in gated:
        listed = ", ".join(gated) or "none"
        raise CommandRefused(f"batch {batch!r} of {plugin} does not need an approval (batches that do: {listed})")


def _approvals_text(text: str | None, plugin: str, state: RolloutState, batch: str, by: str,
                    now: datetime) -> str | None:
    doc = yaml.safe_load(text) if text else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    records = doc.setdefault("approvals", []) or []
    for record in records:
        if (record.get("version") == state.target_version and record.get("batch") == batch
                and state.desired_commit.startswith(str(record.get("desiredCommit")))):
            return None
    records.append({"version": state.target_version, "batch": batch, "desiredCommit": state.desired_commit,
                    "by": by, "at": fmt_time(now)})
    doc["approvals"] = records
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
