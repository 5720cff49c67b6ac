"""A fleet with a Slack notifier, the real reconciler ticking in a thread, and the bot's /slack/events served by the
one server (`AsgiServer`, uvicorn) on a loopback port."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette

from bot.app import EVENTS_PATH
from bot.host import HostedBot, SlackEnv
from bot.notifier import SlackNotifier
from bot.service import Backend
from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.httpserver import AsgiServer
from reconciler.cli import full_registry
from reconciler.shell import Reconciler
from tests.bot.fake_slack import FakeSlack
from tests.bot.slack_requests import SECRET, button, post, slash
from tests.conftest import Human, plugin_yaml, remote_status, settings_yaml, wait_for

TIERS = {"canary": 1, "staging": 2, "prod": 3}
SLACK = "notifiers:\n  - {type: log}\n  - {type: slack, channel: \"#rollouts\", tiers: {prod: \"#prod\"}}\n"
SIM = "sim:\n  upgradeSeconds: 0.05\n"

# The canary passes quickly; wave-1 then bakes for long enough to pause or roll back during it.
SLOW_POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: slow}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 300ms}
    - {name: wave-1, size: 50%, bake: 600s}
    - {name: all, size: 100%, bake: 300ms}
  maxParallel: 4
  instanceTimeout: 20s
  analysis:
    interval: 100ms
    metrics:
      - {name: error_rate, max: 0.05}
"""

ACCESS = """\
apiVersion: grayops.dev/v1
kind: Access
rules:
  - {commands: [pause, resume, rollback, rollout], users: [U0OPS1], groups: [S0ONCALL], plugins: ["*"]}
  - {commands: [approve], groups: [S0RELEASE], tiers: [prod]}
identities:
  U0OPS1: [Alice Ops]
"""


def seed(human: Human, version: str = "1.5.0", policy: str = SLOW_POLICY, access: str = ACCESS,
         extra_settings: str = SLACK) -> None:
    human.commit(f"fleet: billing {version}", {
        "grayops.yaml": settings_yaml(TIERS, SIM + extra_settings),
        "policies/slow.yaml": policy,
        "access.yaml": access,
        "plugins/billing.yaml": plugin_yaml("billing", version, policy="slow"),
    })


class Running:
    """The real reconciler on its own clone, ticking every 50 ms (and at once when woken) in a thread."""

    def __init__(self, human: Human, workdir: Path) -> None:
        self.repo = GitRepo(str(human.remote), workdir)
        self.reconciler = Reconciler(self.repo, workdir, builtin_policies(), poll_interval=0.2,
                                     registry=full_registry())
        self.reconciler.start()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.reconciler.tick()
                self.reconciler.wake.wait(0.05)
        except BaseException as err:  # surfaced by the test through `error`
            self.error = err

    def stop(self) -> None:
        self._stop.set()
        self.reconciler.wake.set()
        self._thread.join(timeout=30)
        for notifier in self.slack_notifiers():
            notifier.close()

    def slack_notifiers(self) -> list[SlackNotifier]:
        runtime = self.reconciler.runtime
        return [w for w in (runtime.watchers if runtime else ()) if isinstance(w, SlackNotifier)]

    def thread_of(self, plugin: str) -> tuple[str, str] | None:
        for notifier in self.slack_notifiers():
            return notifier.thread_of(plugin)
        return None

    def phase(self, plugin: str = "billing") -> str | None:
        state = self.reconciler.states.get(plugin)
        return state.phase.value if state else None




def wait_phase(human: Human, phase: str, timeout: float = 30.0) -> dict[str, Any]:
    return wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == phase and s,
                      timeout, f"billing to be {phase} in the remote's status")


class Chat:
    """Sends signed slash commands and button clicks to the running bot."""

    _ids = itertools.count(1)

    def __init__(self, bot: ServedBot, fake: FakeSlack) -> None:
        self.url, self.fake = bot.url, fake

    def command(self, command: str, text: str = "", *, user: str = "U0OPS1", name: str = "alice",
                trigger: str | None = None) -> tuple[str, int, str]:
        """(trigger id, HTTP status, ack body)."""
        trigger = trigger or f"trig-{next(self._ids)}"
        body = slash(command, text, user=user, name=name, trigger=trigger,
                     response_url=self.fake.response_url(trigger))
        status, ack = post(self.url, body)
        return trigger, status, ack

    def click(self, action: str, plugin: str = "billing", *, user: str = "U0OPS1", name: str = "alice",
              message_ts: str = "1700000000.000001", channel: str = "C0OPS") -> tuple[str, int]:
        trigger = f"trig-{next(self._ids)}"
        body = button(action, plugin, user=user, name=name, trigger=trigger, message_ts=message_ts,
                      channel=channel, response_url=self.fake.response_url(trigger))
        status, _ = post(self.url, body)
        return trigger, status

    def reply(self, trigger: str, timeout: float = 15.0) -> str:
        """The ephemeral answer the person got on the command's response_url."""
        texts = self.fake.wait_for(lambda: self.fake.responses(trigger), timeout, f"a reply to {trigger}")
        return str(texts[-1])


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack()
    fake.groups = {"S0ONCALL": ["U0ONCALL"], "S0RELEASE": ["U0REL1", "U0OPS1"]}
    yield fake
    fake.close()


@pytest.fixture
def slack_env(monkeypatch: pytest.MonkeyPatch, fake_slack: FakeSlack) -> dict[str, str]:
    """The environment grayops reads Slack's secrets and API URL from, pointed at the fake."""
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake_slack.api_url}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    return env


class ServedBot:
    """The hosted bot's /slack/events on the one server (uvicorn, as `grayops run --listen` and `grayops serve`
    serve it), on a free loopback port."""

    def __init__(self, hosted: HostedBot) -> None:
        self.hosted, self.app, self.service = hosted, hosted.app, hosted.service
        self.server = AsgiServer(Starlette(routes=hosted.routes()), "127.0.0.1", 0).start()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{EVENTS_PATH}"

    def stop(self) -> None:
        self.server.stop()
        self.hosted.stop()


def start_bot(backend: Backend, env: dict[str, str]) -> ServedBot:
    return ServedBot(HostedBot(backend, SlackEnv.read(env), env))


def bot_on_clone(human: Human, workdir: Path, env: dict[str, str]) -> tuple[GitRepo, ServedBot]:
    """The bot alone on a clone of its own (no reconciler), as `grayops serve` runs it."""
    repo = GitRepo(str(human.remote), workdir)
    repo.ensure_clone()
    return repo, start_bot(Backend(repo), env)
