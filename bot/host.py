"""Starting the bot: from the environment's Slack secrets, in HTTP or Socket Mode, in `grayops run` or `grayops serve`.

SLACK_BOT_TOKEN (required), SLACK_SIGNING_SECRET (required in HTTP mode), SLACK_APP_TOKEN (Socket Mode when
set), GRAYOPS_SLACK_API_URL (Web API base URL). Secrets are never logged.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.routing import BaseRoute

from bot.app import SlackEvents, create_app, start_socket_mode
from bot.factory import slack_client
from bot.inbound import DEFAULT_LIMITS, Limits
from bot.service import Backend
from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable

log = logging.getLogger("grayops.bot")


@dataclass(frozen=True)
class SlackEnv:
    bot_token: str | None
    signing_secret: str | None
    app_token: str | None

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> SlackEnv:
        env = env if env is not None else os.environ
        return cls(env.get("SLACK_BOT_TOKEN") or None, env.get("SLACK_SIGNING_SECRET") or None,
                   env.get("SLACK_APP_TOKEN") or None)

    @property
    def configured(self) -> bool:
        """Enough to serve commands: a bot token, and a signing secret (HTTP) or an app token (Socket Mode)."""
        return bool(self.bot_token and (self.signing_secret or self.app_token))

    def missing(self) -> str:
        if not self.bot_token:
            return "SLACK_BOT_TOKEN is not set"
        return "SLACK_SIGNING_SECRET is not set (or SLACK_APP_TOKEN for Socket Mode)"


class HostedBot:
    """The running bot: `/slack/events` for the one server to mount (`events`), or a Socket Mode connection.
    `stop()` ends it."""

    def __init__(self, backend: Backend, slack: SlackEnv, env: Mapping[str, str] | None = None,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        if not slack.configured:
            raise ValueError(f"the Slack bot cannot start: {slack.missing()}")
        assert slack.bot_token is not None
        client = slack_client(slack.bot_token, env)
        socket_mode = slack.app_token is not None
        self.app, self.service = create_app(backend, client, slack.signing_secret, socket_mode=socket_mode)
        self.events: SlackEvents | None = None
        self._socket: Any = None
        if socket_mode:
            assert slack.app_token is not None
            self._socket = start_socket_mode(self.app, slack.app_token)
        else:
            assert slack.signing_secret is not None
            self.events = SlackEvents(self.app, slack.signing_secret, limits)

    def routes(self) -> list[BaseRoute]:
        """What the one server mounts: /slack/events in HTTP mode, nothing over Socket Mode."""
        return [self.events.route()] if self.events is not None else []

    def stop(self) -> None:
        if self._socket is not None:
            self._socket.close()


class Pusher:
    """For the bot on its own clone: pushes commits left unpushed while the remote was down, once it is back."""

    def __init__(self, repo: GitRepo, interval: float = 5.0) -> None:
        self.repo = repo
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="grayops-bot-push", daemon=True)

    def start(self) -> Pusher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self.repo.unpushed() == 0:
                    continue
                with self.repo.lock():
                    self.repo.fetch()
                    if self.repo.integrate() is None:
                        result = self.repo.push()
                        if result.pushed:
                            log.info("pushed the commands kept while the git remote was unreachable")
            except RemoteUnavailable:
                continue
            except Exception:  # keep trying; never kill the bot
                log.exception("pushing kept commits failed")
