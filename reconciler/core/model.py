"""Frozen values of a rollout: phases, verdicts, readings, batch and instance state, and their storage form.

`RolloutState` is what `status/<plugin>.yaml` holds. `to_doc` and `from_doc` convert it to and from plain
data with sorted keys and no volatile stamps, one entry per instance: the form the API and `-o json` show, and
that status files had before `core/status.py` grouped their instances by state. Fields marked transient are
working memory of a running reconciler and are rebuilt after a restart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Phase(StrEnum):
    """The phase of a rollout. Terminal phases end it; settled ones need time or a human to move on."""

    PENDING = "Pending"
    WAITING_WINDOW = "WaitingWindow"
    AWAITING_APPROVAL = "AwaitingApproval"
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    ROLLING_BACK = "RollingBack"
    SUCCEEDED = "Succeeded"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"

    @property
    def terminal(self) -> bool:
        return self in (Phase.SUCCEEDED, Phase.ROLLED_BACK, Phase.FAILED)

    @property
    def settled(self) -> bool:
        """Nothing moves without a human or a clock: `grayops run --once` may stop here."""
        return self.terminal or self in (Phase.PAUSED, Phase.AWAITING_APPROVAL, Phase.WAITING_WINDOW)


class BatchPhase(StrEnum):
    UPGRADING = "Upgrading"
    BAKING = "Baking"
    PASSED = "Passed"
    FAILED = "Failed"


class Step(StrEnum):
    """Where one instance is within the current rollout."""

    PENDING = "Pending"
    UPGRADING = "Upgrading"
    VERIFYING = "Verifying"
    DONE = "Done"
    FAILED = "Failed"
    SKIPPED = "Skipped"  # its cluster did not answer and the policy says `offline: skip`: left as it was
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    ROLLBACK_FAILED = "RollbackFailed"

    @property
    def touched(self) -> bool:
        """The rollout changed this instance, so a rollback must put it back."""
        return self not in (Step.PENDING, Step.SKIPPED)


class Verdict(StrEnum):
    """One metric reading's judgement, ordered best to worst as listed."""

    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    ERROR = "Error"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Measurement:
    """What a metrics provider returns: a value, no data (value None), or an error. Providers never raise."""

    value: float | None
    error: str | None = None
    series: int = 0
    # The same query over the instances still on the old version (for maxIncrease); None when there are none
    # left to compare with, or when they gave no evidence, and then `baseline_missing` says why.
    baseline: float | None = None
    baseline_missing: str | None = None


@dataclass(frozen=True)
class Reading:
    metric: str
    verdict: Verdict
    value: float | None
    at: datetime
    message: str


@dataclass(frozen=True)
class MetricTrack:
    """The running judgement of one metric over one batch's bake."""

    name: str
    last: Reading | None = None
    failures: int = 0
    readings: int = 0
    consecutive_errors: int = 0
    no_data_since: datetime | None = None
    inconclusives: int = 0  # transient: counted against the metric's inconclusiveLimit
    covered: float = 0.0  # seconds of the bake covered by good readings: only these count toward `bake`


@dataclass(frozen=True)
class BatchState:
    index: int
    name: str
    instances: tuple[str, ...]
    phase: BatchPhase
    started: datetime
    bake_started: datetime | None = None
    ended: datetime | None = None
    approved_by: str | None = None
    paused_seconds: float = 0.0
    waited_seconds: float = 0.0  # time it waited for a dependency (dependsOn): not counted against batchTimeout
    metrics: tuple[MetricTrack, ...] = ()
    reason: str = ""
    last_query: datetime | None = None  # transient


@dataclass(frozen=True)
class InstanceState:
    step: Step
    version: str | None = None  # what the instance last reported running
    rollback_to: str | None = None  # its last good version when this rollout began
    started: datetime | None = None  # when the current upgrade or rollback of it began
    message: str = ""
    requested: bool = False  # transient: a check for the current step was asked for
    smoked: str = ""  # the smoke tests that passed on it in this rollout: "<upgrade|rollback> <version>"
    at_step: int = 0  # a traffic canary's or a partitionSteps StatefulSet's step (an index), so a restart resumes it


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    phase: Phase
    reason: str


