"""Acknowledging a critical alert (README "Owners and escalation"): a commit, from Slack's Acknowledge button or
`POST /api/v1/alerts/{id}/ack`.

The record goes under `acks:` in `approvals/<plugin>.yaml` (the plugin is the alert id's first part), with
`Grayops-Action: ack`, `Grayops-Alert: <id>` and `Requested-By` trailers, so `git log` says who acknowledged
what and when, and a restarted reconciler reads it with the revision. Acknowledging twice changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import yaml

from reconciler.adapters.gitrepo import GitRepo
from reconciler.commands import CommandRefused, _refresh
from reconciler.core.escalation import plugin_of_alert
from reconciler.core.layout import approvals_path
from reconciler.core.model import fmt_time
from reconciler.core.spec import AckRecord
from reconciler.core.text import NAME_LIMIT, one_line

TRAILER = "Grayops-Alert"


@dataclass(frozen=True)
class Acked:
    changed: bool
    message: str
    commit: str | None = None
    pushed: bool = False


def acknowledge(repo: GitRepo, alert: str, by: str, now: datetime) -> Acked:
    """Record that `by` acknowledged `alert`, and push; CommandRefused when `alert` is not an alert id."""
    plugin = plugin_of_alert(alert)
    if plugin is None:
        raise CommandRefused(f"{alert!r} is not an alert id (<plugin>-<10 hex digits>)")
    by = one_line(by, NAME_LIMIT) or "unknown"
    path = approvals_path(plugin)
    asked = time.monotonic()
    with repo.lock():
        remote_down = _refresh(repo, asked)
        doc = _approvals_doc(repo.read(path), plugin)
        acks = doc.get("acks")
        acks = [a for a in acks if isinstance(a, dict)] if isinstance(acks, list) else []
        earlier = next((a for a in acks if a.get("alert") == alert), None)
        if earlier is not None:
            return Acked(False, f"alert {alert} was already acknowledged by {earlier.get('by')} at {earlier.get('at')}")
        record = AckRecord(alert=alert, by=by, at=fmt_time(now) or "")
        doc["acks"] = [*acks, record.model_dump(by_alias=True)]
        text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
        subject = f"acknowledge alert {alert} of {plugin}"
        commit = repo.commit({path: text}, subject,
                             [("Grayops-Action", "ack"), (TRAILER, alert), ("Requested-By", by)])
        assert commit is not None  # a new record always changes the file
        pushed = False
        if not remote_down:
            result = repo.push()
            pushed = result.pushed
            if result.conflict is not None:
                conflict = result.conflict
                raise CommandRefused(f"a concurrent change to {', '.join(conflict.files)} conflicts with this "
                                     f"acknowledgement; nothing was pushed (kept on {conflict.saved_branch})")
            commit = repo.head()
    where = "pushed" if pushed else "committed in the clone; the remote is unreachable, it is pushed when back"
    return Acked(True, f"{subject} ({commit[:10]}, {where})", commit, pushed)


def _approvals_doc(text: str | None, plugin: str) -> dict[str, object]:
    doc = yaml.safe_load(text) if text else None
    if not isinstance(doc, dict):
        doc = {"apiVersion": "grayops.dev/v1", "kind": "Approvals", "metadata": {"name": plugin}, "approvals": []}
    return doc
