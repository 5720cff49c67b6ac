"""Block Kit for Slack: the one message per rollout, its thread lines, and the /rollout answer. Pure.

Every text from the fleet repository or a person (versions, reasons, names) goes through `slack_escape`, so
`<!channel>` in a reason shows as text and pings nobody.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from reconciler.core.effects import Event
from reconciler.core.engine import retry_point
from reconciler.core.model import Phase, RolloutState, Severity
from reconciler.core.text import slack_escape

Block = dict[str, Any]

PHASE_ICON = {
    Phase.PENDING: ":hourglass_flowing_sand:", Phase.WAITING_WINDOW: ":clock3:",
    Phase.AWAITING_APPROVAL: ":raised_hand:", Phase.PROGRESSING: ":arrow_forward:",
    Phase.PAUSED: ":double_vertical_bar:", Phase.ROLLING_BACK: ":rewind:", Phase.SUCCEEDED: ":white_check_mark:",
    Phase.ROLLED_BACK: ":leftwards_arrow_with_hook:", Phase.FAILED: ":x:",
}
SEVERITY_ICON = {
    Severity.INFO: ":information_source:", Severity.WARNING: ":warning:", Severity.CRITICAL: ":rotating_light:",
}
ACTION_PREFIX = "grayops_"


def title(state: RolloutState) -> str:
    return slack_escape(f"{state.plugin} {state.from_version or '(none)'} → {state.target_version}")


def batch_line(state: RolloutState, batches_total: int) -> str:
    """`batch 2 of 4: wave-1 (Baking, 3 instances)`, or what the rollout waits for when no batch started."""
    if not state.batches:
        return f"batch 0 of {batches_total}"
    batch = state.batches[-1]
    total = max(batches_total, len(state.batches))
    count = len(batch.instances)
    return f"batch {len(state.batches)} of {total}: {slack_escape(batch.name)} ({batch.phase.value}, {count} instances)"


def verdicts_line(state: RolloutState) -> str:
    """The last reading of each metric of the latest batch that has one: `error_rate 0.012 Successful`."""
    for batch in reversed(state.batches):
        parts = [f"{m.name} {_value(m.last.value)} {m.last.verdict.value}" for m in batch.metrics if m.last]
        if parts:
            return f"last verdicts ({batch.name}): " + ", ".join(parts)
    return "no metric readings yet"


def paused_line(state: RolloutState) -> str | None:
    if state.phase is not Phase.PAUSED or state.paused_at is None:
        return None
    return slack_escape(f"paused by {state.paused_by or 'unknown'}: {state.pause_reason or 'no reason given'}")


def summary(state: RolloutState, batches_total: int) -> str:
    """Plain lines, for /rollout and as the notification text of the rollout message."""
    lines = [f"{PHASE_ICON[state.phase]} *{title(state)}* — {state.phase.value}: {slack_escape(state.reason)}",
             batch_line(state, batches_total), verdicts_line(state)]
    if state.waiting_for:
        lines.insert(2, f":hourglass: waiting for {state.waiting_for}")
    paused = paused_line(state)
    if paused:
        lines.append(paused)
    return "\n".join(lines)


def rollout_message(state: RolloutState, batches_total: int,
                    dashboard_url: str | None = None) -> tuple[str, list[Block]]:
    """(fallback text, blocks) of the rollout's one message, with the buttons that apply to its phase, and a link
    to the rollout's page of the web view when grayops.yaml gives `dashboard.url`."""
    text = f"{title(state)}: {state.phase.value}"
    context = slack_escape(f"rollout {state.rollout_id} · desired commit {state.desired_commit[:10]} · requested by "
                           f"{state.requested_by or '?'}")
    if dashboard_url:  # checked when grayops.yaml is read: http(s), no space, <, > or |
        context += f" · <{dashboard_url}/rollouts/{quote(state.plugin, safe='')}|open in the web view>"
    blocks: list[Block] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": summary(state, batches_total)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
    ]
    buttons = _buttons(state)
    if buttons:
        blocks.append({"type": "actions", "block_id": f"grayops:{state.rollout_id}", "elements": buttons})
    return text, blocks


def _buttons(state: RolloutState) -> list[Block]:
    plugin = state.plugin
    retry = [_button("retry", "Retry", plugin, "primary")] if retry_point(state) is not None else []
    if state.phase.terminal or state.phase is Phase.ROLLING_BACK:
        return retry
    buttons: list[Block] = []
    if state.phase is Phase.PAUSED:
        buttons.append(_button("resume", "Resume", plugin, "primary"))
    else:
        buttons.append(_button("pause", "Pause", plugin))
    if state.phase is Phase.AWAITING_APPROVAL:
        buttons.append(_button("approve", "Approve", plugin, "primary"))
    buttons += retry
    if state.from_version:
        rollback = _button("rollback", "Roll back", plugin, "danger")
        rollback["confirm"] = {
            "title": {"type": "plain_text", "text": "Roll back?"},
            "text": {"type": "mrkdwn", "text": f"Roll *{plugin}* back from {slack_escape(state.target_version)} to "
                                               f"{slack_escape(state.from_version)} on every instance this rollout "
                                               "touched?"},
            "confirm": {"type": "plain_text", "text": "Roll back"},
            "deny": {"type": "plain_text", "text": "Cancel"},
            "style": "danger",
        }
        buttons.append(rollback)
    return buttons


def _button(command: str, label: str, plugin: str, style: str | None = None) -> Block:
    button: Block = {"type": "button", "action_id": ACTION_PREFIX + command,
                     "text": {"type": "plain_text", "text": label}, "value": plugin}
    if style:
        button["style"] = style
    return button


def event_line(event: Event) -> str:
    """One thread reply: transitions plainly, alerts with their severity, the people they concern mentioned."""
    if event.kind == "transition":
        where = f" [{slack_escape(event.batch)}]" if event.batch else ""
        return f"{PHASE_ICON[event.phase]} {event.phase.value}{where}: {slack_escape(event.message)}"
    line = (f"{SEVERITY_ICON[event.severity]} *{event.severity.value.upper()}* {event.kind}: "
            f"{slack_escape(event.message)}")
    if event.escalated:
        line = f":mega: escalated ({slack_escape(event.escalated)}): {line}"
    if event.mentions:
        line += " " + " ".join(mention(who) for who in event.mentions)
    if event.alert_id:
        line += f" (alert {event.alert_id})"
    return line


_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")


def mention(who: str) -> str:
    """A Slack user ID as `<@U...>`, a user group's as `<!subteam^S...>` (they notify), anything else as plain
    `@name` text."""
    if _USER_ID.match(who):
        return f"<@{who}>"
    if _GROUP_ID.match(who):
        return f"<!subteam^{who}>"
    return "@" + slack_escape(who)


ACK_ACTION = ACTION_PREFIX + "ack"


def event_blocks(event: Event) -> list[Block] | None:
    """An alert that can be acknowledged: its line and an Acknowledge button (the button's value is the alert id)."""
    if not event.alert_id:
        return None
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": event_line(event)}},
        {"type": "actions", "block_id": f"grayops-alert:{event.alert_id}",
         "elements": [{"type": "button", "action_id": ACK_ACTION, "style": "primary", "value": event.alert_id,
                       "text": {"type": "plain_text", "text": "Acknowledge"}}]},
    ]


def _value(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"