HISTORY_LIMIT = 100


@dataclass(frozen=True)
class OpenAlertRecord:
    """A critical alert of the rollout not acknowledged yet, as its status keeps it so a restarted reconciler goes
    on escalating it (README "Owners and escalation")."""

    id: str
    kind: str
    message: str
    raised: datetime
    phase: Phase
    reached: int  # the highest escalation level (index) it reached
    batch: str | None = None


@dataclass(frozen=True)
class RolloutState:
    """One plugin moving to one version, identified by plugin, version and the desired commit."""

    plugin: str
    rollout_id: str
    target_version: str
    desired_commit: str
    policy: str
    phase: Phase
    reason: str
    started: datetime
    updated: datetime
    from_version: str | None = None  # the plugin's last succeeded version; a rollback reverts spec.version to it
    requested_by: str | None = None
    finished: datetime | None = None
    batches: tuple[BatchState, ...] = ()
    instances: Mapping[str, InstanceState] = field(default_factory=dict)
    last_good: Mapping[str, str] = field(default_factory=dict)  # instance -> last version that succeeded there
    rollbacks: int = 0  # rollbacks of this plugin since its last success
    paused_by: str | None = None
    pause_reason: str | None = None
    paused_at: datetime | None = None
    spec_paused_seen: bool = False  # spec.paused was true since the pause began, so false now means resume
    rollback_by: str | None = None
    rollback_started: datetime | None = None  # when the rollback (automatic or asked) began
    revert_pending: bool = False  # spec.version must be reverted to from_version by a commit
    waiting_for: str | None = None  # the dependencies (dependsOn) it waits for, and where their rollouts stand
    waiting_since: datetime | None = None
    alerts: frozenset[str] = frozenset()
    history: tuple[HistoryEntry, ...] = ()
    # Opaque notes of adapters about this rollout (e.g. the Slack message's channel and ts), carried unchanged
    # through its transitions; a new rollout starts without any.
    notes: Mapping[str, str] = field(default_factory=dict)
    # The image the artifact gate let through (README "Supply chain"): image, digest, and the signer's key id and
    # the scan summary when they were checked; pinned at the first batch for the whole rollout.
    artifact: Mapping[str, str] = field(default_factory=dict)
    desired_signer: str | None = None  # who signed the revision the rollout was read from, when it was required
    # The digest pinned when each earlier version rolled out, for the versions an instance may go back to: a
    # rollback runs what that version's rollout ran, even after its tag moved (README "Supply chain").
    digests: Mapping[str, str] = field(default_factory=dict)

    # Cleanup once the rollout settled (README "Strategies"): instance -> what it removed ("" while still to do)
    cleanup: Mapping[str, str] = field(default_factory=dict)
    open_alerts: tuple[OpenAlertRecord, ...] = ()  # README "Owners and escalation"; kept by core/status.py

    @property
    def cleanup_pending(self) -> bool:
        return any(not done for done in self.cleanup.values())

    @property
    def last_succeeded(self) -> str | None:
        return self.target_version if self.phase is Phase.SUCCEEDED else self.from_version

    def digest_of(self, version: str) -> str | None:
        """The image digest to run `version` as: this rollout's pinned one, or the one its own rollout pinned."""
        if version == self.target_version:
            return self.artifact.get("digest")
        return self.digests.get(version)

    def digests_to_keep(self) -> dict[str, str]:
        """The record the next rollout starts with: the digests of the versions it may set an instance back to
        (each one's last good version, the last succeeded one), so that it stays small."""
        known = dict(self.digests)
        if self.artifact.get("digest"):
            known[self.target_version] = self.artifact["digest"]
        wanted = {*self.last_good.values(), self.last_succeeded}
        return {version: digest for version, digest in sorted(known.items()) if version in wanted}

    @property
    def current_batch(self) -> BatchState | None:
        """The batch in flight: upgrading, baking, or failed and not yet resolved."""
        if self.batches and self.batches[-1].phase is not BatchPhase.PASSED:
            return self.batches[-1]
        return None


