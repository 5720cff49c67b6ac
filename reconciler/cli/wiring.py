"""The program's wiring: every adapter grayops has, and the processes `grayops run` and `grayops serve` run.

Owns: joining the reconciler's adapters with the bot's Slack notifier (`full_registry`), and starting, in order,
what a daemon is made of: the workdir held, the Slack bot hosted in the process, the one HTTP server (telemetry,
API, webhooks, /slack/events, web view), the `Reconciler`, the watcher of a local remote, leader election and
the simulated fleet's metrics. Everything
started is stopped by the `ExitStack` it was started on, in reverse order, whether the command ends or fails.
Must not: loop over ticks or decide exit codes (the commands do), print (a failure to start is raised as
`Failed` with its line).

The only module in `reconciler` that imports `bot` (README "Adding an adapter").
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from bot.factory import SLACK
from policies import builtin_policies
from reconciler import __version__
from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable, RemoteWatcher, WorkdirBusy
from reconciler.adapters.httpserver import AsgiServer
from reconciler.adapters.registry import Registry, default_registry
from reconciler.adapters.sim_exporter import SimExporter
from reconciler.adapters.telemetry import Telemetry, parse_listen
from reconciler.adapters.trust.commits import SigningKeyError, signing_config
from reconciler.api import ApiBackend, api_routes
from reconciler.api.openapi import OpenApi
from reconciler.api.standalone import standalone_app
from reconciler.cli.errors import Failed, UsageError
from reconciler.cli.options import default_workdir
from reconciler.core.layout import SETTINGS_PATH, status_branch
from reconciler.core.trust import commits_required
from reconciler.shell import Reconciler
from reconciler.shell.trust import SupplyChain, TrustSetupError
from reconciler.web.listen import ListenServer

if TYPE_CHECKING:
    from bot.host import HostedBot
    from reconciler.adapters.kube.client import ClusterApi
    from reconciler.adapters.kube.lease import LeaderElector, ShardLeases

log = logging.getLogger("grayops")

POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def full_registry() -> Registry:
    """Every adapter grayops has: the reconciler's own and the bot's Slack notifier. The one place that joins
    them, so nothing else in `reconciler` depends on the bot (README "Adding an adapter")."""
    return default_registry().with_(SLACK)


# --- grayops run ---------------------------------------------------------------------------------------------


@dataclass
class Daemon:
    """A started `grayops run`: the reconciler and what serves around it."""

    repo: GitRepo
    reconciler: Reconciler
    elector: LeaderElector | None
    stack: ExitStack
    sim_metrics_port: int | None = None
    exporter: SimExporter | None = None
    served: ListenServer | None = None  # --listen: the web view, fed after each tick

    def serve_sim_metrics(self) -> None:
        """`--sim-metrics-port`: the simulated fleet's metrics, once a revision has built a simulated runtime."""
        runtime = self.reconciler.runtime
        if self.exporter is not None or self.sim_metrics_port is None or runtime is None or runtime.sim is None:
            return
        self.exporter = SimExporter(runtime.sim, port=self.sim_metrics_port)
        self.exporter.start()
        self.stack.callback(self.exporter.stop)
        log.info("sim metrics served on %s", self.exporter.url)


def start_daemon(args: argparse.Namespace, stack: ExitStack) -> Daemon:
    """Start `grayops run`'s parts from its options; what was started before a failure is stopped by `stack`."""
    try:
        supply = SupplyChain.open(args.trust, args.signing_key)  # README "Supply chain"
    except TrustSetupError as err:
        raise Failed(f"cannot start: {err}") from err
    workdir = Path(args.workdir or default_workdir(args.repo)).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch)
    try:
        repo.hold_workdir()  # one reconciler per workdir, for the process's lifetime
    except WorkdirBusy as err:
        raise Failed(f"cannot start: {err}") from err
    telemetry = Telemetry(stale_after=max(60.0, 10 * args.interval))
    shards = shard_leases(args) if args.shards is not None else None
    reconciler = Reconciler(repo, workdir, builtin_policies(), poll_interval=args.poll, telemetry=telemetry,
                            registry=full_registry(), supply=supply, scope=shards)
    stack.callback(close_runtime, reconciler)
    hosted = host_bot(reconciler, telemetry, http=bool(args.listen))
    if hosted is not None:
        stack.callback(hosted.stop)
    slack = hosted.routes() if hosted is not None else []
    served = serve_telemetry(telemetry, args.listen, reconciler, stack, slack) if args.listen else None
    try:
        reconciler.start()
    except RemoteUnavailable as err:
        raise Failed(f"cannot start: {err}") from err
    log.info("grayops %s reconciling %s (branch %s) in %s", __version__, args.repo, args.branch, workdir)
    watcher = RemoteWatcher(args.repo, reconciler.wake.set)
    watcher.start()
    stack.callback(watcher.stop)
    elector = elect(args.lease_namespace, args.lease_name, args.lease_duration) if args.leader_elect else None
    if elector is not None:
        stack.callback(elector.stop)
    if shards is not None:
        shards.start(on_change=reconciler.wake.set)  # a shard taken or lost: tick now
        stack.callback(shards.stop)
    return Daemon(repo, reconciler, elector, stack, sim_metrics_port=args.sim_metrics_port, served=served)


