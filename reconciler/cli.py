"""The `grayops` command.

Exit codes, for scripts: 0 done; 1 refused or failed (invalid repository, unknown plugin, unreachable remote,
nothing to approve); 2 usage error. Errors go to stderr as one clear line (validation: `path:line: field:
message`, one per problem).
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from reconciler import __version__

if TYPE_CHECKING:
    from bot.host import HostedBot
    from reconciler.adapters.kube.lease import LeaderElector
    from reconciler.adapters.registry import Registry
    from reconciler.core.fleet import Fleet
    from reconciler.core.model import RolloutState
    from reconciler.shell import Reconciler

log = logging.getLogger("grayops")

EXAMPLES = """\
examples:
  grayops demo                                   a simulated fleet, end to end, in a temporary directory
  grayops validate ./fleet                       check every file of a fleet repository
  grayops plan --repo . --base origin/main --format markdown    what a merge request would roll out
  grayops run --repo git@example.com:ops/fleet.git --workdir /var/lib/grayops
  grayops status --repo ./fleet billing
  grayops pause billing --repo ./fleet --reason "incident 42" --as alice
  grayops approve billing --batch wave-2 --as bob --repo ./fleet
  grayops retry billing --repo ./fleet --as bob --reason "fault fixed"    run a failed batch again
