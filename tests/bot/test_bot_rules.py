"""The pure parts of the bot, by tables: command parsing, access decisions, rendering; and the two-person rule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.access import Action, decide, groups_to_check, touched_tiers
from bot.parse import Request, Usage, parse
from bot.render import event_line, rollout_message
from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.effects import Event
from reconciler.core.fleet import Fleet, load_fleet
from reconciler.core.model import Phase, RolloutState, Severity
from reconciler.core.people import Directory, same_person
from reconciler.core.spec import Access, AccessRule
from tests.bot.harness import ACCESS, SLOW_POLICY, TIERS
from tests.conftest import plugin_yaml, settings_yaml

PARSED = {
    "pause with a reason": ("/pause", "billing incident 42", Request("pause", "billing", reason="incident 42")),
    "pause, quoted reason": ("/pause", 'billing "db is down"', Request("pause", "billing", reason="db is down")),
    "pause, no reason": ("/pause", "billing", Request("pause", "billing")),
    "resume": ("/resume", "billing", Request("resume", "billing")),
    "rollback": ("/rollback", "billing bad p99", Request("rollback", "billing", reason="bad p99")),
    "approve the waiting batch": ("/approve", "billing", Request("approve", "billing")),
    "approve a batch": ("/approve", "billing wave-2", Request("approve", "billing", batch="wave-2")),
    "an approval token": ("/approve", "token billing", Request("approve", "billing", token="approve")),
    "a retry token": ("/approve", "token billing Retry", Request("approve", "billing", token="retry")),
    "a plugin named token": ("/approve", "token", Request("approve", "token")),
    "rollout of all": ("/rollout", "", Request("rollout")),
    "rollout of one": ("/rollout", "billing", Request("rollout", "billing")),
    "prefixed command": ("/grayops-pause", "billing", Request("pause", "billing")),
    "help": ("/pause", "help", None),
}


@pytest.mark.parametrize(("slash", "text", "expected"), PARSED.values(), ids=PARSED.keys())
def test_parse(slash: str, text: str, expected: Request | None) -> None:
    assert parse(slash, text) == expected


USAGE = {
    "missing plugin": ("/pause", "", "missing plugin name"),
    "bad plugin name": ("/resume", "Billing!", "is not a plugin name"),
    "resume takes no reason": ("/resume", "billing now", "takes only a plugin name"),
    "approve one batch": ("/approve", "billing a b", "one batch name at most"),
    "a token for what": ("/approve", "token billing deploy", "approval token is for approve, retry or resume"),
    "a token for one plugin": ("/approve", "token billing retry now", "approval token is for approve, retry"),
    "a token's plugin": ("/approve", "token Billing!", "is not a plugin name"),
    "unknown command": ("/deploy", "billing", "unknown command"),
}


@pytest.mark.parametrize(("slash", "text", "message"), USAGE.values(), ids=USAGE.keys())
def test_usage(slash: str, text: str, message: str) -> None:
    with pytest.raises(Usage, match=message):
        parse(slash, text)


RULES = Access(api_version="grayops.dev/v1", kind="Access", rules=[
    AccessRule(commands=["pause", "resume", "rollback", "rollout"], users=["U0OPS1"], groups=["S0ONCALL"],
               plugins=["*"]),
    AccessRule(commands=["approve"], groups=["S0RELEASE"], tiers=["prod"]),
    AccessRule(commands=["pause"], users=["U0BILL"], plugins=["billing"]),
])

DECISIONS = {
    "listed user": (Action("pause", "U0OPS1", "billing", frozenset({"prod"})), (), True),
    "group member": (Action("rollback", "U0X", "auth", frozenset({"prod"})), ("S0ONCALL",), True),
    "not a member": (Action("rollback", "U0X", "auth"), (), False),
    "command not granted": (Action("approve", "U0OPS1", "billing", frozenset({"prod"})), (), False),
    "approve in prod": (Action("approve", "U0R", "billing", frozenset({"prod"})), ("S0RELEASE",), True),
    "approve beyond prod": (Action("approve", "U0R", "billing", frozenset({"prod", "staging"})), ("S0RELEASE",),
                            False),
    "approve with no tier": (Action("approve", "U0R", "billing"), ("S0RELEASE",), False),
    "plugin-scoped rule": (Action("pause", "U0BILL", "billing"), (), True),
    "other plugin": (Action("pause", "U0BILL", "auth"), (), False),
    "resume not in plugin rule": (Action("resume", "U0BILL", "billing"), (), False),
}


@pytest.mark.parametrize(("action", "groups", "allowed"), DECISIONS.values(), ids=DECISIONS.keys())
def test_access(action: Action, groups: tuple[str, ...], allowed: bool) -> None:
    assert decide(RULES, action, groups).allowed is allowed


def test_access_is_denied_without_access_yaml_and_says_why() -> None:
    decision = decide(None, Action("pause", "U0OPS1", "billing"))
    assert not decision.allowed and "no access.yaml" in decision.reason
    denied = decide(RULES, Action("approve", "U0R", "billing", frozenset({"prod", "staging"})))
    assert denied.reason == "no rule in access.yaml lets U0R approve billing (tiers prod, staging)"


def test_only_the_groups_that_could_grant_are_looked_up() -> None:
    assert groups_to_check(RULES, Action("pause", "U0OPS1", "billing")) == []  # granted by ID already
    assert groups_to_check(RULES, Action("pause", "U0X", "billing")) == ["S0ONCALL"]
    assert groups_to_check(RULES, Action("approve", "U0X", "billing", frozenset({"prod"}))) == ["S0RELEASE"]
    assert groups_to_check(RULES, Action("approve", "U0X", "billing", frozenset({"canary"}))) == []


def _fleet(policy: str = SLOW_POLICY) -> Fleet:
    return load_fleet({"grayops.yaml": settings_yaml(TIERS), "policies/slow.yaml": policy, "access.yaml": ACCESS,
                       "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="slow")}, builtin_policies(),
                      adapters=full_registry().models)


def _state(phase: Phase = Phase.PROGRESSING, from_version: str | None = None) -> RolloutState:
    at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    return RolloutState("billing", "r-1", "1.6.0", "abc123", "slow", phase, "because", at, at,
                        from_version=from_version)


def test_tiers_of_an_action_are_its_batch_for_approve_and_every_cluster_otherwise() -> None:
    fleet = _fleet()
    assert touched_tiers(fleet, "billing", "pause", None, _state()) == {"canary", "staging", "prod"}
    assert touched_tiers(fleet, "billing", "approve", "all", _state()) == {"prod"}
    assert touched_tiers(fleet, "billing", "approve", "wave-1", _state()) == {"staging"}
    assert touched_tiers(fleet, "billing", "approve", "canary", _state()) == {"canary"}


SAME = {
    "same Slack user": ("U0OPS1 (alice)", "U0OPS1 (alice)", True),
    "git author mapped in identities": ("U0OPS1 (al)", "Alice Ops", True),
    "case differs": ("U0OPS1 (al)", "alice ops", True),
    "someone else": ("U0REL1 (rita)", "Alice Ops", False),
    "CLI name mapped": ("alice", "U0OPS1 (al)", True),
}


@pytest.mark.parametrize(("by", "requested", "same"), SAME.values(), ids=SAME.keys())
def test_two_person_rule_identities(by: str, requested: str, same: bool) -> None:
    access = Access.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Access",
                                    "identities": {"U0OPS1": ["Alice Ops", "alice"]}})
    assert same_person(by, requested, Directory.of(access)) is same


def test_the_rollout_message_has_the_buttons_its_phase_allows() -> None:
    def actions(state: RolloutState) -> list[str]:
        _, blocks = rollout_message(state, 3)
        return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]

    assert actions(_state(from_version="1.5.0")) == ["grayops_pause", "grayops_rollback"]
    assert actions(_state(Phase.PAUSED, from_version="1.5.0")) == ["grayops_resume", "grayops_rollback"]
    assert actions(_state(Phase.AWAITING_APPROVAL)) == ["grayops_pause", "grayops_approve"]
    assert actions(_state(Phase.SUCCEEDED, from_version="1.5.0")) == []
    _, blocks = rollout_message(_state(from_version="1.5.0"), 3)
    rollback = next(e for b in blocks if b["type"] == "actions" for e in b["elements"]
                    if e["action_id"] == "grayops_rollback")
    assert rollback["confirm"]["confirm"]["text"] == "Roll back" and "1.5.0" in rollback["confirm"]["text"]["text"]


def test_thread_lines_show_severity() -> None:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    alert = Event("billing", "r-1", "1.6.0", "metric_threshold", Severity.CRITICAL, "error_rate 0.2 > max 0.05",
                  Phase.ROLLING_BACK, at, "canary")
    assert event_line(alert) == ":rotating_light: *CRITICAL* metric_threshold: error_rate 0.2 &gt; max 0.05"
    moved = Event("billing", "r-1", "1.6.0", "transition", Severity.INFO, "baking", Phase.PROGRESSING, at, "canary")
    assert event_line(moved) == ":arrow_forward: Progressing [canary]: baking"
