"""What the engine asks the world to do, and what the world reports back: plain frozen values.

The engine never performs an effect; the shell runs them after the tick's status is committed, and feeds
their results (check results, metric readings) into the next tick's observations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

from reconciler.core.model import Measurement, Phase, Severity
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ApprovalRecord, Check, MetricSpec, PolicySpec, RetryRecord
from reconciler.core.strategy import (
    CleanupResult,
    Operation,
    OperationResult,
    RunSmoke,
    SmokeResult,
    StrategyObservation,
)
from reconciler.core.trust import ArtifactDecision

CheckStage = Literal["pre", "verify"]


# --- effects ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetVersion:
    """Make one instance run `version` (an upgrade or a rollback). Idempotent."""

    plugin: str
    instance: str
    version: str
    rollout_id: str
    previous: str | None
    digest: str | None = None  # the image digest the artifact gate pinned for `version` (README "Supply chain")


@dataclass(frozen=True)
class RunChecks:
    """Run the policy's pre-checks or verify checks on one instance; the result comes back as a CheckResult."""

    plugin: str
    instance: str
    stage: CheckStage
    version: str
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class QueryMetrics:
    """Measure the batch's metrics once; each result comes back as a MetricResult."""

    plugin: str
    rollout_id: str
    batch: str
    version: str
    instances: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    window_seconds: float
    baseline: tuple[str, ...] = ()  # instances still on the old version, for metrics with maxIncrease
    baseline_version: str | None = None


@dataclass(frozen=True)
class CommitSpec:
    """Change one field of plugins/<plugin>.yaml by a commit: a revert of spec.version or spec.paused."""

    plugin: str
    field: Literal["version", "paused"]
    value: str | bool
    action: Literal["rollback", "pause"]
    reason: str


@dataclass(frozen=True)
class Alert:
    plugin: str
    rollout_id: str
    kind: str  # metric_threshold, rollback_failed, metrics_missing, batch_timeout, ...
    severity: Severity
    message: str


@dataclass(frozen=True)
class WriteReport:
    """The rollout ended: write reports/<plugin>/<version>-<rolloutId>.md from the state."""

    plugin: str


Effect = SetVersion | RunChecks | QueryMetrics | CommitSpec | Alert | WriteReport | Operation | RunSmoke


# --- observations -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceObservation:
    """What a cluster reports of one instance."""

    version: str | None  # the version its spec asks for (None: not installed)
    ready: bool  # converged and healthy at that version
    failed: str | None = None  # why it can never become ready (e.g. ProgressDeadlineExceeded)
    reachable: bool = True
    message: str = ""
    missing: str | None = None  # the workload or container the plugin names is not there (preflight fails on it)


UNREACHABLE = InstanceObservation(None, False, reachable=False, message="cluster unreachable")


@dataclass(frozen=True)
class CheckResult:
    instance: str
    stage: CheckStage
    version: str
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class MetricResult:
    """One measurement of one metric for one batch, as QueryMetrics asked."""

    rollout_id: str
    batch: str
    metric: str
    measurement: Measurement


@dataclass(frozen=True)
class Change:
    """A commit that changed a file: who asked for it, who wrote it, and its trailers.

    `by` is who asked: the Requested-By trailer of a commit grayops made (a CLI or chat command), else the
    git author's name; in a human's commit a Requested-By line is only a claim (README "The two-person rule").
    """

    commit: str
    by: str | None = None
    action: str | None = None
    reason: str | None = None
    author: str | None = None  # "Name <email>"
    committer: str | None = None  # "Name <email>"
    trailers: tuple[tuple[str, str], ...] = ()  # (lower-cased key, value), in order
    at: datetime | None = None  # when it was committed (the committer's time), when git said

    def trailer(self, key: str) -> str | None:
        """The first value of trailer `key` (any case), None when absent."""
        return next((value for name, value in self.trailers if name == key.lower()), None)


@dataclass(frozen=True)
class RefusedApproval:
    """An approval record the two-person rule refused (README "The two-person rule"), and why."""

    record: ApprovalRecord
    reason: str


