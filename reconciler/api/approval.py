"""Approval tokens: what a critical operation through the API needs besides a scope (README "HTTP API").

Someone allowed to approve issues one (through the API, `grayops token issue` or Slack's `/approve token`, all
through `issue_at_head`): a random token, shown once, recorded by its SHA-256 in
`approvals/<plugin>.yaml` under `tokens:` (a commit), bound to the plugin, its version at HEAD and one action,
for a short time. The commit that uses it carries `Approval-Token: <id>`; a second use finds that commit and is
refused (the same look-up that makes a repeated Slack trigger run once, under the clone's lock).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import yaml
from pydantic import ValidationError

from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.core.layout import approvals_path
from reconciler.core.model import fmt_time, parse_time
from reconciler.core.spec import AdapterModels, ApprovalAction, Approvals, ApprovalTokenRecord

TRAILER = "Approval-Token"
MAX_TTL = timedelta(days=1)  # a use is looked for in the last day of history (commands.ONCE_WINDOW)


class ApprovalRefused(Exception):
    """The approval token cannot be used, or issued, as asked; nothing was committed."""


@dataclass(frozen=True)
class Issued:
    id: str
    token: str  # shown once; only its digest is kept
    version: str
    action: ApprovalAction
    expires: datetime
    commit: str
    pushed: bool


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _approvals_doc(text: str | None, plugin: str) -> dict[str, object]:
    doc = yaml.safe_load(text) if text else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    return doc


def issue(repo: GitRepo, plugin: str, version: str, action: ApprovalAction, by: str, now: datetime,
          ttl: timedelta) -> Issued:
    """Record a new token for `action` on `plugin` `version`, valid for `ttl`, and push it; expired ones are
    dropped from the file in the same commit."""
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ApprovalRefused(f"ttl: between 1s and {int(MAX_TTL.total_seconds() // 3600)}h")
    token = "grayops-approval-" + secrets.token_urlsafe(32)
    record = ApprovalTokenRecord(id=secrets.token_hex(6), sha256=_digest(token), version=version, action=action,
                                 by=by, at=fmt_time(now) or "", expires=fmt_time(now + ttl) or "")
    with repo.lock():
        remote_down = _refresh(repo)
        doc = _approvals_doc(repo.read(approvals_path(plugin)), plugin)
        kept = [t for t in _list(doc.get("tokens")) if (parse_time(t.get("expires")) or now) > now]
        doc["tokens"] = [*kept, record.model_dump(by_alias=True)]
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        # the id is in the subject, not in an Approval-Token trailer: that trailer marks the token's one use
        commit = repo.commit({approvals_path(plugin): text},
                             f"approval token {record.id} for {action} of {plugin} {version}",
                             [("Grayops-Action", "approval-token"), ("Requested-By", by)])
        assert commit is not None  # a new record always changes the file
        pushed = False
        if not remote_down:
            pushed = repo.push().pushed
            commit = repo.head()
    return Issued(record.id, token, version, action, now + ttl, commit, pushed)


def issue_at_head(repo: GitRepo, plugin: str, action: ApprovalAction, by: str, now: datetime, ttl: timedelta,
                  adapters: AdapterModels) -> Issued:
    """`issue` for the version of `plugin` in HEAD's revision, fetched first; ApprovalRefused when HEAD is refused
    or has no such plugin. For the CLI and Slack; the API reads HEAD through its backend's cache."""
    from policies import builtin_policies

    with repo.lock():
        _refresh(repo)
        files = repo.desired_files()
    try:
        fleet = load_fleet(files, builtin_policies(), adapters=adapters)
    except FleetInvalid as err:
        raise ApprovalRefused(f"the fleet repository is invalid at HEAD, fix it first: {err}") from None
    if plugin not in fleet.plugins:
        raise ApprovalRefused(f"no plugin named {plugin} (known: {', '.join(sorted(fleet.plugins)) or 'none'})")
    return issue(repo, plugin, fleet.plugins[plugin].spec.version, action, by, now, ttl)


def _list(value: object) -> list[dict[str, object]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _refresh(repo: GitRepo) -> bool:
    try:
        repo.fetch()
    except RemoteUnavailable:
        return True
    if repo.integrate() is not None:
        raise ApprovalRefused("the clone's own commits conflict with the remote; nothing was issued")
    return False


def check(repo: GitRepo, plugin: str, version: str, action: ApprovalAction, presented: str,
          now: datetime) -> str:
    """The id of the token `presented`, when it was issued for `action` on `plugin` `version` and has not expired;
    ApprovalRefused otherwise. Whether it was used already is for the command to find (`once`)."""
    text = repo.read(approvals_path(plugin))
    try:
        records = Approvals.model_validate(yaml.safe_load(text)).tokens if text else []
    except (ValidationError, yaml.YAMLError):
        raise ApprovalRefused(f"{approvals_path(plugin)} cannot be read; fix it first") from None
    digest = _digest(presented)
    found = None
    for record in records:  # every digest compared, in constant time
        if hmac.compare_digest(record.sha256, digest):
            found = record
    if found is None:
        raise ApprovalRefused(f"the approval token is not one issued for {plugin}")
    if found.action != action:
        raise ApprovalRefused(f"approval token {found.id} was issued for {found.action}, not {action}")
    if found.version != version:
        raise ApprovalRefused(f"approval token {found.id} was issued for {plugin} {found.version}; "
                              f"{version} is committed now")
    expires = parse_time(found.expires)
    if expires is None or expires <= now:
        raise ApprovalRefused(f"approval token {found.id} expired at {found.expires}")
    return found.id
