"""Who may run which chat command, from access.yaml: deny by default. Pure.

A rule grants its `commands` to its `users` (Slack user IDs) and the members of its `groups` (user-group
IDs), for the plugins it lists (none, or "*", means every plugin) and the tiers it lists. A rule with
`tiers` covers an action only when every tier the action touches is listed: the tier labels of the clusters
the plugin runs on, or for `approve` those of the batch being approved. A rule with no users and no groups
grants nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.plan import InstanceRef, batches_left, select_instances
from reconciler.core.spec import Access, AccessRule

TIER_LABEL = "tier"


@dataclass(frozen=True)
class Action:
    command: str
    user: str
    plugin: str | None  # None: /rollout of every plugin
    tiers: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


def _scope_matches(rule: AccessRule, action: Action) -> bool:
    if action.command not in rule.commands:
        return False
    if rule.plugins and "*" not in rule.plugins and action.plugin not in rule.plugins:
        return False
    return not rule.tiers or (bool(action.tiers) and action.tiers <= set(rule.tiers))


def groups_to_check(access: Access | None, action: Action) -> list[str]:
    """The user groups whose membership would decide this action (so only those are looked up)."""
    if access is None:
        return []
    wanted: list[str] = []
    for rule in access.rules:
        if _scope_matches(rule, action):
            if action.user in rule.users:
                return []  # granted by user ID: no lookup needed
            wanted.extend(g for g in rule.groups if g not in wanted)
    return wanted


def decide(access: Access | None, action: Action, groups: Collection[str] = ()) -> Decision:
    """Allowed, with the rule that allowed it; or denied, saying why. `groups`: the user's groups among
    `groups_to_check`."""
    what = f"{action.command} {action.plugin}" if action.plugin else action.command
    if access is None:
        return Decision(False, "there is no access.yaml in the fleet repository, so every chat command is denied")
    for index, rule in enumerate(access.rules):
        if not _scope_matches(rule, action):
            continue
        if action.user in rule.users:
            return Decision(True, f"access.yaml rule {index + 1} lists {action.user}")
        member = sorted(set(rule.groups) & set(groups))
        if member:
            return Decision(True, f"access.yaml rule {index + 1} grants it to group {member[0]}")
    tiers = f" (tiers {', '.join(sorted(action.tiers))})" if action.tiers else ""
    return Decision(False, f"no rule in access.yaml lets {action.user} {what}{tiers}")


def touched_tiers(fleet: Fleet, plugin: str, command: str, batch: str | None,
                  state: RolloutState | None) -> frozenset[str]:
    """The tier labels an action on `plugin` touches: its batch's clusters for approve, else all its clusters."""
    spec = fleet.plugins[plugin].spec
    instances = select_instances(spec, fleet.settings.clusters)
    if command == "approve" and state is not None and not state.phase.terminal:
        chosen = _approval_batch(fleet, plugin, batch, state, instances)
        if chosen:
            instances = chosen
    return frozenset(t for ref in instances if (t := ref.label(TIER_LABEL)) is not None)


def _approval_batch(fleet: Fleet, plugin: str, batch: str | None, state: RolloutState,
                    instances: list[InstanceRef]) -> list[InstanceRef]:
    policy = fleet.policies[fleet.plugins[plugin].spec.policy]
    for planned in batches_left(instances, policy, state.batches):
        if (batch is None and planned.spec.approval) or planned.name == batch:
            return list(planned.instances)
    by_id = {ref.id: ref for ref in instances}
    for started in state.batches:
        if started.name == batch:
            return [by_id[i] for i in started.instances if i in by_id]
    return []
