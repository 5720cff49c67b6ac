"""Strategies (README "Strategies"): what the engine may ask a cluster driver to do beyond setting a version, and
what the driver reports back. Plain frozen values, like `effects`.

Each operation is one idempotent change to one instance (cluster/namespace), named after the step it takes:
`Adopt`, `Stage`, `Switch`, `Scale`, `SetWeight`, `SetPartition`, `RestoreKnobs`, `Cleanup`, and `RunSmoke`.
The driver answers each with an `OperationResult` (a `SmokeResult` for `RunSmoke`, a `CleanupResult` for
`Cleanup`), and reports where every instance stands with a `StrategyObservation`, from which the engine decides
the next operation. The driver refuses what would break an instance (switching to a color that is not ready,
sending traffic to a canary that is not) and never decides what comes next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from reconciler.core.spec import ExecCheck, HttpCheck, JobCheck, PolicySpec

Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
SmokeTarget = Literal["serving", "staged"]  # what the Service serves, or what was staged beside it
Outcome = Literal["done", "unchanged", "waiting", "refused", "unreachable", "error"]
# done: the change was made; unchanged: it was already so (asking twice is harmless); waiting: a first part was
# made and the rest needs the cluster to catch up (ask again); refused: the driver would not (see message);
# unreachable: the cluster did not answer (ask again when it is back); error: the API refused the change.


def other(color: Color) -> Color:
    return "green" if color == "blue" else "blue"


# --- what the engine asks ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Knobs:
    """The policy's RollingUpdate knobs (README "Strategies"), for the time of a change: maxSurge /
    maxUnavailable on a Deployment (the originals kept in an annotation and put back by `RestoreKnobs`), and
    StatefulSet partition steps (the first one set with the version, the next ones by `SetPartition`)."""

    max_surge: int | str | None = None
    max_unavailable: int | str | None = None
    partition_steps: tuple[int | str, ...] = ()

    @classmethod
    def of(cls, policy: PolicySpec) -> Knobs:
        return cls(policy.max_surge, policy.max_unavailable, tuple(policy.partition_steps))

    @property
    def any(self) -> bool:
        return self.max_surge is not None or self.max_unavailable is not None or bool(self.partition_steps)


@dataclass(frozen=True)
class Adopt:
    """Before the first blue-green or canary change of an instance: give the plugin's own Deployment its label
    (`grayops.dev/color: blue`, or `grayops.dev/track: stable`), then, once its pods carry it and are ready, add the
    label to the Service's selector, so that pods grayops starts beside it receive no traffic. Ask until
    `adopted`; its pods restart once, under their own RollingUpdate strategy."""

    plugin: str
    instance: str
    rollout_id: str


@dataclass(frozen=True)
class Stage:
    """Blue-green: make the idle color run `version` (created from the plugin's Deployment when missing) with the
    serving color's replicas. Canary: make `<name>-canary` run `version` with the stable replicas, and its Service
    `<service>-canary`. Neither receives traffic yet. With `digest` (the one the artifact gate pinned for `version`,
    README "Supply chain") the image is `image:version@digest`."""

    plugin: str
    instance: str
    version: str
    rollout_id: str
    previous: str | None
    digest: str | None = None


@dataclass(frozen=True)
class Switch:
    """Blue-green: the Service's selector to `color`; refused unless that color is ready."""

    plugin: str
    instance: str
    color: Color


@dataclass(frozen=True)
class Scale:
    """Scale a color (blue-green) or the canary (`track="canary"`) to `replicas`; None: the serving replicas."""

    plugin: str
    instance: str
    track: Color | Literal["canary"]
    replicas: int | None


@dataclass(frozen=True)
class SetWeight:
    """Canary: the HTTPRoute sends `weight` percent to the canary Service and the rest to the stable one. Raising
    it is refused unless the canary is ready; 0 is always allowed (a rollback takes all traffic back at once)."""

    plugin: str
    instance: str
    weight: int


@dataclass(frozen=True)
class SetPartition:
    """StatefulSet with partition steps: lower the RollingUpdate partition to `partition` (the next step)."""

    plugin: str
    instance: str
    partition: int


@dataclass(frozen=True)
class RunSmoke:
    """Run the policy's smoke tests on one instance, against what serves or what was staged; blocks up to the
    longest check's timeout. `after` names the Job (one per rollout, instance and occasion)."""

    plugin: str
    instance: str
    version: str
    rollout_id: str
    after: Literal["upgrade", "rollback"]
    target: SmokeTarget
    checks: tuple[HttpCheck | ExecCheck | JobCheck, ...]


@dataclass(frozen=True)
class RestoreKnobs:
    """Put back the RollingUpdate maxSurge / maxUnavailable a change set (the annotation says what they were)."""

    plugin: str
    instance: str


@dataclass(frozen=True)
class Cleanup:
    """The rollout settled: remove what grayops created and no longer serves (the canary Deployment and Service,
    an idle color's Deployment and preview Service, finished smoke Jobs), scale an idle plugin Deployment to 0,
    and restore the knobs. Only objects labelled `grayops.dev/managed-by: grayops` are ever removed."""

    plugin: str
    instance: str


Operation = Adopt | Stage | Switch | Scale | SetWeight | SetPartition | RestoreKnobs | Cleanup


# --- what the driver answers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationResult:
    instance: str
    operation: str  # the operation's class name: "Switch", "SetWeight"...
    outcome: Outcome
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("done", "unchanged")


@dataclass(frozen=True)
class SmokeResult:
    """Like a CheckResult, for smoke tests: passed or not, and what each check said (a failed Job's last log)."""

    instance: str
    version: str
    after: Literal["upgrade", "rollback"]
    ok: bool
    message: str
    reachable: bool = True


@dataclass(frozen=True)
class CleanupResult:
    instance: str
    removed: tuple[str, ...]  # "Deployment tenant-a/billing-green", for the report
    scaled_down: tuple[str, ...] = ()
    outcome: Outcome = "done"
    message: str = ""


# --- what the driver reports ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    """One Deployment a strategy reads: a color, the stable or the canary."""

    name: str
    version: str | None
    replicas: int  # what its spec asks for
    available: int
    ready: bool  # rolled out at its spec with at least one replica (kubectl rollout status agrees)
    failed: str | None = None  # it can never become ready (ProgressDeadlineExceeded)
    managed: bool = False  # created by grayops (labelled grayops.dev/managed-by): cleanup may remove it
    message: str = ""


@dataclass(frozen=True)
class BlueGreenObservation:
    instance: str
    service: str
    serving: Color | None  # the color the Service selects; None: not adopted (it selects the plugin's pods)
    colors: Mapping[Color, Track]  # the colors whose Deployment exists (blue is the plugin's own Deployment)
    switched_at: datetime | None = None  # when grayops last switched the Service (its annotation)
    endpoints_ready: int | None = None  # ready pods behind the Service (None: Endpoints not seen yet)
    reachable: bool = True
    message: str = ""
    missing: str = ""  # what grayops never creates and does not find (the Service, the plugin's Deployment or its
    # container): a rollout's preflight fails on it (README "Supply chain")

    @property
    def adopted(self) -> bool:
        return self.serving is not None

    @property
    def idle(self) -> Color:
        """The color that does not serve: where the next version is staged, or what a rollback returns to."""
        return other(self.serving) if self.serving else "green"

    @property
    def version(self) -> str | None:
        """What the instance serves."""
        track = self.colors.get(self.serving or "blue")
        return track.version if track else None

    def rollback_path(self, previous: str) -> Literal["switch", "scale-up", "redeploy"]:
        """How to return to `previous`: switch back to the idle color (ready at it: seconds), scale it up first
        (scaled down after scaleDownDelay), or deploy `previous` into it again (removed by cleanup, or at another
        version: README "Strategies", blue-green)."""
        idle = self.colors.get(self.idle)
        if idle is None or idle.version != previous:
            return "redeploy"
        return "switch" if idle.ready else "scale-up"


@dataclass(frozen=True)
class CanaryObservation:
    instance: str
    route: str
    service: str
    stable: Track | None
    canary: Track | None
    stable_weight: int | None  # None: the HTTPRoute has no backendRef to the stable Service (preflight error)
    canary_weight: int = 0
    adopted: bool = False  # the stable Service selects only the stable pods (grayops.dev/track: stable)
    reachable: bool = True
    message: str = ""

    @property
    def weight(self) -> int:
        """The canary's share of the route's traffic, in percent."""
        total = (self.stable_weight or 0) + self.canary_weight
        return round(100 * self.canary_weight / total) if total else 0

    @property
    def version(self) -> str | None:
        return self.stable.version if self.stable else None


@dataclass(frozen=True)
class PartitionObservation:
    instance: str
    partition: int
    steps: tuple[int, ...]  # this change's partitions, resolved to the replicas (empty: no explicit steps)
    replicas: int
    updated: int
    ready: int
    step_ready: bool  # the ordinals >= partition run the new revision and every pod is ready: judge this step
    reachable: bool = True
    message: str = ""

    @property
    def next_step(self) -> int | None:
        later = [p for p in self.steps if p < self.partition]
        return later[0] if later else None


StrategyObservation = BlueGreenObservation | CanaryObservation | PartitionObservation


@dataclass(frozen=True)
class Preflight:
    """What the cluster must have before a strategy can run there; `errors` empty when it has it all."""

    instance: str
    errors: tuple[str, ...] = field(default_factory=tuple)
    reachable: bool = True