# --- storage form -------------------------------------------------------------------------------------------


def fmt_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _reading_doc(reading: Reading | None) -> dict[str, Any] | None:
    if reading is None:
        return None
    return {"verdict": reading.verdict.value, "value": reading.value, "at": fmt_time(reading.at),
            "message": reading.message}


def _reading_from(name: str, doc: Mapping[str, Any] | None) -> Reading | None:
    if not doc:
        return None
    at = parse_time(doc.get("at"))
    assert at is not None
    return Reading(name, Verdict(doc["verdict"]), doc.get("value"), at, doc.get("message", ""))


def _instance_doc(inst: InstanceState, last_good: str | None) -> dict[str, Any]:
    """`version` and `step` always; the rest only when set, which keeps a large fleet's status file small."""
    doc: dict[str, Any] = {"version": inst.version, "step": inst.step.value}
    for key, value in (("rollbackTo", inst.rollback_to), ("lastGood", last_good),
                       ("started", fmt_time(inst.started)), ("message", inst.message), ("smoked", inst.smoked),
                       ("atStep", inst.at_step)):
        if value:
            doc[key] = value
    return doc


def to_doc(state: RolloutState) -> dict[str, Any]:
    """Plain data for status/<plugin>.yaml (serialised with sorted keys)."""
    return {
        "apiVersion": "grayops.dev/v1",
        "kind": "Status",
        "plugin": state.plugin,
        "phase": state.phase.value,
        "reason": state.reason,
        "rolloutId": state.rollout_id,
        "targetVersion": state.target_version,
        "fromVersion": state.from_version,
        "desiredCommit": state.desired_commit,
        "requestedBy": state.requested_by,
        "policy": state.policy,
        "started": fmt_time(state.started),
        "updated": fmt_time(state.updated),
        "finished": fmt_time(state.finished),
        "rollbacksSinceSuccess": state.rollbacks,
        "paused": None if state.paused_at is None else {
            "by": state.paused_by, "reason": state.pause_reason, "at": fmt_time(state.paused_at),
            "specSeen": state.spec_paused_seen,
        },
        "rollbackBy": state.rollback_by,
        "rollbackStarted": fmt_time(state.rollback_started),
        "revertPending": state.revert_pending,
        "waiting": None if state.waiting_for is None else {
            "for": state.waiting_for, "since": fmt_time(state.waiting_since),
        },
        "alerts": sorted(state.alerts),
        "batches": [
            {
                "index": b.index,
                "name": b.name,
                "phase": b.phase.value,
                "reason": b.reason,
                "instances": list(b.instances),
                "start": fmt_time(b.started),
                "bakeStart": fmt_time(b.bake_started),
                "end": fmt_time(b.ended),
                "approvedBy": b.approved_by,
                "pausedSeconds": round(b.paused_seconds, 3),
                "waitedSeconds": round(b.waited_seconds, 3),
                "verdicts": {
                    m.name: {"last": _reading_doc(m.last), "failures": m.failures, "readings": m.readings,
                             "coveredSeconds": round(m.covered, 3)}
                    for m in b.metrics
                },
            }
            for b in state.batches
        ],
        "instances": {iid: _instance_doc(inst, state.last_good.get(iid)) for iid, inst in state.instances.items()},
        "lastGood": {iid: v for iid, v in sorted(state.last_good.items()) if iid not in state.instances},
        "history": [
            {"at": fmt_time(h.at), "phase": h.phase.value, "reason": h.reason} for h in state.history
        ],
        **({"notes": dict(sorted(state.notes.items()))} if state.notes else {}),
        **({"artifact": dict(sorted(state.artifact.items()))} if state.artifact else {}),
        **({"desiredSigner": state.desired_signer} if state.desired_signer else {}),
        **({"digests": dict(sorted(state.digests.items()))} if state.digests else {}),
        **({"cleanup": dict(sorted(state.cleanup.items()))} if state.cleanup else {}),
    }


