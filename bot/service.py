"""What a chat command does once acknowledged: authorise, carry it out as a commit, and say what happened.

Runs after the ack, in the bot's worker threads, so it may fetch, commit and push. The fleet repository at its
newest revision decides who may do what (access.yaml) and what exists; the command itself is
`reconciler.commands.run_command`, trailers `Requested-By: <Slack user ID> (<name>)`, `Grayops-Action` and
`Slack-Trigger-Id`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import Counter
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.access import Action, decide, groups_to_check, touched_tiers
from bot.factory import SLACK
from bot.notifier import CHANNEL_NOTE, TS_NOTE
from bot.parse import HELP, USAGE, Request
from bot.render import batch_line, summary, title
from reconciler.acks import acknowledge
from reconciler.adapters.gitrepo import GitError, GitRepo, RemoteUnavailable
from reconciler.adapters.registry import default_registry
from reconciler.api.approval import ApprovalRefused, issue
from reconciler.commands import CommandRefused, recorded_state, run_command
from reconciler.core.escalation import plugin_of_alert
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.model import RolloutState, fmt_time
from reconciler.core.report import batches_total
from reconciler.core.spec import AdapterModels, ApprovalAction, CommitCommand
from reconciler.core.status import StatusUnreadable
from reconciler.core.text import NAME_LIMIT, one_line, slack_escape

log = logging.getLogger("grayops.bot")

COMMANDS_TOTAL = Counter("grayops_bot_commands_total", "Chat commands by outcome",
                         ["command", "outcome"])  # done, unchanged, refused, denied, usage, duplicate, status, token
DENIED_TOTAL = Counter("grayops_bot_denied_total", "Chat commands denied by access.yaml", ["command"])
METRICS = (COMMANDS_TOTAL, DENIED_TOTAL)  # served on the one server's /metrics

TOKEN_TTL = timedelta(minutes=15)  # a token from chat: enough to paste it into the API call
USER_ID_LIMIT = 40  # Slack user IDs are about 11 characters
VERB: dict[CommitCommand, str] = {"pause": "paused", "resume": "resumed", "rollback": "rollback asked",
                                  "approve": "approved", "retry": "retry asked"}


@dataclass(frozen=True)
class User:
    id: str
    name: str = ""

    @property
    def by(self) -> str:
        """The Requested-By form: `U0OPS1 (alice)`."""
        return f"{self.id} ({self.name})" if self.name else self.id


@dataclass(frozen=True)
class Reply:
    text: str  # ephemeral, to the person who asked
    public: str | None = None  # a line for the rollout's thread
    plugin: str | None = None


@dataclass
class Backend:
    """Where commands act. Hosted in `grayops run`: the reconciler's clone, its wake-up, its Slack messages."""

    repo: GitRepo
    wake: Callable[[], None] = lambda: None
    thread_of: Callable[[str], tuple[str, str] | None] = lambda plugin: None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    hosted: bool = False  # the clone is the reconciler's own, in this process
    # What grayops.yaml is checked with: the wiring gives its registry's; by default this package's and Slack.
    adapters: AdapterModels = field(default_factory=lambda: default_registry().with_(SLACK).models)