def serve_telemetry(telemetry: Telemetry, listen: str, reconciler: Reconciler, stack: ExitStack,
                    slack: Sequence[BaseRoute] = ()) -> ListenServer:
    """The one HTTP server on `--listen HOST:PORT`: grayops' own /metrics, /healthz and /readyz, the HTTP API and
    webhooks, /openapi.json, Slack's /slack/events (`slack`, when the bot is hosted) and the web view (at /). API
    and Slack commands commit on the reconciler's clone and wake it."""
    models = reconciler.registry.models
    openapi = OpenApi()
    backend = ApiBackend(reconciler.repo, models, wake=reconciler.wake.set,
                         open_alerts=reconciler.escalation.open_alerts,
                         in_force=lambda: reconciler.fleet, rollouts=lambda: reconciler.states)  # reads off the lock
    routes = [openapi.route(), *api_routes(backend), *slack]
    try:
        host, port = parse_listen(listen)
        served = ListenServer(telemetry, reconciler.repo, models, host, port, routes=routes)
        openapi.top = served.server.app
        served.start()
    except ValueError as err:
        raise UsageError(f"cannot serve telemetry on {listen}: {err}") from err
    except OSError as err:
        raise Failed(f"cannot serve telemetry on {listen}: {err}") from err
    stack.callback(served.stop)
    log.info("web view, API%s and telemetry on http://%s:%d (/, /api/v1, %s/metrics, /healthz, /readyz)",
             ", Slack" if slack else "", host, served.port, "/slack/events, " if slack else "")
    return served


def close_runtime(reconciler: Reconciler) -> None:
    """The notifiers of the runtime in force deliver what they queued (bounded)."""
    if reconciler.runtime is not None:
        reconciler.runtime.close()


def elect(namespace: str | None, lease: str, duration: float) -> LeaderElector:
    """Leader election on a Lease in the cluster grayops runs in (or the kubeconfig's current context)."""
    # Deferred: the Kubernetes client takes about half a second to import, and only --leader-elect needs it here.
    from reconciler.adapters.kube.lease import LeaderElector

    namespace, identity, api = lease_place(namespace, "leader election")
    log.info("leader election on lease %s/%s as %s", namespace, lease, identity)
    return LeaderElector(api, namespace, lease, identity, duration=duration).start()


def shard_leases(args: argparse.Namespace) -> ShardLeases:
    """`--shards N`: one Lease per shard, `<lease-name>-<i>` (README "Sharding"); started once the reconciler is."""
    from reconciler.adapters.kube.lease import ShardLeases  # deferred: see elect

    if args.shards < 1:
        raise UsageError(f"--shards: {args.shards}: at least 1")
    if args.leader_elect:
        raise UsageError("--shards and --leader-elect: choose one (with --shards every replica acts, each for its "
                         "own shards)")
    namespace, identity, api = lease_place(args.lease_namespace, "sharding")
    log.info("sharding: %d shard(s) on leases %s/%s-0..%d as %s", args.shards, namespace, args.lease_name,
             args.shards - 1, identity)
    return ShardLeases(api, namespace, args.lease_name, identity, args.shards, duration=args.lease_duration)


def lease_place(namespace: str | None, what: str) -> tuple[str, str, ClusterApi]:
    """Where Leases are kept (the namespace asked, else the pod's, else grayops), who we are on them (the pod's
    name, else host-pid) and the API of the cluster grayops runs in (or the kubeconfig's current context)."""
    from reconciler.adapters.kube.client import ClusterAccessError, connect_default  # deferred: see elect

    if namespace is None:
        namespace = POD_NAMESPACE.read_text().strip() if POD_NAMESPACE.exists() else "grayops"
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    try:
        api = connect_default()
    except ClusterAccessError as err:
        raise Failed(f"cannot take part in {what}: {err}") from err
    return namespace, identity, api


