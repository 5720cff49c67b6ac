"""`grayops plan`: what a revision would roll out (batches, instances, gates, duration), for merge requests."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.forge import thread_from_env
from reconciler.adapters.gitrepo import GitError
from reconciler.adapters.snapshot import read_ref, read_repo
from reconciler.adapters.trust.gate import preview_scan
from reconciler.adapters.trust.oci import RegistryClient
from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import Subparsers, repo_args
from reconciler.cli.output import DATA_FORMATS, FORMATS, dump, output_arg
from reconciler.cli.wiring import full_registry
from reconciler.core import planview
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.layout import status_plugin
from reconciler.core.status import load_status


def add_parser(sub: Subparsers) -> None:
    plan = sub.add_parser("plan", help="what a revision would roll out: batches, instances, gates, duration")
    repo_args(plan)
    plan.add_argument("--base", help="only plugins changed since this ref (for merge request pipelines)")
    output_arg(plan)
    plan.add_argument("--format", dest="output", choices=FORMATS, help=argparse.SUPPRESS)  # the older spelling
    plan.add_argument("--comment", choices=["github", "gitlab"],
                      help="also post the plan (as Markdown) as one comment on the merge request the CI job runs for, "
                           "edited in place on later runs (README \"Merge requests\")")
    plan.add_argument("--pr", type=int, metavar="N", help="with --comment: the pull or merge request's number "
                                                          "(default: the one the CI job runs for)")
    plan.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace) -> int:
    files = read_repo(args.repo)
    head = load_fleet(files, builtin_policies(), adapters=full_registry().models)  # invalid: its errors, exit 1
    base: Fleet | None = None
    if args.base:
        try:
            base = load_fleet(read_ref(Path(args.repo), args.base), builtin_policies(),
                              adapters=full_registry().models)
        except GitError as err:
            raise Failed(f"cannot read {args.base}: {err}") from err
        except FleetInvalid:
            base = None  # an invalid base: everything counts as changed
    states = {}
    for path, text in files.items():
        if (name := status_plugin(path)) is not None:
            states[name] = load_status(text, path)  # unreadable: one line, exit 1
    names = planview.changed_plugins(base, head) if args.base else sorted(head.plugins)
    plans = planview.build(head, names, base, states, scan_views(head, names))
    if args.comment:
        where = thread_from_env(args.comment, args.pr).upsert(planview.render_markdown(plans))
        print(f"plan posted on the merge request ({where})", file=sys.stderr)
    if args.output in DATA_FORMATS:
        sys.stdout.write(dump(planview.to_doc(plans), args.output))
    elif args.output == "markdown":
        sys.stdout.write(planview.render_markdown(plans))
    else:
        sys.stdout.write(planview.render_text(plans, limit=None if args.output == "wide" else 6))
    return DONE


PLAN_REGISTRY_TIMEOUT = 5.0  # a plan in a merge request pipeline says the registry is unreachable, and goes on


def scan_views(fleet: Fleet, names: list[str]) -> dict[str, planview.ScanView]:
    """What the scan gate would say of each plugin with an `image` and a `scan` policy, read from the registry now
    (README "Supply chain"); why not, in one line, when it cannot be read."""
    client = RegistryClient(fleet.settings.registries, timeout=PLAN_REGISTRY_TIMEOUT)
    views = {}
    try:
        for name in names:
            spec = fleet.plugins[name].spec
            scan = fleet.policies[spec.policy].scan
            if spec.image is None or scan is None:
                continue
            image = f"{spec.image}:{spec.version}"
            found = preview_scan(client, spec.image, spec.version, scan, datetime.now(UTC))
            if isinstance(found, str):
                views[name] = planview.ScanView(image, None, scan.max_severity, None, None, found)
                continue
            digest, judged = found
            views[name] = planview.ScanView(image, digest, scan.max_severity, judged.passed,
                                            judged.summary.as_record()["counts"], judged.reason or "")
    finally:
        client.close()
    return views