def from_doc(doc: Mapping[str, Any]) -> RolloutState:
    """The inverse of `to_doc`; raises KeyError or ValueError on a document it cannot read."""
    paused = doc.get("paused") or {}
    waiting = doc.get("waiting") or {}
    last_good = dict(doc.get("lastGood") or {})
    instances: dict[str, InstanceState] = {}
    for iid, item in (doc.get("instances") or {}).items():
        instances[iid] = InstanceState(
            step=Step(item["step"]),
            version=item.get("version"),
            rollback_to=item.get("rollbackTo"),
            started=parse_time(item.get("started")),
            message=item.get("message") or "",
            smoked=item.get("smoked") or "",
            at_step=int(item.get("atStep") or 0),
        )
        if item.get("lastGood"):
            last_good[iid] = item["lastGood"]
    batches = tuple(
        BatchState(
            index=b["index"],
            name=b["name"],
            instances=tuple(b["instances"]),
            phase=BatchPhase(b["phase"]),
            started=parse_time(b["start"]),  # type: ignore[arg-type]
            bake_started=parse_time(b.get("bakeStart")),
            ended=parse_time(b.get("end")),
            approved_by=b.get("approvedBy"),
            paused_seconds=float(b.get("pausedSeconds") or 0.0),
            waited_seconds=float(b.get("waitedSeconds") or 0.0),
            reason=b.get("reason") or "",
            metrics=tuple(
                MetricTrack(name, _reading_from(name, v.get("last")), v.get("failures", 0), v.get("readings", 0),
                            covered=float(v.get("coveredSeconds") or 0.0))
                for name, v in (b.get("verdicts") or {}).items()
            ),
        )
        for b in doc.get("batches") or []
    )
    started = parse_time(doc["started"])
    updated = parse_time(doc.get("updated")) or started
    assert started is not None and updated is not None
    return RolloutState(
        plugin=doc["plugin"],
        rollout_id=doc["rolloutId"],
        target_version=doc["targetVersion"],
        desired_commit=doc["desiredCommit"],
        policy=doc["policy"],
        phase=Phase(doc["phase"]),
        reason=doc.get("reason") or "",
        started=started,
        updated=updated,
        from_version=doc.get("fromVersion"),
        requested_by=doc.get("requestedBy"),
        finished=parse_time(doc.get("finished")),
        batches=batches,
        instances=instances,
        last_good=last_good,
        rollbacks=int(doc.get("rollbacksSinceSuccess") or 0),
        paused_by=paused.get("by"),
        pause_reason=paused.get("reason"),
        paused_at=parse_time(paused.get("at")),
        spec_paused_seen=bool(paused.get("specSeen")),
        rollback_by=doc.get("rollbackBy"),
        rollback_started=parse_time(doc.get("rollbackStarted")),
        revert_pending=bool(doc.get("revertPending")),
        waiting_for=waiting.get("for"),
        waiting_since=parse_time(waiting.get("since")),
        alerts=frozenset(doc.get("alerts") or ()),
        history=tuple(
            HistoryEntry(parse_time(h["at"]), Phase(h["phase"]), h["reason"])  # type: ignore[arg-type]
            for h in doc.get("history") or []
        ),
        notes={str(k): str(v) for k, v in (doc.get("notes") or {}).items()},
        artifact={str(k): str(v) for k, v in (doc.get("artifact") or {}).items()},
        desired_signer=doc.get("desiredSigner"),
        digests={str(k): str(v) for k, v in (doc.get("digests") or {}).items()},
        cleanup={str(k): str(v or "") for k, v in (doc.get("cleanup") or {}).items()},
    )