"""


def _default_workdir(remote: str) -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "grayops"
    slug = Path(remote.rstrip("/")).name.removesuffix(".git") or "fleet"
    return base / f"{slug}-{hashlib.sha1(remote.encode()).hexdigest()[:8]}"


def _who(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _fail(message: str, code: int = 1) -> int:
    print(f"grayops: {message}", file=sys.stderr)
    return code


def full_registry() -> Registry:
    """Every adapter grayops has: the reconciler's own and the bot's Slack notifier. The one place that joins
    them, so nothing else in `reconciler` depends on the bot (README "Adding an adapter")."""
    from bot.factory import SLACK
    from reconciler.adapters.registry import default_registry

    return default_registry().with_(SLACK)


# --- run ----------------------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitError, GitRepo, RemoteUnavailable, RemoteWatcher, WorkdirBusy
    from reconciler.progress import configure_logging
    from reconciler.shell import Reconciler, TickReport
    from reconciler.shell.trust import SupplyChain, TrustSetupError

    display = configure_logging(args.log_level, live=not args.no_progress)
    try:
        supply = SupplyChain.open(args.trust, args.signing_key)  # README "Supply chain"
    except TrustSetupError as err:
        if display is not None:
            display.close()
        return _fail(f"cannot start: {err}")
    workdir = Path(args.workdir or _default_workdir(args.repo)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch)
    try:
        repo.hold_workdir()  # one reconciler per workdir, for the process's lifetime
    except WorkdirBusy as err:
        if display is not None:
            display.close()
        return _fail(f"cannot start: {err}")
    from reconciler.adapters.telemetry import Telemetry, TelemetryServer, parse_listen

    telemetry = Telemetry(stale_after=max(60.0, 10 * args.interval))
    served: TelemetryServer | None = None
    if args.listen:
        try:
            host, port = parse_listen(args.listen)
            served = TelemetryServer(telemetry, host, port).start()
        except (ValueError, OSError) as err:
            return _fail(f"cannot serve telemetry on {args.listen}: {err}", 2 if isinstance(err, ValueError) else 1)
        log.info("telemetry on http://%s:%d (/metrics, /healthz, /readyz)", host, served.port)
    reconciler = Reconciler(repo, workdir, builtin_policies(), poll_interval=args.poll, telemetry=telemetry,
                            registry=full_registry(), supply=supply)
    try:
        reconciler.start()
    except RemoteUnavailable as err:
        if served is not None:
            served.stop()
        return _fail(f"cannot start: {err}")
    log.info("grayops %s reconciling %s (branch %s) in %s", __version__, args.repo, args.branch, workdir)
    watcher = RemoteWatcher(args.repo, reconciler.wake.set)
    watcher.start()
    hosted = _host_bot(reconciler, args.bot_host, args.bot_port)
    elector = _elect(args) if args.leader_elect else None
    if isinstance(elector, str):
        watcher.stop()
        return _fail(elector)
    exporter = None
    stopping = False
    report: TickReport | None = None
    failed_ticks = 0  # in a row, because of a git error

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        reconciler.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            started = time.monotonic()
            if elector is not None and not elector.is_leader():  # only the Lease's holder acts
                reconciler.wake.wait(min(args.interval, elector.renew))
                continue
            try:
                report = reconciler.tick()
                failed_ticks = 0
            except WorkdirBusy as err:  # the workdir was deleted, and another reconciler took the new one
                return _fail(f"stopping: {err}")
            except GitError as err:
                # e.g. the workdir deleted under us (rm -rf) and caught half way: the next tick clones again
                failed_ticks += 1
                if failed_ticks >= 3 and not repo.lost():
                    raise
                log.warning("a git command failed during a tick, trying again: %s", err)
                reconciler.wake.wait(args.interval)
                continue
            if exporter is None and args.sim_metrics_port is not None and reconciler.runtime and reconciler.runtime.sim:
                from reconciler.adapters.sim_exporter import SimExporter

                exporter = SimExporter(reconciler.runtime.sim, port=args.sim_metrics_port)
                exporter.start()
                log.info("sim metrics served on %s", exporter.url)
            if display is not None:
                display.show(report.states, reconciler.batch_totals())
            if args.once and reconciler.idle():
                if reconciler.fleet is None:
                    errors = "\n  ".join(report.invalid)
                    return _fail(f"no valid revision of the fleet repository to act on:\n  {errors}")
                break
            reconciler.wake.wait(max(0.0, args.interval - (time.monotonic() - started)))
    finally:
        watcher.stop()
        if elector is not None:
            elector.stop()
        if served is not None:
            served.stop()
        if hosted is not None:
            hosted.stop()
        if exporter is not None:
            exporter.stop()
        if display is not None:
            display.close()
        if reconciler.runtime is not None:
            reconciler.runtime.close()  # the notifiers deliver what they queued (bounded)
    for name, state in sorted(reconciler.states.items()):
        log.info("%s %s: %s (%s)", name, state.target_version, state.phase.value, state.reason)
    unpushed = repo.unpushed() if args.once else 0
    if unpushed:
        why = report.remote_error if report is not None and report.remote_error else "the remote did not take them"
        return _fail(f"{unpushed} commit(s) left unpushed in {repo.path}: {why}")
    return 0


def _elect(args: argparse.Namespace) -> LeaderElector | str:
    """Leader election on a Lease in the cluster grayops runs in (or the kubeconfig's current context)."""
    import os
    import socket

    from reconciler.adapters.kube.client import ClusterAccessError, connect_default
    from reconciler.adapters.kube.lease import LeaderElector

    namespace = args.lease_namespace
    if namespace is None:
        path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        namespace = path.read_text().strip() if path.exists() else "grayops"
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    try:
        api = connect_default()
    except ClusterAccessError as err:
        return f"cannot take part in leader election: {err}"
    log.info("leader election on lease %s/%s as %s", namespace, args.lease_name, identity)
    return LeaderElector(api, namespace, args.lease_name, identity, duration=args.lease_duration).start()


def _host_bot(reconciler: Reconciler, host: str, port: int) -> HostedBot | None:
    """The Slack bot in this process when Slack is configured, sharing the reconciler's clone: a command is
    committed there and wakes the reconciler, so it acts at once (even with the remote down)."""
    from bot.host import HostedBot, SlackEnv
    from bot.notifier import SlackNotifier
    from bot.service import Backend

    slack = SlackEnv.read()
    if not slack.configured:
        if slack.bot_token:
            log.warning("Slack commands are off: %s", slack.missing())
        return None

    def thread_of(plugin: str) -> tuple[str, str] | None:
        runtime = reconciler.runtime
        for watcher in runtime.watchers if runtime else ():
            if isinstance(watcher, SlackNotifier):
                return watcher.thread_of(plugin)
        return None

    try:
        return HostedBot(Backend(reconciler.repo, reconciler.wake.set, thread_of, hosted=True,
                                 adapters=reconciler.registry.models), slack, host, port)
    except (OSError, ValueError) as err:
        log.error("the Slack bot cannot start: %s; reconciling without it", err)
        return None


def cmd_bot(args: argparse.Namespace) -> int:
    from bot.host import HostedBot, Pusher, SlackEnv
    from bot.service import Backend
    from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable

    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    slack = SlackEnv.read()
    if not slack.configured:
        return _fail(f"cannot start the Slack bot: {slack.missing()}")
    workdir = Path(args.workdir or _default_workdir(args.repo)).resolve()
    repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch)
    try:
        repo.ensure_clone()
        if args.status_branch is None:  # read /rollout's status where the reconciler writes it
            from reconciler.core.layout import SETTINGS_PATH, status_branch

            repo.use_status_branch(status_branch(repo.read(SETTINGS_PATH)))
    except RemoteUnavailable as err:
        return _fail(f"cannot start: {err}")
    try:
        hosted = HostedBot(Backend(repo, adapters=full_registry().models), slack, args.host, args.port)
    except (OSError, ValueError) as err:
        return _fail(f"cannot start the Slack bot: {err}")
    pusher = Pusher(repo).start()
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        hosted.stop()
        pusher.stop()
    return 0


