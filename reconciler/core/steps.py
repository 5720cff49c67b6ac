"""Which strategy operation comes next for one instance (README "Strategies"), from what its cluster reports.

Pure: the engine passes the instance's `BlueGreenObservation`, the version it must end up serving and what the
rollout already knows (whether smoke tests must run on the staged color first), and gets back one `Next`: an
operation to ask, smoke tests to run, a wait, a failure, or "it serves the version" (the usual verify follows).
Every operation is idempotent, so asking the same one again after a restart or a lost cluster is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    Cleanup,
    Operation,
    Scale,
    Stage,
    Switch,
)


@dataclass(frozen=True)
class Next:
    """What one instance needs now; at most one of `operation`, `smoke`, `serving`, `failed`."""

    operation: Operation | None = None  # ask the driver this
    smoke: bool = False  # run the smoke tests on the staged color (through its preview Service) first
    serving: bool = False  # the Service selects a ready color at the version: verify it as usual
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


def cleanup(plugin: str, seen: BlueGreenObservation | None, keep_old: bool, delay: float,
            now: datetime) -> Cleanup | None:
    """Cleanup of a settled rollout's instance, when due: at once after a rollback (the idle color holds the
    version that failed), after scaleDownDelay since the switch after a success (`keep_old`: the old color is what
    a rollback switches back to until then); never while the cluster does not answer (asked again once it does)."""
    if seen is None or not seen.reachable:
        return None
    if keep_old and seen.switched_at is not None and (now - seen.switched_at).total_seconds() < delay:
        return None
    return Cleanup(plugin, seen.instance)
