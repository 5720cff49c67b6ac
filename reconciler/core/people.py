"""Who is who, and the two-person rule on approvals (README "The two-person rule"). Pure.

A person acts under several names: a Slack user ID (`U0OPS1 (alice)`, as chat commands record it), git
author and committer identities (`Alice Ops <alice@example.com>`) and the names given to `--as`. access.yaml's
`people:` joins one person's names; without an entry, names compare case-insensitively, and an email also by
its local part (`alice` is `alice@example.com`). The CLI, the chat bot and the reconciler all decide with
`same_person`; the reconciler judges every approval it reads with `judge_approvals` before the engine sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.core.effects import Change, RefusedApproval
from reconciler.core.spec import Access, ApprovalRecord

_SLACK = re.compile(r"^([UW][A-Z0-9]+)\s*\((.*)\)$")  # `U0OPS1 (alice)`: a chat user and their handle
_GIT = re.compile(r"^(.*?)\s*<([^<>]*)>$")  # `Alice Ops <alice@example.com>`
_API = re.compile(r"^(.*?)\s*\(api token [^()]*\)$")  # `ops-bot (api token release-bot)`: the token's person
Identity = tuple[str, str]  # (git author name, email) grayops commits under


def _fold(text: str) -> str:
    return " ".join(text.split()).casefold()


def _email_keys(email: str) -> set[str]:
    email = _fold(email)
    return {email, email.split("@", 1)[0]} if email else set()


def keys_of(who: str) -> frozenset[str]:
    """The names `who` is known by on its own: `U0OPS1 (alice)` -> {u0ops1, alice};
    `Alice Ops <alice@example.com>` -> {alice ops, alice@example.com, alice}; `bob` -> {bob};
    `ops-bot (api token release-bot)` -> {ops-bot} (the person an API token acts for)."""
    who = who.strip()
    if api := _API.match(who):
        return keys_of(api.group(1))
    keys: set[str] = set()
    if slack := _SLACK.match(who):
        keys |= {_fold(slack.group(1)), _fold(slack.group(2))}
    elif git := _GIT.match(who):
        keys |= {_fold(git.group(1))} | _email_keys(git.group(2))
    elif "@" in who:
        keys |= _email_keys(who)
    else:
        keys.add(_fold(who))
    return frozenset(keys - {""})


@dataclass(frozen=True)
class Directory:
    """The people access.yaml lists: each one the set of names they are known by."""

    people: tuple[frozenset[str], ...] = ()

    @classmethod
    def of(cls, access: Access | None) -> Directory:
        if access is None:
            return cls()
        people = [frozenset({_fold(p.name), _fold(p.slack or ""), *(_fold(a) for a in p.aliases)}
                            | {k for e in p.emails for k in _email_keys(e)}) for p in access.people]
        # the deprecated `identities:` map: Slack user ID -> the other names of that person
        people += [frozenset({_fold(user), *(_fold(a) for a in names)}) for user, names in access.identities.items()]
        return cls(tuple(p - {""} for p in people))

    def known_as(self, who: str) -> frozenset[str]:
        """Every name of the person `who` names: their own, and those of each entry one of them is in."""
        keys = keys_of(who)
        return keys.union(*(person for person in self.people if person & keys))


def same_person(a: str, b: str, directory: Directory) -> bool:
    return bool(directory.known_as(a) & directory.known_as(b))


@dataclass(frozen=True)
class Role:
    """Someone the two-person rule compares: who, and as what (`the version's author`)."""

    role: str
    who: str


def is_own(change: Change, own: Identity) -> bool:
    """The commit was written by grayops (a CLI or chat command, or the reconciler), under `own` identity."""
    return change.author is not None and _fold(change.author) == _fold(f"{own[0]} <{own[1]}>")


def version_people(version: Change, own: Identity) -> tuple[Role, ...]:
    """Who stands behind a version commit: its author, its committer when another, and who asked for it when
    grayops wrote it (its Requested-By trailer; in a human's commit that trailer is only a claim)."""
    people = [Role("the version's author", version.author)] if version.author else []
    if version.committer and version.committer != version.author:
        people.append(Role("the version's committer", version.committer))
    requested = version.trailer("requested-by")
    if requested and is_own(version, own):
        people.append(Role("who asked for the version", requested))
    return tuple(people)


def conflict(approvers: Sequence[Role], version: Sequence[Role], directory: Directory) -> tuple[Role, Role] | None:
    """The first approver who is also one of the version's people, with that role; None when all differ."""
    for approver in approvers:
        for other in version:
            if same_person(approver.who, other.who, directory):
                return approver, other
    return None


def refusal(approvers: Sequence[Role], version: Sequence[Role], directory: Directory) -> str | None:
    """Why these approvers may not approve that version, or None when each is another person."""
    found = conflict(approvers, version, directory)
    if found is None:
        return None
    approver, other = found
    if approver.who == other.who:
        return f"{approver.who} is both {approver.role} and {other.role} (two-person rule)"
    return f"{approver.who} ({approver.role}) is the same person as {other.who} ({other.role}) (two-person rule)"


@dataclass(frozen=True)
class ApprovalEvidence:
    """What git says about the approvals of one version commit."""

    version: Change | None  # the commit the approvals name (None: not in the history)
    edits: tuple[Change, ...]  # the commits that changed approvals/<plugin>.yaml since then


Judged = tuple[tuple[ApprovalRecord, ...], tuple[RefusedApproval, ...]]  # (accepted, refused)


def judge_approvals(records: Sequence[ApprovalRecord], evidence: Mapping[str, ApprovalEvidence],
                    directory: Directory, own: Identity) -> Judged:
    """Split approvals into accepted and refused. `evidence` is keyed by each record's desiredCommit.

    An approval written by a grayops command (its commit carries the matching Approved-By, Grayops-Batch and
    Desired-Commit trailers) was given by its `by`. Any other was written by hand, and its `by` is a claim:
    whoever committed approvals/<plugin>.yaml by hand since the version commit stands behind it too. No one
    of them may be the version's author, committer or requester.
    """
    accepted: list[ApprovalRecord] = []
    refused: list[RefusedApproval] = []
    for record in records:
        found = evidence.get(record.desired_commit)
        if found is None or found.version is None:
            why: str | None = (f"its desired commit {record.desired_commit} is not in the history of the fleet "
                               "repository, so who committed the version is unknown (two-person rule)")
        else:
            why = _judge(record, found, directory, own)
        if why is None:
            accepted.append(record)
        else:
            refused.append(RefusedApproval(record, why))
    return tuple(accepted), tuple(refused)


def _judge(record: ApprovalRecord, found: ApprovalEvidence, directory: Directory, own: Identity) -> str | None:
    assert found.version is not None
    approvers = [Role("the approver", record.by)]
    if not any(_wrote(edit, record, own) for edit in found.edits):
        human = [edit for edit in found.edits if not is_own(edit, own)]
        if not human:
            return ("no commit since the version commit wrote this approval, so who gave it is unknown "
                    "(two-person rule)")
        for edit in human:
            approvers += [Role("who wrote the approval", who) for who in (edit.author, edit.committer) if who]
    return refusal(approvers, version_people(found.version, own), directory)


def _wrote(edit: Change, record: ApprovalRecord, own: Identity) -> bool:
    """`edit` is the commit of the grayops command that recorded exactly this approval."""
    desired = edit.trailer("desired-commit") or ""
    return (is_own(edit, own) and edit.trailer("grayops-action") == "approve"
            and edit.trailer("approved-by") == " ".join(record.by.split())
            and edit.trailer("grayops-batch") == record.batch
            and bool(desired) and desired.startswith(record.desired_commit))
