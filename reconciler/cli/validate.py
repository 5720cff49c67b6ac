"""`grayops validate`: every file of a fleet repository checked, each error as `path:line: field: message`;
with --check-queries, each metric query run once against the Prometheus grayops.yaml names. Given files, each is
judged with the fleet it belongs to (a plugin names a policy in another file), found by its grayops.yaml."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.prometheus import PrometheusSettings, check_queries
from reconciler.adapters.snapshot import read_tree
from reconciler.cli.errors import DONE, FAILED, Failed
from reconciler.cli.options import Subparsers
from reconciler.cli.output import dump, markdown_table, output_arg
from reconciler.cli.wiring import full_registry
from reconciler.core.fleet import Fleet, FleetError, FleetInvalid, load_fleet
from reconciler.core.layout import SETTINGS_PATH


def add_parser(sub: Subparsers) -> None:
    validate = sub.add_parser("validate", help="check every file of a fleet repository; exit 1 on any error")
    validate.add_argument("paths", nargs="*", metavar="PATH", default=["."],
                          help="fleet repositories, or files in them (each checked with its whole fleet, found by "
                               "the nearest grayops.yaml above it); default: the current directory")
    output_arg(validate)
    validate.add_argument("--check-queries", action="store_true",
                          help="also run each metric query once against the Prometheus in grayops.yaml")
    validate.set_defaults(func=validate_command)


def validate_command(args: argparse.Namespace) -> int:
    roots = list(dict.fromkeys(fleet_root(Path(path)) for path in args.paths))  # each fleet once, in order
    if args.output == "text" or args.output == "wide":
        return max(validate_fleet(root, args.check_queries, named=len(roots) > 1) for root in roots)
    # for CI annotations: every error as {file, line, field, message}; none when all is valid
    items = [{"file": f"{root}/{e.path}" if len(roots) > 1 else e.path, "line": e.line, "field": e.field,
              "message": e.message} for root in roots for e in fleet_errors(root)]
    if args.output == "markdown":
        sys.stdout.write(markdown_table(("File", "Line", "Field", "Message"), [list(i.values()) for i in items]))
    else:
        sys.stdout.write(dump(items, args.output))
    return FAILED if items else DONE


def judged(root: Path) -> Fleet | FleetInvalid:
    """The fleet at `root` as grayops would read it, or why it would refuse it."""
    try:
        return load_fleet(read_tree(root), builtin_policies(), adapters=full_registry().models)
    except FleetInvalid as err:
        return err


def fleet_errors(root: Path) -> tuple[FleetError, ...]:
    found = judged(root)
    return tuple(found.errors) if isinstance(found, FleetInvalid) else ()


def fleet_root(path: Path) -> Path:
    """The fleet repository `path` is, or the one the file `path` belongs to."""
    if path.is_dir():
        return path
    if not path.exists():
        raise Failed(f"{path}: no such file or directory")
    for parent in path.resolve().parents:
        if (parent / SETTINGS_PATH).is_file():
            return Path(os.path.relpath(parent))
    raise Failed(f"{path} is in no fleet repository (no {SETTINGS_PATH} in its directory or above it)")


def validate_fleet(root: Path, check_queries: bool, named: bool) -> int:
    """One fleet's errors (paths in the repository, as git shows them) or its summary; with `named` (several fleets
    at once) each line names the fleet."""
    shown = f"{root}/" if named else ""
    fleet = judged(root)
    if isinstance(fleet, FleetInvalid):
        for error in fleet.errors:
            print(f"{shown}{error}", file=sys.stderr)
        print(f"{len(fleet.errors)} error(s); the revision would be refused", file=sys.stderr)
        return FAILED
    print(f"ok: {f'{root}: ' if named else ''}{len(fleet.plugins)} plugin(s), {len(fleet.policy_paths)} policy "
          f"file(s), {len(fleet.settings.clusters)} cluster(s)")
    if check_queries:
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
