"""`grayops bot`: the Slack app on its own, serving slash commands and buttons as commits until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import time
from contextlib import ExitStack
from types import FrameType

from reconciler.cli.errors import DONE
from reconciler.cli.options import LOG_LEVELS, Subparsers, repo_args
from reconciler.cli.wiring import start_bot


def add_parser(sub: Subparsers) -> None:
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
    bot.add_argument("--signing-key", metavar="KEY", default=None,
                     help="sign the commands' commits: an SSH private key file or an OpenPGP key id (README \"Supply "
                          "chain\"); without it they are unsigned, unless --workdir is a clone that signs")
    bot.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    bot.set_defaults(func=bot_command)


def bot_command(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    with ExitStack() as stack:
        start_bot(args, stack)
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not stopping:
            time.sleep(0.2)
    return DONE
