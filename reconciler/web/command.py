"""`grayops dashboard`: the web view on its own, reading the record of a remote repository.

`add_parser(sub, registry)` adds the command to the CLI; `registry` returns the adapters grayops.yaml is checked
with (the CLI's full registry, so a Slack notifier in grayops.yaml is no error here either).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.adapters.registry import Registry

log = logging.getLogger("grayops")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], registry: Callable[[], Registry]) -> None:
    parser = sub.add_parser(
        "dashboard", help="the read-only web view of a fleet repository's rollouts",
        description="Serve the web view (the fleet, each rollout, the instances, the history) of the repository "
                    "--repo, read from a clone of its own that is fetched every poll interval (and at once when a "
                    "local remote changes). Read-only; needs no running reconciler.")
    parser.add_argument("--repo", default=None, help="fleet repository: a path, file://, ssh or https URL (default: "
                                                     "$GRAYOPS_REPO, else the remote of the clone you are in)")
    parser.add_argument("--branch", default="main", help="desired-state branch (default: main)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port (default: 8080)")
    parser.add_argument("--poll", type=float, default=None,
                        help="seconds between fetches (default: grayops.yaml git.pollInterval, 5s)")
    parser.add_argument("--workdir", help="keep the view's clone here (default: a temporary directory)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=partial(run, registry=registry), repo_remote=True)


def run(args: argparse.Namespace, registry: Callable[[], Registry]) -> int:
    import uvicorn

    from reconciler.adapters.gitrepo import GitError, WorkdirBusy
    from reconciler.web.app import create_app
    from reconciler.web.gitsource import GitRecordSource

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="grayops-web-") as tmp:
        workdir = Path(args.workdir).resolve() if args.workdir else Path(tmp)
        source = GitRecordSource(args.repo, workdir, registry().models, branch=args.branch, poll=args.poll)
        try:
            source.start()
        except WorkdirBusy as err:
            print(f"grayops: cannot start: {err} (the web view needs a workdir of its own)", file=sys.stderr)
            return 1
        except GitError as err:
            print(f"grayops: cannot start: {' '.join(str(err).split())}", file=sys.stderr)
            return 1
        app = create_app(source)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                                timeout_graceful_shutdown=3, access_log=args.log_level == "debug")
        broadcaster = app.state.web.broadcaster

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                broadcaster.close()  # the open event streams end at once: a stop never waits on a browser left open
                super().handle_exit(sig, frame)

        server = Server(config)
        log.info("web view of %s on http://%s:%d", source.record().source, args.host, args.port)
        # uvicorn stops on SIGTERM/SIGINT, then raises the signal again with the handler it found: make that one
        # ours, so the clone and its lock are cleaned up below instead of the process dying in the middle.
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, lambda signum, frame: None)
        try:
            server.run()
        finally:
            app.state.web.close()
            source.close()
        return 0 if server.started else 1

