"""Commands as commits: pause, resume, rollback, approve and retry, shared by the CLI and the chat bot.

Each command edits one human-owned file in the fleet repository (keeping its comments), commits it with
trailers saying who asked and why, and pushes. A command that changes nothing makes no commit. When the
remote is down the commit stays in the clone (the reconciler's own, when shared, acts on it at once) and is
pushed later; the result says so.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import yaml

from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable
from reconciler.core import yamledit
from reconciler.core.engine import retry_point
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.model import Phase, RolloutState, fmt_time
from reconciler.core.plan import cut, order_instances, select_instances

log = logging.getLogger(__name__)

CommandName = Literal["pause", "resume", "rollback", "approve", "retry"]


class CommandRefused(Exception):
    """The command cannot be carried out as asked (unknown plugin, nothing to approve, ...); nothing changed."""


@dataclass(frozen=True)
class CommandResult:
    changed: bool  # a commit was made
    message: str  # one line for the person who asked
    commit: str | None = None
    pushed: bool = False


def run_command(
    repo: GitRepo,
    command: CommandName,
    plugin: str,
    by: str,
    now: datetime,
    reason: str | None = None,
    batch: str | None = None,
    trailers: Sequence[tuple[str, str]] = (),
) -> CommandResult:
    """Carry out one command on the fleet repository behind `repo`; raises CommandRefused."""
    with repo.lock():
        remote_down = _refresh(repo)
        fleet = _fleet(repo)
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
        elif command == "retry":
            state, batch = _retryable(fleet, plugin, state)
            asked = _retry_files(repo, plugin, path, text, state, batch, by, now)
            if asked is None:
                return CommandResult(False, f"a retry of batch {batch} of {plugin} {state.target_version} is already "
                                            "asked for")
            files = asked
            subject, unchanged = f"retry {plugin} {state.target_version} batch {batch}", ""
            extra = [("Grayops-Batch", batch), ("Desired-Commit", state.desired_commit)]
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
        commit = repo.commit(files, message, [*all_trailers, *trailers])
        if commit is None:
            return CommandResult(False, unchanged)
        pushed = False
        if not remote_down:
            result = repo.push()
            pushed = result.pushed
            if result.conflict is not None:
                raise CommandRefused(f"a concurrent change to {', '.join(result.conflict.files)} conflicts with "
                                     f"this command; nothing was pushed (kept on {result.conflict.saved_branch})")
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


def _fleet(repo: GitRepo) -> Fleet:
    from policies import builtin_policies

    try:
        return load_fleet(repo.desired_files(), builtin_policies())
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


def _retryable(fleet: Fleet, plugin: str, state: RolloutState | None) -> tuple[RolloutState, str]:
    """The rollout and batch a retry runs again; refused when nothing failed."""
    point = retry_point(state) if state is not None else None
    if state is None or point is None:
        where = f" ({state.phase.value}: {state.reason})" if state is not None else ""
        hint = f"; grayops resume {plugin} continues a paused rollout" if state and state.phase is Phase.PAUSED else ""
        raise CommandRefused(f"nothing failed to retry in {plugin}{where}{hint}")
    version = fleet.plugins[plugin].spec.version
    if version not in (state.target_version, state.from_version):
        raise CommandRefused(f"{plugin} {version} is committed now; a retry applies to the failed rollout of "
                             f"{state.target_version} only")
    return state, point[0]


def _retry_files(repo: GitRepo, plugin: str, path: str, text: str, state: RolloutState, batch: str, by: str,
                 now: datetime) -> dict[str, str] | None:
    """The retry record in approvals/<plugin>.yaml, bound to this rollout and this failure; and for a rollout the
    engine paused after the failure, spec.paused back to false in the same commit. None when already asked."""
    point = retry_point(state)
    assert point is not None
    failed_at = fmt_time(point[1])
    approvals_path = f"approvals/{plugin}.yaml"
    current = repo.read(approvals_path)
    doc = yaml.safe_load(current) if current else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    records = doc.get("retries") or []
    if any(r.get("rolloutId") == state.rollout_id and r.get("failedAt") == failed_at for r in records):
        return None
    records.append({"version": state.target_version, "rolloutId": state.rollout_id, "batch": batch,
                    "failedAt": failed_at, "by": by, "at": fmt_time(now)})
    doc["retries"] = records
    files = {approvals_path: yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)}
    if state.phase is Phase.PAUSED:
        files[path] = yamledit.set_field(text, ("spec", "paused"), False)
    return files


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