@dataclass(frozen=True)
class Desired:
    """One plugin's desired state in the revision in force, with its policy resolved and instances selected."""

    plugin: str
    version: str
    paused: bool
    policy_name: str
    policy: PolicySpec
    instances: tuple[InstanceRef, ...]
    desired_commit: str
    change: Change
    depends_on: tuple[str, ...] = ()
    artifact_gate: bool = False  # the version's image must pass the artifact gate before the first batch
    signed_by: str | None = None  # the allowed signer who vouched for the revision (README "Supply chain")
    strategy: str = "inPlace"  # the workload's strategy (README "Strategies"): blueGreen is driven by core.steps
    scale_down_delay: float = 600.0  # blueGreen: how long the old color keeps its pods after the switch
    traffic_steps: tuple[int, ...] = ()  # canary: the canary's share of the traffic at each step, in percent

    @cached_property  # made once: the shell keeps a Desired for as long as nothing it is made of moves
    def instance_ids(self) -> frozenset[str]:
        return frozenset(ref.id for ref in self.instances)


@dataclass(frozen=True)
class Blocked:
    """A cluster where a dependency (dependsOn) is not ready at its desired version yet: the plugin waits there."""

    dependency: str
    version: str | None  # the dependency's desired version
    cluster: str
    situation: str = ""  # where the dependency's rollout stands, e.g. "batch all awaits approval"

    @property
    def what(self) -> str:
        """What is waited for, as status and chat show it: `auth 2.0 (batch all awaits approval)`."""
        return f"{self.dependency} {self.version}" + (f" ({self.situation})" if self.situation else "")

    @property
    def message(self) -> str:
        return f"{self.dependency} is not ready at {self.version} on {self.cluster} yet" + (
            f" ({self.situation})" if self.situation else "")


@dataclass(frozen=True)
class Hold:
    """The shell must stop a rollout for a reason of its own (a git conflict, a rewritten history): the engine
    pauses it and alerts with this kind."""

    reason: str
    kind: str


@dataclass(frozen=True)
class Observations:
    instances: Mapping[str, InstanceObservation] = field(default_factory=dict)
    checks: tuple[CheckResult, ...] = ()
    metrics: tuple[MetricResult, ...] = ()
    approvals: tuple[ApprovalRecord, ...] = ()
    blocked_clusters: Mapping[str, Blocked] = field(default_factory=dict)  # cluster -> why it must wait (dependsOn)
    apply_errors: Mapping[str, str] = field(default_factory=dict)  # instance -> why the driver could not change it
    hold: Hold | None = None  # the shell must stop this rollout (e.g. a git conflict): pause, alert its kind
    refused_approvals: tuple[RefusedApproval, ...] = ()  # the two-person rule refused these: alert, never count
    retries: tuple[RetryRecord, ...] = ()  # `grayops retry` records of approvals/<plugin>.yaml
    artifact: ArtifactDecision | None = None  # the artifact gate's answer for the version (README "Supply chain")
    # strategies (README "Strategies"): where each instance stands, and what the last operations answered
    strategy: Mapping[str, StrategyObservation] = field(default_factory=dict)
    operations: tuple[OperationResult, ...] = ()
    smokes: tuple[SmokeResult, ...] = ()
    cleanups: tuple[CleanupResult, ...] = ()



# --- what notifiers receive ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """A transition or an alert of one rollout, as logs, Slack and webhooks show it."""

    plugin: str
    rollout_id: str
    version: str
    kind: str  # "transition", or the alert kind
    severity: Severity
    message: str
    phase: Phase
    at: datetime
    batch: str | None = None
    action: str | None = None  # a transition's Grayops-Action (`start`, `batch-pass`, ...): its lifecycle event
    commit: str | None = None  # the desired commit the rollout was read from
    # README "Owners and escalation": set by the shell on the way to the notifiers
    mentions: tuple[str, ...] = ()  # Slack user (U...) or user-group (S...) IDs, or names, to mention
    alert_id: str | None = None  # a critical alert that can be acknowledged
    escalated: str | None = None  # why this is sent again: the level reached ("not acknowledged after 10m")
