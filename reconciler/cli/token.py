"""`grayops token issue`: an approval token for the API's critical operations, as the API issues it (README
"HTTP API", Approval tokens). The token goes to stdout, once; what it is bound to goes to stderr."""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from reconciler.api.approval import ApprovalRefused, issue_at_head
from reconciler.cli.errors import DONE, Failed, UsageError, say
from reconciler.cli.options import Subparsers, repo_args, who
from reconciler.cli.wiring import full_registry
from reconciler.core.model import fmt_time
from reconciler.core.spec import APPROVAL_ACTIONS
from reconciler.core.text import NAME_LIMIT, one_line
from reconciler.core.timing import parse_duration


def add_parser(sub: Subparsers) -> None:
    token = sub.add_parser("token", help="approval tokens for the HTTP API's critical operations",
                           description="Approval tokens for the HTTP API's approve, retry and resume (README "
                                       "\"HTTP API\").")
    verbs = token.add_subparsers(dest="verb", required=True, metavar="VERB")
    text = "issue a single-use approval token: printed once on stdout, its SHA-256 committed"
    issue = verbs.add_parser("issue", help=text, description=text[:1].upper() + text[1:] + ".")
    issue.add_argument("--plugin", required=True)
    issue.add_argument("--action", required=True, choices=APPROVAL_ACTIONS, help="the one operation it allows")
    issue.add_argument("--ttl", default="15m", help="how long it is valid, at most 1d (default: 15m)")
    repo_args(issue, remote=True)
    issue.add_argument("--workdir", help="act in this clone (e.g. the reconciler's); default: a temporary clone, "
                                         "pushed at once")
    issue.add_argument("--as", dest="as_", metavar="NAME",
                       help="who issues it, recorded in the commit (default: the login name)")
    issue.set_defaults(func=issue_token)


def issue_token(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="grayops: %(message)s")
    try:
        ttl = timedelta(seconds=parse_duration(args.ttl))
    except ValueError as err:
        raise UsageError(f"--ttl: {err}") from None
    shared = args.workdir is not None
    with tempfile.TemporaryDirectory(prefix="grayops-cmd-") as tmp:
        repo = GitRepo(args.repo, Path(args.workdir) if shared else Path(tmp), branch=args.branch,
                       status_branch=args.status_branch)
        repo.ensure_clone()
        try:
            issued = issue_at_head(repo, args.plugin, args.action, one_line(who(args.as_), NAME_LIMIT),
                                   datetime.now(UTC), ttl, full_registry().models)
        except ApprovalRefused as err:
            raise (UsageError if str(err).startswith("ttl") else Failed)(str(err)) from None
    if not issued.pushed and not shared:
        raise Failed("the token's record could not be pushed and this clone is temporary: nothing was issued")
    print(issued.token)
    sys.stdout.flush()
    say(f"approval token {issued.id} for {issued.action} of {args.plugin} {issued.version}, single use, until "
        f"{fmt_time(issued.expires)} ({issued.commit[:12]}{', pushed' if issued.pushed else ', not pushed yet'})")
    return DONE