def host_bot(reconciler: Reconciler, telemetry: Telemetry, http: bool) -> HostedBot | None:
    """The Slack bot in this process when Slack is configured, sharing the reconciler's clone: a command is
    committed there and wakes the reconciler, so it acts at once (even with the remote down). Over HTTP its
    /slack/events is served by `--listen` (`http`); its counters join the telemetry's /metrics."""
    # Deferred: Slack's SDK and Bolt take a few hundred milliseconds to import, and every command that is not a
    # daemon (status, validate, pause, ...) would pay for them; only a process that serves Slack loads them.
    from bot.host import HostedBot, SlackEnv
    from bot.notifier import SlackNotifier
    from bot.service import METRICS, Backend

    slack = SlackEnv.read()
    if not slack.configured:
        if slack.bot_token:
            log.warning("Slack commands are off: %s", slack.missing())
        return None
    if slack.app_token is None and not http:
        log.warning("Slack commands are off: /slack/events is served on --listen HOST:PORT, and none is given "
                    "(or set SLACK_APP_TOKEN for Socket Mode)")
        return None

    def thread_of(plugin: str) -> tuple[str, str] | None:
        runtime = reconciler.runtime
        for watcher in runtime.watchers if runtime else ():
            if isinstance(watcher, SlackNotifier):
                return watcher.thread_of(plugin)
        return None

    try:
        hosted = HostedBot(Backend(reconciler.repo, reconciler.wake.set, thread_of, hosted=True,
                                   adapters=reconciler.registry.models), slack)
    except (OSError, ValueError) as err:
        log.error("the Slack bot cannot start: %s; reconciling without it", err)
        return None
    for metric in METRICS:
        telemetry.registry.register(metric)
    return hosted


# --- grayops serve -------------------------------------------------------------------------------------------


def start_serve(args: argparse.Namespace, stack: ExitStack) -> AsgiServer:
    """The one HTTP server without the reconciler: the API, webhooks, /slack/events (when Slack is configured),
    /metrics, /healthz, /readyz and /openapi.json, on a clone of its own (or the reconciler's `--workdir`), and a
    pusher for what it committed while the remote was down."""
    from bot.host import HostedBot, Pusher, SlackEnv  # deferred: see host_bot
    from bot.service import Backend

    try:
        host, port = parse_listen(args.listen)
    except ValueError as err:
        raise UsageError(str(err)) from err
    try:  # README "Supply chain": what serve commits is signed with grayops' key, as `grayops run --signing-key` does
        signing = signing_config(args.signing_key).config if args.signing_key else ()
    except SigningKeyError as err:
        raise Failed(f"cannot start: --signing-key: {err}") from err
    workdir = Path(args.workdir or default_workdir(args.repo)).resolve()
    repo = GitRepo(args.repo, workdir, branch=args.branch, status_branch=args.status_branch, signing=signing)
    try:
        repo.ensure_clone()
        if args.status_branch is None:  # read status where the reconciler writes it
            repo.use_status_branch(status_branch(repo.read(SETTINGS_PATH)))
    except RemoteUnavailable as err:
        raise Failed(f"cannot start: {err}") from err
    if not repo.signs() and commits_required(repo.read(SETTINGS_PATH)):
        log.warning("grayops.yaml requires signed commits (trust.commits.required) and serve has no --signing-key: "
                    "the commits its commands make are unsigned, and the reconciler refuses them; start it with "
                    "--signing-key KEY (grayops' key)")
    models = full_registry().models
    slack = SlackEnv.read()
    hosted = None
    if slack.configured:
        try:
            hosted = HostedBot(Backend(repo, adapters=models), slack)
        except (OSError, ValueError) as err:
            raise Failed(f"cannot start the Slack bot: {err}") from err
        stack.callback(hosted.stop)
    else:
        log.warning("Slack commands are off: %s", slack.missing())
    pusher = Pusher(repo).start()
    stack.callback(pusher.stop)  # after the server has stopped: what it committed last is pushed too
    openapi = OpenApi()
    # No reconciler to wake: a verified push is answered 202, and the API's reads fetch anyway.
    routes = [openapi.route(), *api_routes(ApiBackend(repo, models)), *(hosted.routes() if hosted else [])]
    app = standalone_app(routes, f"serving {args.repo}")
    openapi.top = app
    server = AsgiServer(app, host, port)
    try:
        server.start()
    except OSError as err:
        raise Failed(f"cannot serve on {args.listen}: {err}") from err
    stack.callback(server.stop)
    log.info("grayops %s serving %s: API%s on http://%s:%d (/api/v1, %s/metrics, /healthz, /readyz)", __version__,
             args.repo, ", Slack" if hosted and hosted.routes() else "", host, server.port,
             "/slack/events, " if hosted and hosted.routes() else "")
    return server