class SeenTriggers:
    """trigger_ids already handled (a repeated one is done once); bounded, forgotten after `ttl` seconds."""

    def __init__(self, ttl: float = 900.0, limit: int = 10000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._ttl, self._limit = ttl, limit
        self._lock = threading.Lock()

    def first(self, trigger: str) -> bool:
        if not trigger:
            return True
        now = time.monotonic()
        with self._lock:
            while self._seen and (len(self._seen) >= self._limit or next(iter(self._seen.values())) < now - self._ttl):
                self._seen.popitem(last=False)
            if trigger in self._seen:
                return False
            self._seen[trigger] = now
            return True


class Service:
    def __init__(self, backend: Backend, client: WebClient, group_ttl: float = 60.0) -> None:
        from policies import builtin_policies

        self.backend = backend
        self.client = client
        self.builtins = builtin_policies()
        self._group_ttl = group_ttl
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}
        self._groups_lock = threading.Lock()

    # --- a command ----------------------------------------------------------------------------------------

    def run(self, request: Request | None, user: User, trigger: str) -> Reply:
        if request is None:
            return Reply(HELP)
        repo = self.backend.repo
        self._refresh()
        try:
            fleet = load_fleet(repo.desired_files(), self.builtins, adapters=self.backend.adapters)
        except FleetInvalid as err:
            return Reply(f"The fleet repository is invalid at HEAD, nothing was done:\n{slack_escape(str(err))}")
        plugin = request.plugin
        if plugin is not None and plugin not in fleet.plugins:
            known = ", ".join(sorted(fleet.plugins)) or "none"
            COMMANDS_TOTAL.labels(request.command, "usage").inc()
            return Reply(f"No plugin named `{plugin}` (known: {known}). Usage: {USAGE[request.command]}")
        state = self._state(plugin) if plugin else None
        touched = request.token if request.token in ("retry", "resume") else request.command  # a token's operation
        tiers = touched_tiers(fleet, plugin, touched, request.batch, state) if plugin else frozenset()
        action = Action(request.command, user.id, plugin, tiers)
        decision = decide(fleet.access, action, self._member_of(user.id, groups_to_check(fleet.access, action)))
        if not decision.allowed:
            log.warning("denied: %s (%s) asked to %s %s: %s", user.id, user.name, request.command, plugin or "",
                        decision.reason)
            DENIED_TOTAL.labels(request.command).inc()
            COMMANDS_TOTAL.labels(request.command, "denied").inc()
            return Reply(f":no_entry: Not allowed: {slack_escape(decision.reason)}. Nothing was changed.")
        if request.command == "rollout":
            COMMANDS_TOTAL.labels("rollout", "status").inc()
            return Reply(self._status(fleet, plugin))
        assert plugin is not None
        if request.token is not None:
            return self._issue_token(fleet, plugin, request.token, user)
        try:
            result = run_command(repo, request.command, plugin, user.by, self.backend.now(), reason=request.reason,
                                 batch=request.batch, once=("Slack-Trigger-Id", trigger) if trigger else None,
                                 adapters=self.backend.adapters)
        except (CommandRefused, GitError) as err:
            COMMANDS_TOTAL.labels(request.command, "refused").inc()
            return Reply(f"Not done: {slack_escape(str(err))}")
        if result.done_before:
            COMMANDS_TOTAL.labels(request.command, "duplicate").inc()
            log.info("trigger %s of %s was already carried out: %s", trigger, user.by, result.message)
            return Reply(f"{slack_escape(result.message)}; nothing more was done.")
        if not result.changed:
            COMMANDS_TOTAL.labels(request.command, "unchanged").inc()
            return Reply(f"{slack_escape(result.message)}: nothing to change, no commit.")
        COMMANDS_TOTAL.labels(request.command, "done").inc()
        self.backend.wake()
        log.info("%s by %s: %s", request.command, user.by, result.message)
        text = f":white_check_mark: {slack_escape(result.message)}"
        if not result.pushed and self.backend.hosted:
            text += ("\n:warning: The git remote is unreachable: the commit is in the reconciler's clone, which acts "
                     "on it now, and it is pushed when the remote is back.")
        elif not result.pushed:
            text += (f"\n:warning: The git remote is unreachable: the commit is kept in the clone at {repo.path} "
                     "(a reconciler sharing that workdir acts on it now) and it is pushed when the remote is back.")
        detail = request.reason
        if request.command == "approve":  # "approve billing 1.6.0 batch all (1a2b3c, pushed)" -> "1.6.0 batch all"
            detail = result.message.split(" (", 1)[0].removeprefix(f"approve {plugin} ")
        said = f": {slack_escape(detail)}" if detail else ""
        public = f"{VERB[request.command]} by <@{slack_escape(user.id)}>{said}"
        return Reply(text, public, plugin)

    def acknowledge(self, alert: str, user: User) -> Reply:
        """The Acknowledge button of a critical alert (README "Owners and escalation"): allowed to the plugin's
        owners and to whoever may pause it; a commit under `acks:` in approvals/<plugin>.yaml."""
        plugin = plugin_of_alert(alert)
        self._refresh()
        try:
            fleet = load_fleet(self.backend.repo.desired_files(), self.builtins, adapters=self.backend.adapters)
        except FleetInvalid as err:
            return Reply(f"The fleet repository is invalid at HEAD, nothing was done:\n{slack_escape(str(err))}")
        if plugin is None or plugin not in fleet.plugins:
            return Reply(f"Not done: {slack_escape(alert)} is not an alert of a plugin of the fleet repository.")
        if not self._may_acknowledge(fleet, plugin, user):
            DENIED_TOTAL.labels("ack").inc()
            COMMANDS_TOTAL.labels("ack", "denied").inc()
            log.warning("denied: %s (%s) asked to acknowledge alert %s", user.id, user.name, alert)
            return Reply(f":no_entry: Not allowed: only {plugin}'s owners and who may pause it acknowledge its "
                         "alerts. Nothing was changed.")
        try:
            result = acknowledge(self.backend.repo, alert, user.by, self.backend.now())
        except (CommandRefused, GitError) as err:
            COMMANDS_TOTAL.labels("ack", "refused").inc()
            return Reply(f"Not done: {slack_escape(str(err))}")
        if not result.changed:
            COMMANDS_TOTAL.labels("ack", "unchanged").inc()
            return Reply(f"{slack_escape(result.message)}; nothing more was done.")
        COMMANDS_TOTAL.labels("ack", "done").inc()
        self.backend.wake()
        log.info("ack by %s: %s", user.by, result.message)
        return Reply(f":white_check_mark: {slack_escape(result.message)}",
                     f"alert {slack_escape(alert)} acknowledged by <@{slack_escape(user.id)}>", plugin)

    def _may_acknowledge(self, fleet: Fleet, plugin: str, user: User) -> bool:
        people = fleet.access.people if fleet.access else []
        owners = {" ".join(o.split()).casefold() for o in fleet.plugins[plugin].spec.owners}
        if any(p.slack == user.id and " ".join(p.name.split()).casefold() in owners for p in people):
            return True
        action = Action("pause", user.id, plugin, touched_tiers(fleet, plugin, "pause", None, None))
        return decide(fleet.access, action, self._member_of(user.id, groups_to_check(fleet.access, action))).allowed

    def announce(self, reply: Reply, fallback_channel: str | None, thread: tuple[str, str] | None = None) -> None:
        """Post the public line in the rollout's thread (or where the command was run when there is none)."""
        if not reply.public or not reply.plugin:
            return
        where = thread or self.backend.thread_of(reply.plugin) or self._recorded_thread(reply.plugin)
        try:
            if where:
                self.client.chat_postMessage(channel=where[0], thread_ts=where[1], text=reply.public)
            elif fallback_channel:
                self.client.chat_postMessage(channel=fallback_channel, text=f"{reply.plugin}: {reply.public}")
        except (SlackApiError, OSError) as err:
            log.warning("could not post %r to Slack: %s", reply.public, err)

    def _issue_token(self, fleet: Fleet, plugin: str, action: ApprovalAction, user: User) -> Reply:
        """`/approve token`: the token only in the ephemeral answer, never in a log line or a channel."""
        version = fleet.plugins[plugin].spec.version
        try:
            issued = issue(self.backend.repo, plugin, version, action, user.by, self.backend.now(), TOKEN_TTL)
        except (ApprovalRefused, GitError) as err:
            COMMANDS_TOTAL.labels("approve", "refused").inc()
            return Reply(f"Not done: {slack_escape(str(err))}")
        COMMANDS_TOTAL.labels("approve", "token").inc()
        log.info("approval token %s for %s of %s %s issued by %s", issued.id, action, plugin, version, user.by)
        pushed = "" if issued.pushed else " (the git remote is unreachable: it works once its record is pushed)"
        return Reply(f":key: Approval token `{issued.id}` for {action} of {plugin} {version}, single use, until "
                     f"{fmt_time(issued.expires)}{pushed}. Only you see it; pass it as `approvalToken`:\n"
                     f"`{issued.token}`")

    # --- helpers ------------------------------------------------------------------------------------------

    def _refresh(self) -> None:
        repo = self.backend.repo
        with repo.lock():
            try:
                repo.fetch()
            except RemoteUnavailable as err:
                log.warning("git remote unreachable, deciding on the local clone: %s", err)
                return
            repo.integrate()

    def _state(self, plugin: str) -> RolloutState | None:
        try:
            return recorded_state(self.backend.repo, plugin)
        except StatusUnreadable as err:
            log.warning("%s", err)
            return None

    def _recorded_thread(self, plugin: str) -> tuple[str, str] | None:
        state = self._state(plugin)
        if state and state.notes.get(CHANNEL_NOTE) and state.notes.get(TS_NOTE):
            return state.notes[CHANNEL_NOTE], state.notes[TS_NOTE]
        return None

    def _member_of(self, user: str, groups: list[str]) -> set[str]:
        """The groups (of those asked) that `user` belongs to, from usergroups.users.list, cached."""
        found = set()
        for group in groups:
            now = time.monotonic()
            with self._groups_lock:
                cached = self._groups.get(group)
            if cached is None or cached[0] < now:
                try:
                    users = frozenset(self.client.usergroups_users_list(usergroup=group).get("users") or ())
                except (SlackApiError, OSError) as err:
                    log.warning("cannot read the members of user group %s: %s", group, err)
                    continue
                cached = (now + self._group_ttl, users)
                with self._groups_lock:
                    self._groups[group] = cached
            if user in cached[1]:
                found.add(group)
        return found

    def _status(self, fleet: Fleet, plugin: str | None) -> str:
        names = [plugin] if plugin else sorted(fleet.plugins)
        lines = []
        for name in names:
            state = self._state(name)
            if state is None:
                lines.append(f"{name}: no rollout recorded yet")
            elif plugin:
                lines.append(summary(state, batches_total(fleet, state)))
            else:
                lines.append(f"{title(state)}: {state.phase.value}, {batch_line(state, batches_total(fleet, state))}")
        return "\n".join(lines) or "no plugins in the fleet repository"


def payload_user(body: dict[str, Any]) -> User:
    """The user of a slash command or an interaction payload; id and name one line each (they become trailers)."""
    if "user_id" in body:
        return _user(body["user_id"], body.get("user_name"))
    user = body.get("user")
    if not isinstance(user, dict):
        user = {}
    return _user(user.get("id", ""), user.get("username") or user.get("name"))


def _user(user_id: Any, name: Any) -> User:
    return User(one_line(str(user_id), USER_ID_LIMIT), one_line(str(name or ""), NAME_LIMIT))
