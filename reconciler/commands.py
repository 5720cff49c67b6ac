"""Commands as commits: pause, resume, rollback, approve and retry, shared by the CLI and the chat bot.

Each command edits one human-owned file in the fleet repository (keeping its comments), commits it with
trailers saying who asked and why, and pushes. A command that changes nothing makes no commit. When the
remote is down the commit stays in the clone (the reconciler's own, when shared, acts on it at once) and is
pushed later; the result says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import yaml

from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable
from reconciler.core import yamledit
from reconciler.core.brakes import plugin_alone
from reconciler.core.engine import find_approval, retry_point
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import approvals_path, plugin_files, status_path
from reconciler.core.model import Phase, RolloutState, fmt_time
from reconciler.core.people import Directory, Role, conflict, version_people
from reconciler.core.plan import batches_left, select_instances
from reconciler.core.spec import BRAKES, AdapterModels, ApprovalRecord, CommitCommand
from reconciler.core.status import StatusUnreadable, load_status
from reconciler.core.text import NAME_LIMIT, REASON_LIMIT, one_line
from reconciler.shell.desired import judge_plugin_approvals

log = logging.getLogger(__name__)

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
    command: CommitCommand,
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
    arrived = time.monotonic()
    with repo.lock():
        remote_down = _refresh(repo, arrived)
        if once is not None and (done := repo.find_trailer(*once, since=now - ONCE_WINDOW)) is not None:
            return CommandResult(False, f"{once[0]} {once[1]} was already carried out in {done[:10]}",
                                 done, done_before=True)
        fleet, refused = _fleet(repo, command, adapters)
        note = ""
        if fleet is None:  # a brake at a refused HEAD: it acts on the plugin's own file all the same
            path, text, note = _brake_file(repo, plugin, refused)
        elif plugin not in fleet.plugins:
            known = ", ".join(sorted(fleet.plugins)) or "none"
            raise CommandRefused(f"no plugin named {plugin!r} (known: {known})")
        else:
            path = fleet.plugin_paths[plugin]
            text = repo.read(path) or ""
        state = _state(repo, plugin, needed=command not in ("pause", "resume"))
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
            assert fleet is not None  # only brakes act at a refused HEAD
            state, batch = _retryable(fleet, plugin, state)
            asked = _retry_files(repo, plugin, path, text, state, batch, by, now)
            if asked is None:
                return CommandResult(False, f"a retry of batch {batch} of {plugin} {state.target_version} is already "
                                            "asked for")
            files = asked
            subject, unchanged = f"retry {plugin} {state.target_version} batch {batch}", ""
            extra = [("Grayops-Batch", batch), ("Desired-Commit", state.desired_commit)]
        else:
            assert fleet is not None  # only brakes act at a refused HEAD
            if state is None or state.phase.terminal:
                raise CommandRefused(f"{plugin} has no rollout in progress to approve")
            _two_person_rule(repo, fleet, plugin, state, by)
            batch = batch or _awaiting_batch(fleet, plugin, state)
            _check_batch(fleet, plugin, batch)
            approved = _approvals_text(repo.read(approvals_path(plugin)), plugin, state, batch, by, now,
                                       _accepted_approvals(repo, fleet, plugin))
            if approved is None:
                return CommandResult(False, f"batch {batch} of {plugin} {state.target_version} is already approved")
            files = {approvals_path(plugin): approved}
            subject, unchanged = f"approve {plugin} {state.target_version} batch {batch}", ""
            extra = [("Grayops-Batch", batch), ("Approved-By", by), ("Desired-Commit", state.desired_commit)]
        if state is not None:
            extra.insert(0, ("Grayops-Rollout", state.rollout_id))
        message = subject + (f": {reason}" if reason else "")
        all_trailers = [*extra, ("Grayops-Action", command), ("Requested-By", by)]
        if reason:
            all_trailers.append(("Grayops-Reason", reason))
        if note:  # the subject is one line: the note goes in a trailer of its own
            all_trailers.append(("Grayops-Note", note))
        commit = repo.commit(files, message, [*all_trailers, *trailers, *([once] if once else [])])
        if commit is None:
            return CommandResult(False, unchanged + (f"; {note}" if note else ""))
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
        return CommandResult(True, f"{message} ({commit[:10]}, {where})" + (f"; {note}" if note else ""), commit,
                             pushed)


def _two_person_rule(repo: GitRepo, fleet: Fleet, plugin: str, state: RolloutState, by: str) -> None:
    """Refuse an approval by the version commit's author, committer or requester (README "The two-person
    rule"); the reconciler judges every approval it reads the same way."""
    version = repo.change_of(state.desired_commit)
    if version is None:
        raise CommandRefused(f"the version commit {state.desired_commit[:10]} of {plugin} is not in the history of "
                             "the fleet repository, so who committed it is unknown (two-person rule)")
    found = conflict([Role("the approver", by)], version_people(version, (repo.author_name, repo.author_email)),
                     Directory.of(fleet.access))
    if found is not None:
        other = found[1]
        raise CommandRefused(f"{by} is the same person as {other.who}, {other.role} ({plugin} "
                             f"{state.target_version}), and cannot also approve it (two-person rule): ask someone else")


