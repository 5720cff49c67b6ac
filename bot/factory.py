"""The Slack notifier as grayops.yaml names it (`type: slack`), and the Slack Web API client.

SLACK_BOT_TOKEN is the bot token; GRAYOPS_SLACK_API_URL overrides the Web API base URL (an Enterprise
proxy, or a test's fake). Without a token the notifier is left out with one clear log line. `SLACK` is added to
the reconciler's adapters by the program's wiring (`reconciler.cli.wiring.full_registry`); the Slack client is loaded
when the notifier is built, not when grayops.yaml is validated.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from reconciler.adapters.ports import Context, NotifierAdapter
from reconciler.core.spec import NotifierSettings

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.notifier import SlackNotifier

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://slack.com/api/"


class SlackSettings(NotifierSettings):
    type: Literal["slack"]
    channel: str
    tiers: dict[str, str] = Field(default_factory=dict, description="channel per tier label value")
    plugins: dict[str, str] = Field(default_factory=dict, description="channel per plugin")


def api_url(env: Mapping[str, str] | None = None) -> str:
    url = (env if env is not None else os.environ).get("GRAYOPS_SLACK_API_URL") or DEFAULT_API_URL
    return url if url.endswith("/") else url + "/"


def slack_client(token: str, env: Mapping[str, str] | None = None) -> WebClient:
    from slack_sdk import WebClient

    return WebClient(token=token, base_url=api_url(env), timeout=10)


def build_slack(settings: SlackSettings, context: Context) -> SlackNotifier | None:
    from bot.notifier import SlackNotifier

    token = context.env.get("SLACK_BOT_TOKEN")
    if not token:
        log.warning("grayops.yaml asks for a Slack notifier (channel %s) but SLACK_BOT_TOKEN is not set; "
                    "no Slack messages", settings.channel)
        return None
    tiers = {c.name: c.labels["tier"] for c in context.settings.clusters if "tier" in c.labels}
    return SlackNotifier(slack_client(token, context.env), settings.channel, settings.plugins, settings.tiers, tiers,
                         dashboard_url=context.settings.dashboard.url)


SLACK = NotifierAdapter("slack", SlackSettings, build_slack)
