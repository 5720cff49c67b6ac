"""Slash command text -> a request, or the usage to show. Pure.

The text is capped before it is split (`MAX_TEXT`), and a reason is one line of at most `REASON_LIMIT`
characters: README "Slack".
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from reconciler.core.spec import APPROVAL_ACTIONS, COMMANDS, ApprovalAction, Command
from reconciler.core.text import REASON_LIMIT, one_line, slack_escape

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_TEXT = 300  # characters of a command's text: a plugin name, a batch name or a reason, quoted or not

USAGE: dict[Command, str] = {
    "pause": "`/pause <plugin> [reason]` stop starting new work (commits spec.paused: true)",
    "resume": "`/resume <plugin>` continue where it stopped (commits spec.paused: false)",
    "rollback": "`/rollback <plugin> [reason]` roll back fast to the last good version (reverts spec.version)",
    "approve": "`/approve <plugin> [batch]` approve the batch waiting for it (or the one named); "
               "`/approve token <plugin> [approve|retry|resume]` an approval token for the HTTP API, shown to you only",
    "rollout": "`/rollout [plugin]` phase, batch n of m, last verdicts, who paused and why",
    "retry": "`/retry <plugin> [reason]` run again what failed: the failed batch, or a failed rollback",
}
HELP = "grayops commands:\n" + "\n".join(f"• {line}" for line in USAGE.values())


@dataclass(frozen=True)
class Request:
    command: Command
    plugin: str | None = None
    reason: str | None = None
    batch: str | None = None
    token: ApprovalAction | None = None  # `/approve token`: issue an approval token for this action


class Usage(ValueError):
    """The text is not a valid command; `str()` is what to show the user (ephemeral)."""


def command_name(slash: str) -> Command:
    """`/pause` -> pause; a prefixed name such as `/grayops-pause` works too (for workspaces where /pause is taken)."""
    name = slash.strip().lstrip("/").rsplit("-", 1)[-1].lower()
    for known in COMMANDS:
        if name == known:
            return known
    raise Usage(f"unknown command {_shown(slash)}\n{HELP}")


def parse(slash: str, text: str) -> Request | None:
    """The request, or None when help was asked for; raises Usage with the message to show."""
    command = command_name(slash)
    text = text or ""
    if len(text) > MAX_TEXT:  # before shlex, whose time grows with the text's length squared
        raise Usage(f"the text is too long ({len(text)} characters, at most {MAX_TEXT}). Usage: {USAGE[command]}")
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    if words and words[0].lower() in ("help", "-h", "--help"):
        return None
    if not words:
        if command == "rollout":
            return Request("rollout")
        raise Usage(f"missing plugin name. Usage: {USAGE[command]}")
    plugin, rest = words[0], words[1:]
    if not _NAME.match(plugin):
        raise Usage(f"{_shown(plugin)} is not a plugin name. Usage: {USAGE[command]}")
    if command in ("pause", "rollback", "retry"):
        reason = one_line(" ".join(rest), MAX_TEXT)
        if len(reason) > REASON_LIMIT:
            raise Usage(f"the reason is too long ({len(reason)} characters, at most {REASON_LIMIT}). "
                        f"Usage: {USAGE[command]}")
        return Request(command, plugin, reason=reason or None)
    if command == "approve" and plugin.lower() == "token" and rest:  # a plugin named token: `/approve token token`
        return _token(rest)
    if command == "approve":
        if len(rest) > 1 or (rest and not _NAME.match(rest[0])):
            raise Usage(f"approve takes one batch name at most. Usage: {USAGE[command]}")
        return Request(command, plugin, batch=rest[0] if rest else None)
    if rest:
        raise Usage(f"{command} takes only a plugin name. Usage: {USAGE[command]}")
    return Request(command, plugin)


def _token(words: list[str]) -> Request:
    """`/approve token <plugin> [action]`, after the word `token`."""
    plugin, action = words[0], (words[1].lower() if len(words) > 1 else "approve")
    if not _NAME.match(plugin):
        raise Usage(f"{_shown(plugin)} is not a plugin name. Usage: {USAGE['approve']}")
    if len(words) > 2 or action not in APPROVAL_ACTIONS:
        raise Usage(f"an approval token is for approve, retry or resume. Usage: {USAGE['approve']}")
    return Request("approve", plugin, token=next(a for a in APPROVAL_ACTIONS if a == action))


def _shown(word: str) -> str:
    """A word the person typed, quoted in the answer: one line, short, inert in Slack."""
    return slack_escape(repr(one_line(word, 60)))
