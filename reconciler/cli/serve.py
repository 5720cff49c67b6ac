"""`grayops serve`: the one HTTP server without the reconciler (the API, webhooks and Slack), until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from contextlib import ExitStack
from types import FrameType

from reconciler.cli.errors import DONE
from reconciler.cli.options import LOG_LEVELS, Subparsers, repo_args
from reconciler.cli.wiring import start_serve


def add_parser(sub: Subparsers) -> None:
    serve = sub.add_parser("serve", help="the HTTP API, webhooks and Slack without the reconciler",
                           description="Serve the HTTP API, the git push webhooks, Slack's /slack/events (when "
                                       "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are set; Socket Mode when "
                                       "SLACK_APP_TOKEN is), /metrics, /healthz, /readyz and /openapi.json, without "
                                       "reconciling. Commands commit on its own clone and push; point --workdir at "
                                       "the reconciler's so they act in its clone even when the remote is down.")
    repo_args(serve, remote=True)
    serve.add_argument("--listen", metavar="HOST:PORT", required=True, help="where to serve (e.g. 0.0.0.0:9100)")
    serve.add_argument("--workdir", help="its clone (default: under ~/.local/state)")
    serve.add_argument("--signing-key", metavar="KEY", default=None,
                       help="sign the commands' commits: an SSH private key file or an OpenPGP key id (README "
                            "\"Supply chain\"); without it they are unsigned, unless --workdir is a clone that signs")
    serve.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    serve.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with ExitStack() as stack:
        start_serve(args, stack)
        while not stopping.wait(0.2):
            pass
    return DONE
