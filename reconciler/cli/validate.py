"""`grayops validate`: every file of a fleet repository checked, each error as `path:line: field: message`;
with --check-queries, each metric query run once against the Prometheus grayops.yaml names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.prometheus import PrometheusSettings, check_queries
from reconciler.adapters.snapshot import read_tree
from reconciler.cli.errors import DONE, FAILED, Failed
from reconciler.cli.options import Subparsers
from reconciler.cli.wiring import full_registry
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet


def add_parser(sub: Subparsers) -> None:
    validate = sub.add_parser("validate", help="check every file of a fleet repository; exit 1 on any error")
    validate.add_argument("path", nargs="?", default=".")
    validate.add_argument("--check-queries", action="store_true",
                          help="also run each metric query once against the Prometheus in grayops.yaml")
    validate.set_defaults(func=validate_command)


def validate_command(args: argparse.Namespace) -> int:
    root = Path(args.path)
    if not root.is_dir():
        raise Failed(f"{root} is not a directory")
    try:
        fleet = load_fleet(read_tree(root), builtin_policies(), adapters=full_registry().models)
    except FleetInvalid as err:
        for error in err.errors:
            print(error, file=sys.stderr)
        print(f"{len(err.errors)} error(s); the revision would be refused", file=sys.stderr)
        return FAILED
    print(f"ok: {len(fleet.plugins)} plugin(s), {len(fleet.policy_paths)} policy file(s), "
          f"{len(fleet.settings.clusters)} cluster(s)")
    if args.check_queries:
        return print_query_checks(fleet)
    return DONE


def print_query_checks(fleet: Fleet) -> int:
    """Each query's outcome in one line (failures on stderr, with the policy file), then the count."""
    settings = fleet.settings.metrics
    if not isinstance(settings, PrometheusSettings):
        raise Failed(f"--check-queries needs metrics.provider: prometheus (grayops.yaml has {settings.provider})")
    checked = failed = 0
    for check in check_queries(fleet, settings):
        checked += 1
        if check.answer.error is not None:
            failed += 1
            print(f"{check.policy_path}: {check.plugin} {check.metric}: {check.answer.error}", file=sys.stderr)
        else:
            print(f"query ok: {check.plugin} {check.metric} ({len(check.answer.values)} series)")
    if failed:
        print(f"{failed} of {checked} queries failed", file=sys.stderr)
        return FAILED
    print(f"ok: {checked} queries answered by {settings.url}")
    return DONE
