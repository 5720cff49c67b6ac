"""Which strategy operation comes next for one instance (README "Strategies"), from what its cluster reports.

Pure: the engine passes the instance's observation (`BlueGreenObservation`, `CanaryObservation`,
`PartitionObservation`), the version it must end up serving and what the rollout already knows (whether smoke tests
must run on the staged color first, the traffic or partition step it is at), and gets back one `Next`: an
operation to ask, smoke tests to run, a wait, a failure, or "it serves the version" (at this step: the usual verify
follows, then the batch's bake judges the step).
Every operation is idempotent, so asking the same one again after a restart or a lost cluster is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    CanaryObservation,
    Cleanup,
    Operation,
    PartitionObservation,
    Scale,
    SetPartition,
    SetWeight,
    Stage,
    Switch,
)


@dataclass(frozen=True)
class Next:
    """What one instance needs now; at most one of `operation`, `smoke`, `promote`, `serving`, `failed`."""

    operation: Operation | None = None  # ask the driver this
    promote: bool = False  # canary: change the stable Deployment to the version in place (a SetVersion)
    smoke: bool = False  # run the smoke tests on the staged color (through its preview Service) first
    serving: bool = False  # it serves the version (a canary: at this step's weight): verify it as usual
    failed: str | None = None  # the version can never serve here (the staged color can never be ready)
    message: str = ""  # where it stands, for the instance's note


def blue_green(plugin: str, seen: BlueGreenObservation, version: str, rollout_id: str,
               smoke_first: bool, digest: str | None = None) -> Next:
    """Adopt (once) -> Stage the idle color -> wait until it is ready (scaling it up when it was scaled down) ->
    smoke-test it when `smoke_first` -> Switch the Service to it. A rollback takes the same path to the previous
    version: within scaleDownDelay its color is ready and this is a switch back; once removed it is staged again
    (the platform teams' rollback flow). `digest` is the one pinned for `version` (README "Supply chain"): the
    staged color runs `image:version@digest`."""
    iid = seen.instance
    if not seen.reachable or seen.message:
        return Next(message=seen.message or "cluster unreachable")
    if not seen.adopted:
        return Next(Adopt(plugin, iid, rollout_id), message=f"adopting: the Service {seen.service} is to select "
                                                           "grayops.dev/color: blue")
    serving = seen.colors.get(seen.serving or "blue")
    if serving is not None and serving.version == version and serving.ready:
        return Next(serving=True)
    idle, color = seen.colors.get(seen.idle), seen.idle
    if idle is None or idle.version != version:
        return Next(Stage(plugin, iid, version, rollout_id, seen.version, digest),
                    message=f"staging {version} in {color} beside {seen.version or 'nothing'}")
    if idle.failed:
        return Next(failed=f"{color} ({idle.name}) can never be ready: {idle.failed}; the Service stays on "
                           f"{seen.serving}")
    if idle.replicas == 0:
        return Next(Scale(plugin, iid, color, None), message=f"scaling {color} ({version}) up again")
    if not idle.ready:
        return Next(message=f"waiting for {color} ({version}) to be ready: "
                            f"{idle.message or f'{idle.available} of {idle.replicas} available'}")
    if smoke_first:
        return Next(smoke=True, message=f"smoke tests on {color} ({version}) before the switch")
    return Next(Switch(plugin, iid, color), message=f"switching the Service {seen.service} to {color} ({version})")


def canary(plugin: str, seen: CanaryObservation, version: str, rollout_id: str, weight: int | None,
           smoke_first: bool, digest: str | None = None) -> Next:
    """A traffic canary towards `version` at one step: Adopt (once) -> Stage `<name>-canary` at the version (and
    `digest`) -> wait until it is ready -> smoke-test it when `smoke_first` -> SetWeight(`weight`); "serving" once
    the route sends `weight` percent to a ready canary (the step is then verified, baked and judged). `weight`
    None is the promotion, after the last step passed: the stable Deployment changed in place while the canary
    takes the traffic, then the weights back to 100/0."""
    iid = seen.instance
    if not seen.reachable or seen.message:
        return Next(message=seen.message or "cluster unreachable")
    if not seen.adopted:
        return Next(Adopt(plugin, iid, rollout_id), message=f"adopting: the Service {seen.service} is to select "
                                                           "grayops.dev/track: stable")
    if weight is None:
        return _promote(plugin, seen, version)
    staged = seen.canary
    if staged is None or staged.version != version:
        return Next(Stage(plugin, iid, version, rollout_id, seen.version, digest),
                    message=f"staging the canary at {version} beside {seen.version or 'nothing'}")
    if staged.failed:
        return Next(failed=f"the canary ({staged.name}) can never be ready: {staged.failed}; the route keeps "
                           f"{seen.weight}% on it")
    if staged.replicas == 0:
        return Next(Scale(plugin, iid, "canary", None), message=f"scaling the canary ({version}) up again")
    if not staged.ready:
        return Next(message=f"waiting for the canary ({version}) to be ready: "
                            f"{staged.message or f'{staged.available} of {staged.replicas} available'}")
    if smoke_first:
        return Next(smoke=True, message=f"smoke tests on the canary ({version}) before it gets traffic")
    if seen.weight != weight:
        return Next(SetWeight(plugin, iid, weight), message=f"the route {seen.route} to send {weight}% to the "
                                                            f"canary ({version})")
    return Next(serving=True, message=f"the canary ({version}) takes {weight}% of the traffic")


def _promote(plugin: str, seen: CanaryObservation, version: str) -> Next:
    stable = seen.stable
    if stable is None or stable.version != version:
        return Next(promote=True, message=f"promoting: the stable Deployment to {version}")
    if stable.failed:
        return Next(failed=f"the stable Deployment ({stable.name}) can never be ready at {version}: {stable.failed}")
    if not stable.ready:
        return Next(message=f"waiting for the stable Deployment ({version}) to be ready: "
                            f"{stable.message or f'{stable.available} of {stable.replicas} available'}")
    if seen.weight != 0:
        return Next(SetWeight(plugin, seen.instance, 0), message=f"promoted: the route {seen.route} back to the "
                                                                 "stable Deployment")
    return Next(serving=True)


def canary_rollback(plugin: str, seen: CanaryObservation, version: str) -> Next:
    """A traffic canary back to `version`: weight 0 at once (the stable Deployment serves everything), then, when
    the stable Deployment was promoted already, the previous version in place."""
    if not seen.reachable:
        return Next(message=seen.message or "cluster unreachable")
    if seen.weight != 0:
        return Next(SetWeight(plugin, seen.instance, 0), message=f"the route {seen.route} back to the stable "
                                                                 "Deployment")
    if seen.message:
        return Next(message=seen.message)
    return _promote(plugin, seen, version)


def partition(plugin: str, seen: PartitionObservation, at_step: int) -> Next:
    """A StatefulSet with partitionSteps (README "Strategies") at its step `at_step`: the partition lowered to that
    step, then "serving" once the ordinals at and above it run the new revision and every pod is ready (the step is
    verified, baked and judged). The last step is 0, where the StatefulSet's own readiness decides."""
    if not seen.reachable:
        return Next(message=seen.message or "cluster unreachable")
    targets = partition_targets(seen)
    if not targets:
        return Next(message="waiting for the partition steps to be set with the version")
    want = targets[min(at_step, len(targets) - 1)]
    if seen.partition > want:
        return Next(SetPartition(plugin, seen.instance, want), message=f"lowering the partition to {want}")
    if seen.partition > 0 and seen.step_ready:
        return Next(serving=True, message=f"partition {seen.partition}: ordinals >= {seen.partition} updated and "
                                          "ready")
    return Next(message=seen.message or f"waiting for the pods of partition {seen.partition}")


def partition_targets(seen: PartitionObservation) -> tuple[int, ...]:
    """The partitions of this change's steps, ending at 0."""
    return seen.steps if not seen.steps or seen.steps[-1] == 0 else (*seen.steps, 0)


def scale_down(plugin: str, seen: BlueGreenObservation, version: str, delay: float, now: datetime) -> Scale | None:
    """The old color of an instance that serves `version`, scaled to 0 once scaleDownDelay has passed since the
    switch (the Service's annotation, so a restart does not reset the delay); None when nothing is due."""
    if not seen.reachable or seen.serving is None or seen.switched_at is None:
        return None
    serving, idle = seen.colors.get(seen.serving), seen.colors.get(seen.idle)
    if serving is None or serving.version != version or idle is None or idle.replicas == 0:
        return None
    if (now - seen.switched_at).total_seconds() < delay:
        return None
    return Scale(plugin, seen.instance, seen.idle, 0)


def cleanup(plugin: str, seen: BlueGreenObservation | CanaryObservation | None, keep_old: bool, delay: float,
            now: datetime) -> Cleanup | None:
    """Cleanup of a settled rollout's instance, when due: at once after a rollback (the idle color holds the
    version that failed) and for a canary (its weight is 0 once settled), after scaleDownDelay since the switch
    after a blue-green success (`keep_old`: the old color is what a rollback switches back to until then); never
    while the cluster does not answer (asked again once it does)."""
    if seen is None or not seen.reachable:
        return None
    if keep_old and isinstance(seen, BlueGreenObservation) and seen.switched_at is not None \
            and (now - seen.switched_at).total_seconds() < delay:
        return None
    return Cleanup(plugin, seen.instance)