# --- read-only views ----------------------------------------------------------------------------------------


def _read_fleet_files(repo: str) -> dict[str, str]:
    from reconciler.adapters.snapshot import read_repo

    return read_repo(repo)


def _status_files(repo: str, files: dict[str, str], remote: str | None = None) -> dict[str, str]:
    """status/ files: from the same files, or from the status branch grayops.yaml names (read at `remote`'s copy
    of it when the repository is a local clone that was fetched)."""
    from reconciler.adapters.snapshot import read_ref, read_repo
    from reconciler.core.layout import SETTINGS_PATH, is_record, status_branch

    branch = status_branch(files.get(SETTINGS_PATH))
    source: Mapping[str, str]
    if branch and remote:
        source = read_ref(Path(repo), f"{remote}/{branch}")
    else:
        source = read_repo(repo, branch=branch) if branch else files
    return {p: t for p, t in source.items() if is_record(p)}


def _fetched_clone(repo: str) -> tuple[str, str] | None:
    """A local clone is fetched and read at its remote's copy of the checked-out branch (its upstream, else
    origin's branch of the same name), where the reconciler pushes status: (that ref, the remote). None for
    anything else, or when it cannot be fetched: the clone is then read as it is on disk, and stderr says so."""
    import subprocess

    from reconciler.adapters.snapshot import is_worktree

    if not (Path(repo).is_dir() and is_worktree(repo)):
        return None

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    branch = git("branch", "--show-current")
    remotes = (git("remote") or "").split()
    remote = git("config", f"branch.{branch}.remote") or ("origin" if "origin" in remotes else None)
    if not branch or remote is None:
        print(f"grayops: {repo} is read as it is on disk (no remote to fetch)", file=sys.stderr)
        return None
    if git("fetch", "--quiet", remote) is None:
        print(f"grayops: {repo} is read as it is on disk ({remote} could not be fetched)", file=sys.stderr)
        return None
    ref = git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}") or f"{remote}/{branch}"
    if git("rev-parse", "--verify", "--quiet", ref) is None:
        print(f"grayops: {repo} is read as it is on disk ({ref} does not exist)", file=sys.stderr)
        return None
    return ref, remote