def _refresh(repo: GitRepo, arrived: float) -> bool:
    """Bring the clone up to date; True when the remote cannot be reached (the command still acts locally).

    A fetch that started after the command was asked (another command's, or the reconciler's, while this one
    waited for the clone) is as fresh as its own would be: many commands at once share it."""
    try:
        if repo.fetch_started is None or repo.fetch_started < arrived:
            repo.fetch()
    except RemoteUnavailable as err:
        log.warning("remote unreachable, acting on the local clone: %s", err)
        return True
    conflict = repo.integrate()
    if conflict is not None:
        raise CommandRefused(f"the clone's own commits conflict with the remote on {', '.join(conflict.files)}")
    return False


HISTORY_LIMIT = 100  # how far back a broken plugin file's last valid content is looked for


def _fleet(repo: GitRepo, command: CommitCommand,
           adapters: AdapterModels) -> tuple[Fleet | None, FleetInvalid | None]:
    """The revision at HEAD; at a refused one, (None, its errors) for a brake, else CommandRefused."""
    from policies import builtin_policies

    try:
        return load_fleet(repo.desired_files(), builtin_policies(), adapters=adapters), None
    except FleetInvalid as err:
        if command in BRAKES:
            return None, err
        raise CommandRefused(f"the fleet repository is invalid at HEAD, fix it first:\n{err}") from None


def _brake_file(repo: GitRepo, plugin: str, refused: FleetInvalid | None) -> tuple[str, str, str]:
    """At a refused HEAD: the plugin's file, the text to edit and a note. The text at HEAD when the file reads
    on its own (so only the brake changes), else its last content that did (which also undoes its breakage)."""
    errors = refused.errors if refused else ()
    first = f": {errors[0]}" if errors else ""
    files = repo.desired_files()
    path = next((p for p in plugin_files(plugin) if p in files), None)
    if path is None:
        raise CommandRefused(f"no plugin named {plugin!r} at HEAD, and HEAD is refused ({len(errors)} error(s)){first}")
    note = (f"HEAD is refused ({len(errors)} error(s){first}); the reconciler obeys this brake all the same")
    if plugin_alone(path, files[path]) is not None:
        return path, files[path], note
    for change in repo.history([path], limit=HISTORY_LIMIT):
        text = repo.file_at(change.commit, path)
        if plugin_alone(path, text) is not None:
            assert text is not None
            return path, text, (f"{path} is invalid at HEAD, so its last valid content (from {change.commit[:10]}) "
                                f"was edited; {note}")
    raise CommandRefused(f"{path} is invalid at HEAD and no earlier version of it is valid either; fix it first"
                         f"{first}")


def recorded_state(repo: GitRepo, plugin: str) -> RolloutState | None:
    """The plugin's rollout as status/ records it, None when there is none; raises StatusUnreadable."""
    path = status_path(plugin)
    text = repo.status_files().get(path)
    return load_status(text, path) if text else None


def _state(repo: GitRepo, plugin: str, needed: bool) -> RolloutState | None:
    """The plugin's recorded rollout. An unreadable status refuses a command that `needed` it; pause and
    resume go on without it (a brake must work whatever the record says)."""
    try:
        return recorded_state(repo, plugin)
    except StatusUnreadable as err:
        if needed:
            raise CommandRefused(f"{err}; this command needs the recorded rollout") from None
        log.warning("%s; going on without the recorded rollout", err)
        return None


def _awaiting_batch(fleet: Fleet, plugin: str, state: RolloutState) -> str:
    """The next batch that needs an approval, from the plan of what is left."""
    spec = fleet.plugins[plugin].spec
    for planned in batches_left(select_instances(spec, fleet.settings.clusters), fleet.policies[spec.policy],
                                state.batches):
        if planned.spec.approval:
            return planned.name
    raise CommandRefused(f"no batch of {plugin} {state.target_version} is left that needs an approval")


def _check_batch(fleet: Fleet, plugin: str, batch: str) -> None:
    policy = fleet.policies[fleet.plugins[plugin].spec.policy]
    gated = [b.name for b in policy.batches if b.approval]
    if batch not in gated:
        listed = ", ".join(gated) or "none"
        raise CommandRefused(f"batch {batch!r} of {plugin} does not need an approval (batches that do: {listed})")


def _accepted_approvals(repo: GitRepo, fleet: Fleet, plugin: str) -> tuple[ApprovalRecord, ...]:
    return judge_plugin_approvals(repo, fleet, plugin)[0]


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
    current = repo.read(approvals_path(plugin))
    doc = yaml.safe_load(current) if current else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    records = doc.get("retries") or []
    if any(r.get("rolloutId") == state.rollout_id and r.get("failedAt") == failed_at for r in records):
        return None
    records.append({"version": state.target_version, "rolloutId": state.rollout_id, "batch": batch,
                    "failedAt": failed_at, "by": by, "at": fmt_time(now)})
    doc["retries"] = records
    files = {approvals_path(plugin): yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)}
    if state.phase is Phase.PAUSED:
        files[path] = yamledit.set_field(text, ("spec", "paused"), False)
    return files


def _approvals_text(text: str | None, plugin: str, state: RolloutState, batch: str, by: str,
                    now: datetime, accepted: Sequence[ApprovalRecord]) -> str | None:
    """approvals/<plugin>.yaml with this approval added; None when the batch already has one the two-person
    rule accepts (a refused one, e.g. written by hand by the version's author, does not count)."""
    if find_approval(accepted, state, batch) is not None:
        return None
    doc = yaml.safe_load(text) if text else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    records = doc.setdefault("approvals", []) or []
    records.append({"version": state.target_version, "batch": batch, "desiredCommit": state.desired_commit,
                    "by": by, "at": fmt_time(now)})
    doc["approvals"] = records
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
