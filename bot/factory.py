"""Builds the Slack and webhook notifiers that grayops.yaml asks for, with secrets from the environment.

SLACK_BOT_TOKEN is the bot token; GRAYOPS_SLACK_API_URL overrides the Web API base URL (an Enterprise
proxy, or a test's fake). A notifier whose secret is missing is left out with one clear log line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from slack_sdk import WebClient

from bot.notifier import DEFAULT_API_URL, SlackNotifier
from reconciler.adapters.notify.webhook import WebhookNotifier
from reconciler.adapters.ports import Notifier
from reconciler.core.spec import Settings
from reconciler.core.spec import SlackNotifier as SlackSettings
from reconciler.core.spec import WebhookNotifier as WebhookSettings

log = logging.getLogger(__name__)


def api_url(env: Mapping[str, str] | None = None) -> str:
    url = (env if env is not None else os.environ).get("GRAYOPS_SLACK_API_URL") or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def slack_client(token: str, env: Mapping[str, str] | None = None) -> WebClient:
    return WebClient(token=token, base_url=api_url(env), timeout=10)


def build_notifiers(settings: Settings, env: Mapping[str, str] | None = None) -> list[Notifier]:
    env = env if env is not None else os.environ
    tiers = {c.name: c.labels["tier"] for c in settings.clusters if "tier" in c.labels}
    built: list[Notifier] = []
    for spec in settings.notifiers:
        if isinstance(spec, SlackSettings):
            token = env.get("SLACK_BOT_TOKEN")
            if not token:
                log.warning("grayops.yaml asks for a Slack notifier (channel %s) but SLACK_BOT_TOKEN is not set; "
                            "no Slack messages", spec.channel)
                continue
            built.append(SlackNotifier(slack_client(token, env), spec.channel, spec.plugins, spec.tiers, tiers))
        elif isinstance(spec, WebhookSettings):
            secret = env.get(spec.secret_env) if spec.secret_env else None
            if spec.secret_env and not secret:
                log.error("webhook notifier: environment variable %s (secretEnv) is not set; alerts are sent "
                          "unsigned", spec.secret_env)
            built.append(WebhookNotifier(spec.url, secret))
    return built
