"""Planning: which instances a plugin has, in which order, cut into the policy's cumulative batches.

A plan is deterministic: the same plugin, clusters and policy always give the same batches. The same cut
also re-plans the rest of a running rollout when its policy changes (`cut` with the instances already
assigned to started batches), so a policy change applies only to batches not yet started.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler.core.model import BatchState
from reconciler.core.spec import BatchSpec, ClusterSpec, PluginSpec, PolicySpec, size_percent


@dataclass(frozen=True, order=True, slots=True)
class InstanceRef:
    """One plugin instance: a cluster and a namespace. Its id `cluster/namespace` names it everywhere."""

    cluster: str
    namespace: str
    labels: tuple[tuple[str, str], ...] = ()
    # Made once: a large fleet asks for it hundreds of thousands of times a tick (README "Sizing").
    id: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", f"{self.cluster}/{self.namespace}")

    def label(self, key: str) -> str | None:
        for name, value in self.labels:  # a few labels: a dict would cost more to build than it saves
            if name == key:
                return value
        return None


@dataclass(frozen=True)
class PlannedBatch:
    spec: BatchSpec
    instances: tuple[InstanceRef, ...]

    @property
    def name(self) -> str:
        return self.spec.name


def _by_id(ref: InstanceRef) -> str:
    return ref.id


def matches(selector: Mapping[str, Sequence[str]], labels: Mapping[str, str]) -> bool:
    """Every key of the selector must be present with one of its listed values."""
    return all(labels.get(key) in values for key, values in selector.items())


def select_instances(plugin: PluginSpec, clusters: Sequence[ClusterSpec]) -> list[InstanceRef]:
    """One instance per selected cluster and namespace, sorted by id."""
    return sorted(_instances(plugin, clusters), key=_by_id)


def _instances(plugin: PluginSpec, clusters: Sequence[ClusterSpec]) -> list[InstanceRef]:
    targets, namespaces = plugin.targets, plugin.namespaces
    chosen = [c for c in clusters if matches(targets, c.labels)] if targets else clusters
    return [InstanceRef(cluster.name, namespace, labels)
            for cluster in chosen
            for labels in (tuple(sorted(cluster.labels.items())),)
            for namespace in namespaces]


def order_instances(instances: Sequence[InstanceRef], policy: PolicySpec) -> list[InstanceRef]:
    """By the policy's order label (listed values first, in their order; the rest after), then by id."""
    if policy.order is None:
        return sorted(instances, key=_by_id)
    label, values = policy.order.label, policy.order.values
    rank = {value: index for index, value in enumerate(values)}

    def key(ref: InstanceRef) -> tuple[int, str]:
        value = ref.label(label)
        return (rank.get(value, len(values)) if value is not None else len(values), ref.id)

    return sorted(instances, key=key)


def cumulative_count(size: int | str, total: int) -> int:
    """How many instances are done after a batch of this size: "10%" of 25 is 3 (rounded up), 1 is 1."""
    percent = size_percent(size)
    count = math.ceil(total * percent / 100 - 1e-9) if percent is not None else int(size)
    return min(count, total)


def cut(
    ordered: Sequence[InstanceRef], batches: Sequence[BatchSpec], assigned: Collection[str] = ()
) -> list[PlannedBatch]:
    """Cut the instances not yet `assigned` into the batches still to come; empty batches are dropped."""
    total = len(ordered)
    done = sum(1 for ref in ordered if ref.id in assigned)
    remaining = [ref for ref in ordered if ref.id not in assigned]
    planned: list[PlannedBatch] = []
    for spec in batches:
        target = cumulative_count(spec.size, total)
        if target <= done:
            continue
        take, remaining = remaining[: target - done], remaining[target - done :]
        planned.append(PlannedBatch(spec, tuple(take)))
        done = target
    if remaining:  # only when sizes never reach 100%, which validation refuses; never lose an instance
        planned.append(PlannedBatch(batches[-1], tuple(remaining)))
    return planned


def batches_left(instances: Sequence[InstanceRef], policy: PolicySpec, started: Sequence[BatchState]
                 ) -> list[PlannedBatch]:
    """The plan of the batches a rollout has not started yet: its instances that no started batch took, in the
    policy's order, cut by its batch sizes. The one place that says how many batches are left."""
    assigned = {iid for batch in started for iid in batch.instances}
    return cut(order_instances(instances, policy), policy.batches, assigned)


def plan(plugin: PluginSpec, clusters: Sequence[ClusterSpec], policy: PolicySpec) -> list[PlannedBatch]:
    """The full plan of a new rollout."""
    return cut(order_instances(_instances(plugin, clusters), policy), policy.batches)  # one sort: ids are unique


def shortest_duration(batches: Sequence[PlannedBatch], policy: PolicySpec) -> float:
    """Seconds the plan takes at the least: every bake, with upgrades, windows and approvals taking no time."""
    return sum(batch.spec.bake for batch in batches)