def _read_records(source: str, fetch: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(the fleet's files, its status/ and reports/ files); a local clone is fetched first unless `fetch` is off.
    Raises GitError."""
    from reconciler.adapters.snapshot import read_ref

    fetched = _fetched_clone(source) if fetch else None
    files = read_ref(Path(source), fetched[0]) if fetched else _read_fleet_files(source)
    return files, _status_files(source, files, fetched[1] if fetched else None)


def cmd_status(args: argparse.Namespace) -> int:
    from reconciler.adapters.gitrepo import GitError
    from reconciler.core.layout import plugin_of, status_plugin
    from reconciler.core.status import StatusUnreadable, load_status

    # --workdir is the reconciler's own clone, read as it stands; a human's local clone is fetched first.
    source = str(Path(args.workdir) / "repo") if args.workdir else args.repo
    try:
        files, records = _read_records(source, fetch=not args.workdir)
    except GitError as err:
        return _fail(str(err))
    fleet, refused = _judge(files)
    states = {}
    unreadable = 0  # each is said in one line, and status exits 1
    for path, text in records.items():
        name = status_plugin(path)
        if name is not None and args.plugin in (None, name):
            try:
                states[name] = load_status(text, path)
            except StatusUnreadable as err:
                unreadable += 1
                _fail(str(err))
    if args.plugin:
        if args.plugin not in states:
            plugins = sorted(name for p in files if (name := plugin_of(p)) is not None)
            if args.plugin in plugins:
                if not unreadable:
                    print(f"{args.plugin}: no rollout recorded yet")
                return _said_refused(refused) or (1 if unreadable else 0)
            return _fail(f"no plugin named {args.plugin!r} (known: {', '.join(plugins) or 'none'})")
        states = {args.plugin: states[args.plugin]}
    if args.json:
        from reconciler.core.model import to_doc

        print(json.dumps({name: to_doc(state) for name, state in sorted(states.items())}, indent=2))
        return _said_refused(refused) or (1 if unreadable else 0)
    if not states and not unreadable:
        print("no rollout recorded yet")
    for _name, state in sorted(states.items()):
        _print_status(state, fleet, detail=bool(args.plugin))
    return _said_refused(refused) or (1 if unreadable else 0)


def _judge(files: dict[str, str]) -> tuple[Fleet | None, tuple[str, ...]]:
    """The revision's fleet and the errors that make the reconciler refuse it (None and the errors when invalid)."""
    from policies import builtin_policies
    from reconciler.core.fleet import FleetInvalid, load_fleet

    try:
        return load_fleet(files, builtin_policies(), adapters=full_registry().models), ()
    except FleetInvalid as err:
        return None, tuple(str(e) for e in err.errors)


def _said_refused(errors: tuple[str, ...]) -> int:
    """Say that HEAD is refused, with its errors (exit 1); 0 when there are none."""
    if not errors:
        return 0
    return _fail(f"HEAD is refused ({len(errors)} error(s)); a running reconciler keeps the last good revision in "
                 "force, and pause and rollback still act on the plugin they name:\n  " + "\n  ".join(errors))


def _print_status(state: RolloutState, fleet: Fleet | None, detail: bool) -> None:
    """One line per rollout (batch n of the planned total); with `detail`, every batch, the ones to come too."""
    from reconciler.core.report import batches_total, pending_batches, summarize

    print(summarize(state, batches_total(fleet, state) if fleet else None).line())
    if state.waiting_for:
        print(f"  waiting for {state.waiting_for}")
    if not detail:
        return
    for batch in state.batches:
        verdicts = ", ".join(f"{m.name}={_number(m.last.value if m.last else None)}"
                             f" {m.last.verdict.value if m.last else ''}" for m in batch.metrics)
        print(f"  batch {batch.name:<10} {batch.phase.value:<9} {len(batch.instances):>4} instance(s)  {verdicts}")
    for planned in pending_batches(fleet, state) if fleet else ():
        print(f"  batch {planned.name:<10} {'Pending':<9} {len(planned.instances):>4} instance(s)")
    if state.paused_at:
        print(f"  paused by {state.paused_by or 'unknown'}: {state.pause_reason or 'no reason given'}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def cmd_report(args: argparse.Namespace) -> int:
    from reconciler.adapters.gitrepo import GitError
    from reconciler.core.layout import reports_of, status_path
    from reconciler.core.report import report_finished, report_path
    from reconciler.core.status import StatusUnreadable, load_status

    try:
        _, records = _read_records(args.repo)
    except GitError as err:
        return _fail(str(err))
    # in the order the rollouts finished (a version string such as 1.10.0 does not sort after 1.9.0)
    reports = sorted((p for p in records if p.startswith(reports_of(args.plugin))),
                     key=lambda p: (report_finished(records[p]), p))
    if not reports:
        return _fail(f"no report for {args.plugin!r} yet (reports are written when a rollout ends)")
    chosen = reports[-1]
    status = records.get(status_path(args.plugin))
    if status:
        try:
            path = report_path(load_status(status, status_path(args.plugin)))
        except StatusUnreadable as err:
            log.warning("%s; showing the newest report by name", err)
            path = chosen
        if path in records:
            chosen = path
    if args.list:
        print("\n".join(reports))
    else:
        print(records[chosen], end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from policies import builtin_policies
    from reconciler.adapters.snapshot import read_tree
    from reconciler.core.fleet import FleetInvalid, load_fleet

    root = Path(args.path)
    if not root.is_dir():
        return _fail(f"{root} is not a directory")
    try:
        fleet = load_fleet(read_tree(root), builtin_policies(), adapters=full_registry().models)
    except FleetInvalid as err:
        for error in err.errors:
            print(error, file=sys.stderr)
        print(f"{len(err.errors)} error(s); the revision would be refused", file=sys.stderr)
        return 1
    print(f"ok: {len(fleet.plugins)} plugin(s), {len(fleet.policy_paths)} policy file(s), "
          f"{len(fleet.settings.clusters)} cluster(s)")
    if args.check_queries:
        return _check_queries(fleet)
    return 0


def _check_queries(fleet: Fleet) -> int:
    """Each metric query of each plugin's policy, run once as its canary would run it; errors as one line each."""
    from reconciler.adapters.prometheus import PrometheusMetrics, PrometheusSettings
    from reconciler.core.plan import select_instances
    from reconciler.core.queries import placeholder_values, query_template, render

    settings = fleet.settings.metrics
    if not isinstance(settings, PrometheusSettings):
        return _fail(f"--check-queries needs metrics.provider: prometheus (grayops.yaml has {settings.provider})")
    prometheus = PrometheusMetrics(settings)
    checked: set[str] = set()
    failed = 0
    for name, plugin in sorted(fleet.plugins.items()):
        policy = fleet.policies[plugin.spec.policy]
        instances = select_instances(plugin.spec, fleet.settings.clusters)
        for metric in policy.analysis.metrics:
            template = query_template(settings.queries, metric)
            if template is None:
                continue  # the fleet check already refused the revision
            window = max(metric.interval or policy.analysis.interval, settings.min_window)
            query = render(template, placeholder_values(name, plugin.spec.version, instances, window))
            if query in checked:
                continue
            checked.add(query)
            answer = prometheus.query(query)
            if answer.error is not None:
                failed += 1
                print(f"{fleet.policy_paths.get(plugin.spec.policy, plugin.spec.policy)}: {name} "
                      f"{metric.name}: {answer.error}", file=sys.stderr)
            else:
                print(f"query ok: {name} {metric.name} ({len(answer.values)} series)")
    if failed:
        print(f"{failed} of {len(checked)} queries failed", file=sys.stderr)
        return 1
    print(f"ok: {len(checked)} queries answered by {settings.url}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitError
    from reconciler.adapters.snapshot import read_ref
    from reconciler.core import planview
    from reconciler.core.fleet import FleetInvalid, load_fleet
    from reconciler.core.layout import status_plugin
    from reconciler.core.status import load_status

    try:
        files = _read_fleet_files(args.repo)
        head = load_fleet(files, builtin_policies(), adapters=full_registry().models)
    except FleetInvalid as err:
        print(err, file=sys.stderr)
        return 1
    except GitError as err:
        return _fail(str(err))
    base: Fleet | None = None
    if args.base:
        try:
            base = load_fleet(read_ref(Path(args.repo), args.base), builtin_policies(),
                              adapters=full_registry().models)
        except GitError as err:
            return _fail(f"cannot read {args.base}: {err}", 1)
        except FleetInvalid:
            base = None  # an invalid base: everything counts as changed
    states = {}
    for path, text in files.items():
        if (name := status_plugin(path)) is not None:
            states[name] = load_status(text, path)  # unreadable: one line, exit 1
    names = planview.changed_plugins(base, head) if args.base else sorted(head.plugins)
    sys.stdout.write(planview.RENDERERS[args.format](planview.build(head, names, base, states)))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from reconciler.core.schema import fleet_schema_text

    text = fleet_schema_text(full_registry().models)
    if args.check:
        from policies import schema_text

        if schema_text() != text:
            return _fail("policies/schema/fleet.schema.json is stale: run `grayops schema --write`")
        print("schema up to date")
        return 0
    if args.write:
        target = Path(__file__).resolve().parent.parent / "policies" / "schema" / "fleet.schema.json"
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
        return 0
    sys.stdout.write(text)
    return 0


# --- commands as commits ------------------------------------------------------------------------------------


def cmd_command(args: argparse.Namespace) -> int:
    import tempfile

    from reconciler.adapters.gitrepo import GitError, GitRepo
    from reconciler.commands import CommandRefused, run_command
    from reconciler.core.text import NAME_LIMIT, REASON_LIMIT, one_line

    logging.basicConfig(level=logging.WARNING, format="grayops: %(message)s")
    shared = args.workdir is not None
    with tempfile.TemporaryDirectory(prefix="grayops-cmd-") as tmp:
        workdir = Path(args.workdir) if shared else Path(tmp)
        repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch)
        try:
            repo.ensure_clone()
            result = run_command(repo, args.command, args.plugin, one_line(_who(args.as_), NAME_LIMIT),
                                 datetime.now(UTC), reason=one_line(args.reason, REASON_LIMIT) if args.reason else None,
                                 batch=getattr(args, "batch", None), adapters=full_registry().models)
        except CommandRefused as err:
            return _fail(str(err))
        except GitError as err:
            return _fail(str(err))
    print(result.message)
    if result.changed and not result.pushed and not shared:
        return _fail("the change could not be pushed and this clone is temporary: nothing was recorded")
    return 0


# --- demo ---------------------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from reconciler.demo import run_demo

    return run_demo(keep=Path(args.keep) if args.keep else None, live=not args.no_progress)


# --- parser -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grayops",
        description="Roll plugin versions across a fleet of clusters batch by batch, judged by metrics, "
                    "with the fleet's git repository as the record.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"grayops {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def repo_args(p: argparse.ArgumentParser, required: bool = True, default: str | None = None) -> None:
        p.add_argument("--repo", required=required, default=default,
                       help="fleet repository: a path, file://, ssh or https URL" +
                       (f" (default: {default})" if default else ""))
        p.add_argument("--branch", default="main", help="desired-state branch (default: main)")
        p.add_argument("--status-branch", default=None,
                       help="branch for status/ and reports/ when grayops.yaml sets status.branch")

    run = sub.add_parser("run", help="reconcile: roll out what the repository asks, batch by batch",
                         description="Run the reconciler. Fetches the remote every poll interval (and at once on a "
                                     "change to a local remote), rolls out version changes and commits every "
                                     "decision back. Stops on SIGTERM/SIGINT after the current tick.")
    repo_args(run)
    run.add_argument("--workdir", help="the reconciler's own clone and sim state (default: under ~/.local/state)")
    run.add_argument("--once", action="store_true",
                     help="exit once nothing is progressing (every rollout succeeded, rolled back, failed, paused, "
                          "awaiting approval, waiting for a window, or waiting for a dependency that is)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between ticks (default: 1)")
    run.add_argument("--poll", type=float, default=None,
                     help="seconds between fetches (default: grayops.yaml git.pollInterval, 5s)")
    run.add_argument("--listen", metavar="HOST:PORT", default=None,
                     help="serve grayops' own /metrics, /healthz and /readyz here (e.g. 0.0.0.0:9100)")
    run.add_argument("--sim-metrics-port", type=int, default=None,
                     help="serve the sim fleet's metrics in Prometheus format on this loopback port")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    run.add_argument("--leader-elect", action="store_true",
                     help="act only while holding a coordination.k8s.io Lease (run 2 replicas; one acts)")
    run.add_argument("--lease-namespace", default=None,
                     help="namespace of the Lease (default: the pod's namespace, else grayops)")
    run.add_argument("--lease-name", default="grayops", help="name of the Lease (default: grayops)")
    run.add_argument("--lease-duration", type=float, default=15.0,
                     help="seconds a leader holds the Lease without renewing it (default: 15)")
    run.add_argument("--bot-port", type=int, default=3000,
                     help="when SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set, serve the Slack bot's "
                          "/slack/events on this port (default: 3000); Socket Mode when SLACK_APP_TOKEN is set")
    run.add_argument("--bot-host", default="0.0.0.0", help="address the Slack bot listens on (default: 0.0.0.0)")
    run.add_argument("--trust", metavar="DIR", default=None,
                     help="trust roots: allowed_signers, OpenPGP keys, artifact keys (README \"Supply chain\")")
    run.add_argument("--signing-key", metavar="KEY", default=None,
                     help="sign grayops' own commits: an SSH private key file or an OpenPGP key id")
    run.set_defaults(func=cmd_run)

    bot = sub.add_parser("bot", help="the Slack bot alone: slash commands and buttons as commits",
                         description="Serve the Slack app (slash commands and the rollout message's buttons) on "
                                     "/slack/events, or over Socket Mode when SLACK_APP_TOKEN is set. Needs "
                                     "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET; GRAYOPS_SLACK_API_URL overrides the "
                                     "Web API base URL. Point --workdir at the reconciler's so commands act in its "
                                     "clone even when the remote is down.")
    repo_args(bot)
    bot.add_argument("--workdir", help="the bot's clone (default: under ~/.local/state)")
    bot.add_argument("--port", type=int, default=3000, help="HTTP port (default: 3000)")
    bot.add_argument("--host", default="0.0.0.0", help="address to listen on (default: 0.0.0.0)")
    bot.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    bot.set_defaults(func=cmd_bot)

    status = sub.add_parser("status", help="show rollouts: phase, batch, instances, last reason")
    repo_args(status, required=False, default=".")
    status.add_argument("--workdir", help="read the reconciler's clone in this workdir instead of --repo")
    status.add_argument("plugin", nargs="?", help="one plugin, with its batches and verdicts")
    status.add_argument("--json", action="store_true", help="the status documents as JSON")
    status.set_defaults(func=cmd_status)

    for name, text in (("pause", "stop starting new work (commits spec.paused: true)"),
                       ("resume", "continue where it stopped (commits spec.paused: false)"),
                       ("rollback", "roll back fast to the last good version (commits the revert of spec.version)"),
                       ("approve", "approve a batch that needs it (commits approvals/<plugin>.yaml)"),
                       ("retry", "run again what failed: the failed batch of a Failed rollout or of one paused after "
                                 "it, or a failed rollback (commits a retry record in approvals/<plugin>.yaml)")):
        p = sub.add_parser(name, help=text, description=text.capitalize() + ". A command that changes nothing "
                           "makes no commit.")
        p.add_argument("plugin")
        repo_args(p)
        p.add_argument("--workdir", help="act in this clone (e.g. the reconciler's, so it acts even when the remote "
                                         "is down); default: a temporary clone, pushed at once")
        p.add_argument("--as", dest="as_", metavar="NAME", help="who asks (default: the login name)",
                       required=name == "approve")
        if name == "approve":
            p.add_argument("--batch", required=True, help="the batch to approve")
        else:
            p.add_argument("--reason", help="why, recorded in the commit")
        p.set_defaults(func=cmd_command, command=name, reason=None)

    report = sub.add_parser("report", help="print the report of a plugin's last finished rollout")
    report.add_argument("plugin")
    repo_args(report, required=False, default=".")
    report.add_argument("--list", action="store_true", help="list every report of the plugin instead")
    report.set_defaults(func=cmd_report)

    plan = sub.add_parser("plan", help="what a revision would roll out: batches, instances, gates, duration")
    repo_args(plan, required=False, default=".")
    plan.add_argument("--base", help="only plugins changed since this ref (for merge request pipelines)")
    plan.add_argument("--format", choices=["text", "markdown", "json"], default="text")
    plan.set_defaults(func=cmd_plan)

    validate = sub.add_parser("validate", help="check every file of a fleet repository; exit 1 on any error")
    validate.add_argument("path", nargs="?", default=".")
    validate.add_argument("--check-queries", action="store_true",
                          help="also run each metric query once against the Prometheus in grayops.yaml")
    validate.set_defaults(func=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of the fleet repository format")
    schema.add_argument("--write", action="store_true", help="write policies/schema/fleet.schema.json")
    schema.add_argument("--check", action="store_true", help="exit 1 when the shipped schema is stale")
    schema.set_defaults(func=cmd_schema)

    demo = sub.add_parser("demo", help="a simulated fleet end to end: good rollout, bad one rolled back")
    demo.add_argument("--keep", metavar="DIR", help="build the demo in DIR and keep it (default: a temporary dir)")
    demo.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    demo.set_defaults(func=cmd_demo)
    from reconciler.web.command import add_parser as add_dashboard  # the web view (README "Web view")
    add_dashboard(sub, full_registry)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # the one error boundary: one line on stderr, never a traceback unless asked
        if os.environ.get("GRAYOPS_DEBUG", "") not in ("", "0"):
            traceback.print_exc()
        return _fail(_one_line(err))
    return code


def _one_line(err: Exception) -> str:
    """What went wrong, in one line: our own errors say it themselves; anything else is named as unexpected."""
    from reconciler.adapters.gitrepo import GitError
    from reconciler.core.status import StatusUnreadable

    text = " ".join(str(err).split())
    if isinstance(err, GitError | StatusUnreadable):
        return text
    return f"unexpected {type(err).__name__}: {text} (GRAYOPS_DEBUG=1 shows where)"


if __name__ == "__main__":
    sys.exit(main())
