"""`grayops run`: the reconciler's loop of ticks, until SIGTERM/SIGINT (or, with --once, until nothing moves)."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from contextlib import ExitStack
from types import FrameType

from reconciler.adapters.gitrepo import GitError, WorkdirBusy
from reconciler.cli.errors import DONE, Failed
from reconciler.cli.options import LOG_LEVELS, Subparsers, repo_args
from reconciler.cli.wiring import Daemon, start_daemon
from reconciler.progress import LiveDisplay, configure_logging
from reconciler.shell import TickReport

log = logging.getLogger("grayops")

GIT_FAILURES_TOLERATED = 3  # ticks in a row that a git command fails in before the process gives up


def add_parser(sub: Subparsers) -> None:
    run = sub.add_parser("run", help="reconcile: roll out what the repository asks, batch by batch",
                         description="Run the reconciler. Fetches the remote every poll interval (and at once on a "
                                     "change to a local remote), rolls out version changes and commits every "
                                     "decision back. Stops on SIGTERM/SIGINT after the current tick.")
    repo_args(run, remote=True)
    run.add_argument("--workdir", help="the reconciler's own clone and sim state (default: under ~/.local/state)")
    run.add_argument("--once", action="store_true",
                     help="exit once nothing is progressing (every rollout succeeded, rolled back, failed, paused, "
                          "awaiting approval, waiting for a window, or waiting for a dependency that is)")
    run.add_argument("--interval", type=float, default=1.0, help="seconds between ticks (default: 1)")
    run.add_argument("--poll", type=float, default=None,
                     help="seconds between fetches (default: grayops.yaml git.pollInterval, 5s)")
    run.add_argument("--listen", metavar="HOST:PORT", default=None,
                     help="serve the web view (at /), the HTTP API and webhooks, Slack's /slack/events (when "
                          "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set), /openapi.json and grayops' own "
                          "/metrics, /healthz and /readyz here (e.g. 0.0.0.0:9100)")
    run.add_argument("--sim-metrics-port", type=int, default=None,
                     help="serve the sim fleet's metrics in Prometheus format on this loopback port")
    run.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    run.add_argument("--no-progress", action="store_true", help="plain log lines even on a terminal")
    run.add_argument("--leader-elect", action="store_true",
                     help="act only while holding a coordination.k8s.io Lease (run 2 replicas; one acts)")
    run.add_argument("--shards", type=int, default=None, metavar="N",
                     help="split the plugins into N shards, one Lease each (<lease-name>-<i>); every replica acts "
                          "for the plugins of the shards it holds (README \"Sharding\")")
    run.add_argument("--lease-namespace", default=None,
                     help="namespace of the Lease (default: the pod's namespace, else grayops)")
    run.add_argument("--lease-name", default="grayops", help="name of the Lease (default: grayops)")
    run.add_argument("--lease-duration", type=float, default=15.0,
                     help="seconds a leader holds the Lease without renewing it (default: 15)")
    run.add_argument("--trust", metavar="DIR", default=None,
                     help="trust roots: allowed_signers, OpenPGP keys, artifact keys (README \"Supply chain\")")
    run.add_argument("--signing-key", metavar="KEY", default=None,
                     help="sign grayops' own commits: an SSH private key file or an OpenPGP key id")
    run.set_defaults(func=run_command)


def run_command(args: argparse.Namespace) -> int:
    with ExitStack() as stack:
        display = configure_logging(args.log_level, live=not args.no_progress)
        if display is not None:
            stack.callback(display.close)
        daemon = start_daemon(args, stack)
        report = loop(daemon, args, display)
    reconciler = daemon.reconciler
    for name, state in sorted(reconciler.states.items()):
        log.info("%s %s: %s (%s)", name, state.target_version, state.phase.value, state.reason)
    unpushed = daemon.repo.unpushed() if args.once else 0
    if unpushed:
        why = report.remote_error if report is not None and report.remote_error else "the remote did not take them"
        raise Failed(f"{unpushed} commit(s) left unpushed in {daemon.repo.path}: {why}")
    return DONE


def loop(daemon: Daemon, args: argparse.Namespace, display: LiveDisplay | None) -> TickReport | None:
    """Tick until stopped by a signal (or, with --once, until idle); the last tick's report."""
    reconciler, elector = daemon.reconciler, daemon.elector
    stopping = False
    report: TickReport | None = None
    failed_ticks = 0  # in a row, because of a git error

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        reconciler.wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    standing_by = False
    while not stopping:
        started = time.monotonic()
        if elector is not None and not elector.is_leader():  # only the Lease's holder acts
            if not standing_by:  # said once the tick in progress, if any, is over: from here nothing is done
                log.warning("%s: not its holder, standing by (no tick until it is taken)", elector.where)
                standing_by = True
            reconciler.wake.wait(min(args.interval, elector.renew))
            continue
        standing_by = False
        try:
            report = reconciler.tick()
            failed_ticks = 0
        except WorkdirBusy as err:  # the workdir was deleted, and another reconciler took the new one
            raise Failed(f"stopping: {err}") from err
        except GitError as err:
            # e.g. the workdir deleted under us (rm -rf) and caught half way: the next tick clones again
            failed_ticks += 1
            if failed_ticks >= GIT_FAILURES_TOLERATED and not daemon.repo.lost():
                raise
            log.warning("a git command failed during a tick, trying again: %s", err)
            reconciler.wake.wait(args.interval)
            continue
        daemon.serve_sim_metrics()
        if daemon.served is not None:  # the web view: every tick's states, each reading as it is taken
            daemon.served.update(reconciler.fleet, reconciler.states, report.invalid)
        if display is not None:
            display.show(report.states, reconciler.batch_totals())
        if args.once and reconciler.idle():
            if reconciler.fleet is None:
                errors = "\n  ".join(report.invalid)
                raise Failed(f"no valid revision of the fleet repository to act on:\n  {errors}")
            break
        reconciler.wake.wait(max(0.0, args.interval - (time.monotonic() - started)))
    return report
