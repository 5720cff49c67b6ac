"""The rollout engine: `decide(state, desired, observations, now)` -> the next state, effects and reasons.

One call moves one plugin's rollout as far as the observations allow: it picks the rollout (a new version
starts one from the canary; a version set back to the last good one is a fast rollback), applies pause and
resume, advances the instances of the batch in flight, judges its bake, starts the next batch when its
window and approval allow, and fails, rolls back or holds for a human. Every transition carries a one-line
reason, used alike in logs, commit messages and chat.

The engine is pure: `now` is an argument, effects are returned (never performed), and the only state is
the `RolloutState` passed in and out.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal

from reconciler.core import steps
from reconciler.core.analysis import judge, track
from reconciler.core.effects import (
    Alert,
    Blocked,
    CheckResult,
    CommitSpec,
    Desired,
    Effect,
    InstanceObservation,
    Observations,
    QueryMetrics,
    RunChecks,
    SetVersion,
    WriteReport,
)
from reconciler.core.model import (
    HISTORY_LIMIT,
    BatchPhase,
    BatchState,
    HistoryEntry,
    InstanceState,
    MetricTrack,
    Phase,
    Reading,
    RolloutState,
    Severity,
    Step,
    Verdict,
    fmt_time,
)
from reconciler.core.plan import batches_left
from reconciler.core.spec import ApprovalRecord
from reconciler.core.strategy import (
    BlueGreenObservation,
    CanaryObservation,
    CleanupResult,
    OperationResult,
    PartitionObservation,
    RestoreKnobs,
    RunSmoke,
    SetPartition,
    SmokeResult,
)
from reconciler.core.timing import format_duration, human_duration, in_window, next_window_start
from reconciler.core.trust import ArtifactAllowed, ArtifactBlocked

ENGINE = "grayops"  # who acts when no human did
PREFLIGHT = "preflight"  # what a retry of a rollout that failed before its first batch runs again


@dataclass(frozen=True)
class Transition:
    reason: str
    action: str  # the Grayops-Action trailer of the commit that records it
    phase: Phase
    batch: str | None = None
    state: RolloutState | None = field(default=None, compare=False, repr=False)  # the state right after it


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    effects: tuple[Effect, ...] = ()
    transitions: tuple[Transition, ...] = ()

    @property
    def changed(self) -> bool:
        """A transition happened, so the status file is written and committed."""
        return bool(self.transitions)


def rollout_id(plugin: str, version: str, commit: str) -> str:
    return hashlib.sha1(f"{plugin}\0{version}\0{commit}".encode()).hexdigest()[:10]


def cluster_of(instance_id: str) -> str:
    return instance_id.split("/", 1)[0]


@dataclass
class _Tick:
    """The working set of one decide call: collects effects and transitions while the state is replaced."""

    desired: Desired
    obs: Observations
    now: datetime
    effects: list[Effect] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    checks: dict[tuple[str, str, str], CheckResult] = field(default_factory=dict)
    smokes: dict[tuple[str, str, str], SmokeResult] = field(default_factory=dict)
    operations: dict[str, OperationResult] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.checks = {(c.instance, c.stage, c.version): c for c in self.obs.checks}
        self.smokes = {(s.instance, s.after, s.version): s for s in self.obs.smokes}
        self.operations = {r.instance: r for r in self.obs.operations}

    def blue_green(self, iid: str) -> BlueGreenObservation | None:
        """The instance's blue-green observation, when the plugin's strategy is blueGreen (README "Strategies")."""
        seen = self.obs.strategy.get(iid) if self.desired.strategy == "blueGreen" else None
        return seen if isinstance(seen, BlueGreenObservation) else None

    def canary(self, iid: str) -> CanaryObservation | None:
        """The instance's traffic canary observation, when the plugin's strategy is canary."""
        seen = self.obs.strategy.get(iid) if self.desired.strategy == "canary" else None
        return seen if isinstance(seen, CanaryObservation) else None

    def partition(self, iid: str) -> PartitionObservation | None:
        """The instance's StatefulSet partition, when the policy steps it (partitionSteps)."""
        seen = self.obs.strategy.get(iid) if self.desired.policy.partition_steps else None
        return seen if isinstance(seen, PartitionObservation) else None

    def set_version(self, change: SetVersion) -> None:
        """Change an instance in place; a blue-green or canary one moves by the operations `steps` names instead
        (a canary's promotion is the one in-place change, asked by `_follow`)."""
        if self.desired.strategy not in ("blueGreen", "canary"):
            self.effects.append(change)

    def transition(self, st: RolloutState, phase: Phase, reason: str, action: str,
                   batch: str | None = None) -> RolloutState:
        """Record a transition; `phase` may equal the current one (a batch moved on inside Progressing)."""
        history = (*st.history, HistoryEntry(self.now, phase, reason))[-HISTORY_LIMIT:]
        st = replace(st, phase=phase, reason=reason, updated=self.now, history=history)
        self.transitions.append(Transition(reason, action, phase, batch, st))
        return st

    def alert(self, st: RolloutState, kind: str, severity: Severity, message: str, key: str) -> RolloutState:
        """Raise an alert once per rollout and key."""
        if key in st.alerts:
            return st
        self.effects.append(Alert(st.plugin, st.rollout_id, kind, severity, message))
        return replace(st, alerts=st.alerts | {key})


def decide(state: RolloutState | None, desired: Desired, obs: Observations, now: datetime) -> Decision:
    tick = _Tick(desired, obs, now)
    st = _observe(tick, _select_rollout(tick, state))
    st = _retry(tick, st)
    if not st.phase.terminal:
        st = _pause_or_resume(tick, st)
        st = _roll_back(tick, st) if st.phase is Phase.ROLLING_BACK else _progress(tick, st)
    if obs.hold is not None and (st.phase.terminal or st.phase is Phase.ROLLING_BACK):
        # nothing to pause (a rollback is never held): the cause is still said, once
        st = tick.alert(st, obs.hold.kind, Severity.CRITICAL, f"{st.plugin} {st.target_version}: {obs.hold.reason}",
                        f"{obs.hold.kind}:{obs.hold.reason}")
    st = _strategy_upkeep(tick, st)
    st = _pending_commits(tick, st)
    return Decision(st, tuple(tick.effects), tuple(tick.transitions))


# --- which rollout ------------------------------------------------------------------------------------------


def _select_rollout(t: _Tick, st: RolloutState | None) -> RolloutState:
    d = t.desired
    if st is not None and d.version == st.target_version:
        if st.phase is Phase.ROLLED_BACK:
            st = t.alert(st, "no_retry", Severity.INFO,
                         f"{d.plugin} {d.version} was rolled back; it is not retried until a new version is committed",
                         f"no-retry:{d.version}")
        return st
    if st is not None and d.version == st.from_version:
        if st.phase in (Phase.ROLLED_BACK, Phase.ROLLING_BACK):
            return st  # the rollback is under way or done: spec.version says what runs (again)
        if st.phase is Phase.FAILED:
            # The rollback that this set-back asked for failed: held for a human (`grayops retry`). A set-back
            # committed after a failure is a new rollout of the old version.
            return st if st.rollback_started is not None and not st.revert_pending else _new_rollout(t, st)
        return _begin_rollback(t, st, f"spec.version set back to {d.version} by {d.change.by or 'a commit'}"
                               + (f": {d.change.reason}" if d.change.reason else ""), d.change.by or ENGINE,
                               revert=False)
    return _new_rollout(t, st)


def _new_rollout(t: _Tick, prev: RolloutState | None) -> RolloutState:
    d = t.desired
    last_good = dict(prev.last_good) if prev else {}
    instances = {}
    for ref in d.instances:
        seen = t.obs.instances.get(ref.id)
        running = seen.version if seen is not None and seen.ready else None
        adopted = running if running not in (None, d.version) else None
        instances[ref.id] = InstanceState(Step.PENDING, seen.version if seen else None,
                                          last_good.get(ref.id) or adopted)
    from_version = prev.last_succeeded if prev else None
    if from_version is None:
        versions = Counter(i.rollback_to for i in instances.values() if i.rollback_to)
        from_version = versions.most_common(1)[0][0] if versions else None
    st = RolloutState(
        plugin=d.plugin,
        rollout_id=rollout_id(d.plugin, d.version, d.desired_commit),
        target_version=d.version,
        desired_commit=d.desired_commit,
        policy=d.policy_name,
        phase=Phase.PENDING,
        reason="",
        started=t.now,
        updated=t.now,
        from_version=from_version,
        requested_by=d.change.by,
        instances=instances,
        last_good=last_good,
        rollbacks=prev.rollbacks if prev else 0,
        desired_signer=d.signed_by,
        digests=prev.digests_to_keep() if prev else {},
    )
    if prev is not None and not prev.phase.terminal:
        reason = (f"new version {d.version} committed during the rollout of {prev.target_version}; "
                  "restarting from the canary")
    else:
        reason = (f"rollout of {d.plugin} {from_version or '(none)'} -> {d.version} begins: "
                  f"{len(instances)} instances, policy {d.policy_name}"
                  + (f", requested by {d.change.by}" if d.change.by else ""))
    return t.transition(st, Phase.PENDING, reason, "start")


# --- observation and pause ----------------------------------------------------------------------------------


def _observe(t: _Tick, st: RolloutState) -> RolloutState:
    """Refresh what each instance runs; take in newly selected instances, drop unstarted ones no longer selected."""
    selected, seen_now, terminal = t.desired.instance_ids, t.obs.instances, st.phase.terminal
    instances: dict[str, InstanceState] | None = None  # copied at the first change: most ticks change nothing
    for iid, inst in st.instances.items():
        seen = seen_now.get(iid)
        if iid not in selected and inst.step is Step.PENDING and not terminal:
            instances = dict(st.instances) if instances is None else instances
            del instances[iid]
        elif seen is not None and seen.reachable and seen.version != inst.version:
            instances = dict(st.instances) if instances is None else instances
            instances[iid] = replace(inst, version=seen.version)
    added = selected - (st.instances if instances is None else instances).keys() if not terminal else ()
    if added:
        instances = dict(st.instances) if instances is None else instances
        for iid in added:
            seen = seen_now.get(iid)
            running = seen.version if seen is not None and seen.ready else None
            instances[iid] = InstanceState(Step.PENDING, running, st.last_good.get(iid) or running)
    return replace(st, instances=instances) if instances is not None else st


def _pause_or_resume(t: _Tick, st: RolloutState) -> RolloutState:
    d = t.desired
    if st.phase is Phase.ROLLING_BACK:
        return st  # rollback is always allowed; a pause does not stop it
    if d.paused:
        if st.phase is Phase.PAUSED:
            return st if st.spec_paused_seen else replace(st, spec_paused_seen=True)
        by = d.change.by or "a commit"
        reason = f"paused by {by}" + (f": {d.change.reason}" if d.change.reason else "")
        st = replace(_stop_waiting(t, st), paused_by=d.change.by, pause_reason=d.change.reason, paused_at=t.now,
                     spec_paused_seen=True)
        return t.transition(st, Phase.PAUSED, reason, "pause", _batch_name(st))
    if t.obs.hold and st.phase is not Phase.PAUSED:
        return _hold(t, st, t.obs.hold.reason, t.obs.hold.kind)
    if st.phase is Phase.PAUSED and st.spec_paused_seen:
        return _resume(t, st)
    return st


def _hold(t: _Tick, st: RolloutState, reason: str, alert_kind: str) -> RolloutState:
    """The engine pauses by itself and records it in git as spec.paused, so /resume is how a human goes on."""
    if "grayops " not in reason:  # name the commands that decide, unless the reason already does
        reason += f"; a human must decide: grayops resume {st.plugin}" + (
            f", or grayops rollback {st.plugin}" if st.from_version else "")
    st = t.alert(st, alert_kind, Severity.CRITICAL, f"{st.plugin} {st.target_version}: {reason}",
                 f"{alert_kind}:{len(st.batches)}:{reason}")
    st = replace(_stop_waiting(t, st), paused_by=ENGINE, pause_reason=reason, paused_at=t.now,
                 spec_paused_seen=False)
    return t.transition(st, Phase.PAUSED, f"paused: {reason}", "pause", _batch_name(st))


def _resume(t: _Tick, st: RolloutState) -> RolloutState:
    paused_for = (t.now - st.paused_at).total_seconds() if st.paused_at else 0.0
    batch = st.current_batch
    if batch is not None and batch.phase is BatchPhase.FAILED:
        st = _reopen(t, st, batch)  # the human takes the failed batch on: it runs again
    elif batch is not None:
        st = _replace_batch(st, replace(
            batch,
            # the bake resumes where it stopped: time paused is no evidence
            bake_started=None if batch.bake_started is None else batch.bake_started + timedelta(seconds=paused_for),
            paused_seconds=batch.paused_seconds + paused_for,
            metrics=tuple(replace(m, consecutive_errors=0, no_data_since=None, inconclusives=0)
                          for m in batch.metrics),
            last_query=None,
        ))
        st = replace(st, instances={**st.instances, **{iid: replace(st.instances[iid], requested=False)
                                                       for iid in batch.instances}})
    instances = dict(st.instances)
    for iid in _passed_instances(st):  # a failed re-convergence is tried again (drift is seen again)
        if instances[iid].step is Step.FAILED and instances[iid].message.startswith(_RECONVERGE):
            instances[iid] = replace(instances[iid], step=Step.DONE, message="")
    st = replace(st, instances=instances, paused_by=None, pause_reason=None, paused_at=None,
                 spec_paused_seen=False)
    by = t.desired.change.by or "a commit"
    return t.transition(st, Phase.PROGRESSING, f"resumed by {by}", "resume", _batch_name(st))


def _reopen(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    """Run a failed batch again: its failed instances from the start, its timeout and its bake afresh, and
    its alerts may fire again."""
    instances = dict(st.instances)
    for iid in batch.instances:
        inst = instances[iid]
        if inst.step is Step.FAILED:
            instances[iid] = replace(inst, step=Step.PENDING, message="", requested=False)
        else:
            instances[iid] = replace(inst, requested=False)
    batch = replace(batch, phase=BatchPhase.UPGRADING, started=t.now, bake_started=None, ended=None, reason="",
                    paused_seconds=0.0, waited_seconds=0.0, last_query=None,
                    metrics=tuple(MetricTrack(m.name, m.last, readings=m.readings) for m in batch.metrics))
    alerts = frozenset(key for key in st.alerts if key.startswith(("approval:", "drift:")))
    return replace(_replace_batch(st, batch), instances=instances, alerts=alerts, finished=None)


# --- retry --------------------------------------------------------------------------------------------------


def retry_point(st: RolloutState) -> tuple[str, datetime] | None:
    """What `grayops retry` runs again, as (batch, when it failed): the failed batch of a rollout that failed or
    was paused for a human after it, or the failed rollback of a Failed rollout. None when nothing failed."""
    if not st.batches:  # failed before its first batch: a retry runs the preflight again (README "Supply chain")
        return (PREFLIGHT, st.finished) if st.phase is Phase.FAILED and st.finished is not None else None
    batch = st.batches[-1]
    if st.phase is Phase.FAILED and st.finished is not None and (
            batch.phase is BatchPhase.FAILED or _rollback_failed(st)):
        return batch.name, st.finished
    if st.phase is Phase.PAUSED and batch.phase is BatchPhase.FAILED and batch.ended is not None:
        return batch.name, batch.ended
    return None


def _rollback_failed(st: RolloutState) -> bool:
    return any(inst.step is Step.ROLLBACK_FAILED for inst in st.instances.values())


def _retry(t: _Tick, st: RolloutState) -> RolloutState:
    """A `grayops retry` record bound to this rollout and to this very failure runs the failed part again."""
    point = retry_point(st)
    if point is None:
        return st
    batch_name, failed_at = point
    record = next((r for r in t.obs.retries if r.version == st.target_version and r.rollout_id == st.rollout_id
                   and r.batch == batch_name and r.failed_at == fmt_time(failed_at)), None)
    if record is None:
        return st
    st = replace(st, finished=None, paused_by=None, pause_reason=None, paused_at=None, spec_paused_seen=False)
    if not st.batches:  # its alerts (of the gate, of preflight) may fire again
        return t.transition(replace(st, alerts=frozenset()), Phase.PENDING, f"preflight retried by {record.by}",
                            "retry")
    if st.phase is Phase.FAILED and _rollback_failed(st):
        instances = dict(st.instances)
        for iid, inst in st.instances.items():
            if inst.step is Step.ROLLBACK_FAILED:
                assert inst.rollback_to is not None
                t.set_version(SetVersion(st.plugin, iid, inst.rollback_to, st.rollout_id, inst.version,
                                         _pinned(st, inst.rollback_to)))
                instances[iid] = replace(inst, step=Step.ROLLING_BACK, started=t.now, requested=True, message="")
        again = sum(inst.step is Step.ROLLING_BACK for inst in instances.values())
        alerts = frozenset(key for key in st.alerts if key not in ("rollback-failed", "rollback-slow"))
        st = replace(st, instances=instances, rollback_started=t.now, alerts=alerts)
        return t.transition(st, Phase.ROLLING_BACK, f"rollback retried by {record.by}: {again} instance(s)",
                            "retry", batch_name)
    st = _reopen(t, st, st.batches[-1])
    return t.transition(st, Phase.PROGRESSING, f"batch {batch_name} retried by {record.by}", "retry", batch_name)


def _way_forward(st: RolloutState, rollback: bool = True) -> str:
    """The commands that decide, for every message that asks a human to."""
    plugin = st.plugin
    steps = [f"grayops retry {plugin}"]
    if rollback and st.from_version:
        steps.append(f"grayops rollback {plugin}")
    return "a human must decide: " + ", or ".join([*steps, "commit a new version"])


def _batch_name(st: RolloutState) -> str | None:
    batch = st.current_batch
    return batch.name if batch else None


def _replace_batch(st: RolloutState, batch: BatchState) -> RolloutState:
    batches = list(st.batches)
    batches[batch.index] = batch
    return replace(st, batches=tuple(batches))


# --- progress -----------------------------------------------------------------------------------------------


def _progress(t: _Tick, st: RolloutState) -> RolloutState:
    if st.phase is not Phase.PAUSED:
        st = _drift(t, st)
    st = _reconverge(t, st)
    for _ in range(len(t.desired.policy.batches) + len(st.batches) + 2):  # a bounded number of batch moves
        batch = st.current_batch
        if batch is None:
            if st.phase is Phase.PAUSED or _reconverging(st):
                return st  # nothing new starts, and nothing succeeds, while drift is being re-converged
            st, started = _start_next_batch(t, st)
            if not started:
                return st
            batch = st.current_batch
            assert batch is not None
        before = batch.phase
        st = _advance_batch(t, st, batch)
        after = st.batches[batch.index].phase if len(st.batches) > batch.index else before
        if after is not BatchPhase.PASSED or st.phase is not Phase.PROGRESSING:
            return st
    return st


def _start_next_batch(t: _Tick, st: RolloutState) -> tuple[RolloutState, bool]:
    d, policy = t.desired, t.desired.policy
    remaining = batches_left(d.instances, policy, st.batches)
    if not remaining:
        return _succeed(t, st), False
    nxt = remaining[0]
    missing = _missing_workloads(t) if not st.batches else []
    if missing:
        why = (f"workload_missing: {len(missing)} instance(s) lack their workload or container: "
               + "; ".join(missing[:3]) + ("; ..." if len(missing) > 3 else ""))
        st = t.alert(st, "workload_missing", Severity.CRITICAL, f"{st.plugin} {st.target_version}: {why}",
                     "workload-missing")
        return _fail_before_start(t, st, nxt.name, why, "fix them (or leave them out of targets)"), False
    if d.artifact_gate and not st.batches and not st.artifact:
        st, allowed = _artifact_gate(t, st, nxt.name)
        if not allowed:
            return st, False
    if not in_window(policy.windows, t.now):
        if st.phase is not Phase.WAITING_WINDOW:
            opens = next_window_start(policy.windows, t.now)
            when = opens.isoformat(timespec="minutes") if opens else "never"
            st = t.transition(st, Phase.WAITING_WINDOW, f"batch {nxt.name} waits for a window (next opens {when})",
                              "wait-window", nxt.name)
        return st, False
    approval: ApprovalRecord | None = None
    if nxt.spec.approval:
        approval = find_approval(t.obs.approvals, st, nxt.name)
        if approval is None:
            if st.phase is not Phase.AWAITING_APPROVAL:
                message = (f"batch {nxt.name} of {st.plugin} {st.target_version} needs an approval: "
                           f"grayops approve {st.plugin} --batch {nxt.name}")
                st = t.alert(st, "approval_needed", Severity.INFO, message, f"approval:{nxt.name}")
                st = t.transition(st, Phase.AWAITING_APPROVAL, f"batch {nxt.name} awaits approval",
                                  "await-approval", nxt.name)
            return _refused_approvals(t, st, nxt.name), False
    waiting = _waiting_on(t, [ref.id for ref in nxt.instances])
    if waiting is not None:  # every instance of it waits for a dependency: the batch (and its timeout) waits too
        return _wait(t, st, nxt.name, waiting), False
    st = replace(st, waiting_for=None, waiting_since=None)
    batch = BatchState(
        index=len(st.batches),
        name=nxt.name,
        instances=tuple(ref.id for ref in nxt.instances),
        phase=BatchPhase.UPGRADING,
        started=t.now,
        approved_by=approval.by if approval else None,
        metrics=tuple(MetricTrack(m.name) for m in policy.analysis.metrics),
    )
    st = replace(st, batches=(*st.batches, batch))
    reason = f"batch {nxt.name} started: {len(nxt.instances)} instance(s)"
    if approval:
        reason += f", approved by {approval.by}"
    return t.transition(st, Phase.PROGRESSING, reason, "batch-start", nxt.name), True


def find_approval(approvals: Iterable[ApprovalRecord], st: RolloutState, batch: str) -> ApprovalRecord | None:
    """The approval of this batch of this rollout among `approvals` (the ones the two-person rule accepted)."""
    return next((record for record in approvals if _binds(record, st, batch)), None)


def _binds(record: ApprovalRecord, st: RolloutState, batch: str) -> bool:
    """The approval is for this batch of this rollout: its version and desired commit."""
    return (record.version == st.target_version and record.batch == batch
            and st.desired_commit.startswith(record.desired_commit))


def _refused_approvals(t: _Tick, st: RolloutState, batch: str) -> RolloutState:
    """Approvals of this batch the two-person rule refused: each alerts once and is told in the reason."""
    for refused in t.obs.refused_approvals:
        key = f"approval-refused:{batch}:{refused.record.by}"
        if key in st.alerts or not _binds(refused.record, st, batch):
            continue
        message = f"the approval by {refused.record.by} was refused: {refused.reason}"
        st = t.alert(st, "approval_refused", Severity.WARNING,
                     f"{st.plugin} {st.target_version} batch {batch}: {message}", key)
        st = t.transition(st, Phase.AWAITING_APPROVAL, f"batch {batch} awaits approval; {message}",
                          "approval-refused", batch)
    return st


def _advance_batch(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    policy = t.desired.policy
    if batch.phase is BatchPhase.UPGRADING:
        st = _advance_instances(t, st, batch)
        batch = st.batches[batch.index]
    if st.phase is Phase.PAUSED or batch.phase is BatchPhase.FAILED:
        return st
    failed = [iid for iid in batch.instances if st.instances[iid].step is Step.FAILED]
    smoke = next((iid for iid in failed if st.instances[iid].message.startswith(_SMOKE_FAILED)), None)
    if smoke is not None:  # README "Strategies": a smoke test failing after a promotion fails the batch
        return _fail_batch(t, st, batch, f"{smoke}: {st.instances[smoke].message}")
    if len(failed) > policy.failure_budget:
        first = st.instances[failed[0]]
        return _fail_batch(t, st, batch, f"{len(failed)} of {len(batch.instances)} instance(s) failed "
                           f"(budget {policy.failure_budget}); {failed[0]}: {first.message}")
    if batch.phase is BatchPhase.UPGRADING:
        st = _wait_inside(t, st, batch)
        batch = st.batches[batch.index]
    running = _running(t, st, batch)
    if running > policy.batch_timeout:
        st = t.alert(st, "batch_timeout", Severity.CRITICAL,
                     f"{st.plugin} {st.target_version}: batch {batch.name} has run {human_duration(running)}, "
                     f"longer than {format_duration(policy.batch_timeout)}", f"batch-timeout:{batch.index}")
        return _fail_batch(t, st, batch, f"batch ran longer than {format_duration(policy.batch_timeout)}")
    if batch.phase is BatchPhase.UPGRADING and all(
        st.instances[iid].step in (Step.DONE, Step.FAILED, Step.SKIPPED) for iid in batch.instances
    ):
        bake = _bake_of(t, batch)
        if bake <= 0 or _promoted(t, st, batch):  # a promoted canary was judged at every step already
            return _pass_batch(t, st, batch)
        batch = replace(batch, phase=BatchPhase.BAKING, bake_started=t.now)
        st = _replace_batch(st, batch)
        st = t.transition(st, Phase.PROGRESSING, f"batch {batch.name}: {len(batch.instances)} instance(s) upgraded "
                          f"and verified{_at_step(t, st, batch)}; baking {format_duration(bake)}", "bake",
                          batch.name)
    if batch.phase is BatchPhase.BAKING:
        return _bake(t, st, batch)
    return st


def _bake_of(t: _Tick, batch: BatchState) -> float:
    spec = next((b for b in t.desired.policy.batches if b.name == batch.name), None)
    return spec.bake if spec else 0.0


# --- waiting for dependencies -------------------------------------------------------------------------------


def _artifact_gate(t: _Tick, st: RolloutState, batch: str) -> tuple[RolloutState, bool]:
    """Before the first batch, the version's image must have passed the shell's artifact gate (README "Supply
    chain"); its digest is then pinned for the whole rollout. No answer yet, or a block, and nothing starts: the
    rollout waits with the reason (a block alerts once per reason), and the gate is asked again on later ticks."""
    found = t.obs.artifact
    if isinstance(found, ArtifactAllowed) and found.version == st.target_version:
        pinned = {"image": found.image, "digest": found.digest}
        if found.signer:
            pinned["signer"] = found.signer
        if found.scan is not None:
            pinned["scan"] = found.scan.counts_text()
        st = replace(_stop_waiting(t, st), artifact=pinned)
        reason = f"artifact {found.reference} passed the gate" + (f", signed by {found.signer}" if found.signer
                                                                   else "")
        return t.transition(st, st.phase, reason, "artifact-pinned", batch), True
    if not isinstance(found, ArtifactBlocked) or found.version != st.target_version:
        return _wait(t, st, batch, "the artifact gate"), False
    message = f"{st.plugin} {st.target_version}: no instance touched: {found.line()}"
    st = t.alert(st, found.kind, Severity.CRITICAL, message, f"{found.kind}:{found.reason}")
    if found.definite:  # waiting cannot make the tag exist: fail now, not after instanceTimeout
        return _fail_before_start(t, st, batch, f"{found.kind}: {found.reason}", "push the image"), False
    return _wait(t, st, batch, f"the artifact gate ({found.kind}: {found.reason})"), False


def _missing_workloads(t: _Tick) -> list[str]:
    """Preflight: the instances whose cluster says the workload or container the plugin names is not there."""
    found = []
    for ref in t.desired.instances:
        seen = t.obs.instances.get(ref.id)
        if seen is not None and seen.missing:
            found.append(f"{ref.id}: {seen.missing}")
    return found


def _fail_before_start(t: _Tick, st: RolloutState, batch: str, why: str, fix: str) -> RolloutState:
    """A rollout that cannot start fails with nothing touched, so nothing to roll back (README "Supply chain")."""
    reason = (f"{why}; no instance touched; a human must decide: {fix} and grayops retry {st.plugin}, or commit a "
              "new version" + (f", or grayops rollback {st.plugin}" if st.from_version else ""))
    st = replace(_stop_waiting(t, st), finished=t.now)
    t.effects.append(WriteReport(st.plugin))
    return t.transition(st, Phase.FAILED, reason, "fail", batch)


def _pinned(st: RolloutState, version: str) -> str | None:
    """The digest the artifact gate pinned for `version`: this rollout's, or the one recorded when a version it
    goes back to rolled out (README "Supply chain")."""
    return st.digest_of(version)


def _by_tag(st: RolloutState, touched: list[str]) -> str:
    """A gated rollout that goes back to a version with no recorded digest (rolled out before the gate) says so."""
    versions = sorted({v for iid in touched if (v := st.instances[iid].rollback_to) and not _pinned(st, v)})
    if not st.artifact or not versions:
        return ""
    return f" (by tag: no digest was recorded for {', '.join(versions)})"


def _waiting_on(t: _Tick, instances: list[str]) -> str | None:
    """What these instances wait for when every one of them waits for a dependency; None when any may go."""
    found: dict[str, None] = {}
    for iid in instances:
        blocked = t.obs.blocked_clusters.get(cluster_of(iid))
        if blocked is None:
            return None
        found[blocked.what] = None
    return ", ".join(found) or None


def _wait(t: _Tick, st: RolloutState, batch: str, what: str) -> RolloutState:
    """Waiting for a dependency is shown (status, chat, the record), once per change of what it waits for."""
    if st.waiting_for == what:
        return st
    phase = st.phase if st.phase in (Phase.PENDING, Phase.PROGRESSING) else (
        Phase.PROGRESSING if st.batches else Phase.PENDING)
    st = replace(st, waiting_for=what, waiting_since=st.waiting_since or t.now)
    return t.transition(st, phase, f"batch {batch} waits for {what}", "wait-dependency", batch)


def _wait_inside(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    """A started batch waits when none of its instances moves and every one still to start waits for a
    dependency; that time is not counted against batchTimeout."""
    steps = [st.instances[iid].step for iid in batch.instances]
    to_start = [iid for iid, step in zip(batch.instances, steps, strict=True) if step is Step.PENDING]
    moving = any(step in (Step.UPGRADING, Step.VERIFYING) for step in steps)
    what = None if moving or not to_start else _waiting_on(t, to_start)
    if what is not None:
        return _wait(t, st, batch.name, what)
    if st.waiting_for is None:
        return st
    was = st.waiting_for
    st = _stop_waiting(t, st)
    return t.transition(st, Phase.PROGRESSING, f"batch {batch.name} goes on: {was} is ready", "dependency-ready",
                        batch.name)


def _stop_waiting(t: _Tick, st: RolloutState) -> RolloutState:
    """The wait ends: the batch in flight keeps how long it waited."""
    if st.waiting_since is None and st.waiting_for is None:
        return st
    batch = st.current_batch
    if batch is not None and st.waiting_since is not None and batch.phase is BatchPhase.UPGRADING:
        waited = (t.now - max(st.waiting_since, batch.started)).total_seconds()
        st = _replace_batch(st, replace(batch, waited_seconds=batch.waited_seconds + max(0.0, waited)))
    return replace(st, waiting_for=None, waiting_since=None)


def _running(t: _Tick, st: RolloutState, batch: BatchState) -> float:
    """How long the batch has run, for batchTimeout: time paused or waiting for a dependency is left out."""
    running = (t.now - batch.started).total_seconds() - batch.paused_seconds - batch.waited_seconds
    if st.waiting_since is not None:
        running -= (t.now - max(st.waiting_since, batch.started)).total_seconds()
    return running


def _advance_instances(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    """Move each instance of the batch one step: pre-check, upgrade (at most maxParallel at once), verify."""
    policy, target = t.desired.policy, st.target_version
    instances = dict(st.instances)
    inflight = sum(1 for iid in batch.instances if instances[iid].step in (Step.UPGRADING, Step.VERIFYING))
    for iid in batch.instances:
        inst = instances[iid]
        if inst.step is Step.PENDING:
            if st.phase is Phase.PAUSED:
                continue
            blocked = t.obs.blocked_clusters.get(cluster_of(iid))
            if blocked:
                instances[iid] = replace(inst, message=f"waiting: {blocked.message}")
                continue
            seen = t.obs.instances.get(iid)
            if seen is not None and not seen.reachable:  # do not start work on a cluster that does not answer
                instances[iid] = _unreachable(t, inst, seen, target, Step.FAILED, "upgrade")
                continue
            if policy.pre_checks:
                result = t.checks.get((iid, "pre", target))
                if result is None:
                    if not inst.requested:
                        t.effects.append(RunChecks(st.plugin, iid, "pre", target, tuple(policy.pre_checks)))
                        instances[iid] = replace(inst, requested=True, message="pre-checks running")
                    continue
                if not result.ok:
                    instances[iid] = replace(inst, step=Step.FAILED, message=f"pre-check failed: {result.message}")
                    continue
            if inflight >= policy.max_parallel:
                continue
            inflight += 1
            t.set_version(SetVersion(st.plugin, iid, target, st.rollout_id, inst.version, _pinned(st, target)))
            inst = replace(inst, step=Step.UPGRADING, started=t.now, requested=True, message="")
            if t.blue_green(iid) is not None or t.canary(iid) is not None:  # its first operation now
                inst = _advance_one(t, st, iid, replace(inst, requested=False), target, Step.DONE, Step.FAILED,
                                    "upgrade")
            instances[iid] = inst
            continue  # the driver reports progress next tick
        if inst.step in (Step.UPGRADING, Step.VERIFYING):
            instances[iid] = _advance_one(t, st, iid, inst, target, Step.DONE, Step.FAILED, "upgrade")
    offline = sorted(iid for iid in batch.instances if not t.obs.instances.get(iid, _SEEN).reachable
                     and instances[iid].step in (Step.PENDING, Step.UPGRADING, Step.VERIFYING))
    if offline and policy.offline == "wait":
        first = t.obs.instances[offline[0]]
        st = t.alert(st, "cluster_offline", Severity.WARNING,
                     f"{st.plugin} {target}: batch {batch.name} waits for {len(offline)} unreachable instance(s); "
                     f"{offline[0]}: {first.message}", f"offline:{batch.index}")
    return replace(st, instances=instances)


_SEEN = InstanceObservation(None, False)


def _unreachable(t: _Tick, inst: InstanceState, seen: InstanceObservation, version: str, failure: Step,
                 what: str) -> InstanceState:
    """An instance whose cluster does not answer, as the policy's `offline` says: wait, skip or fail.

    `skip` leaves an upgrade's instance as it was (Skipped: not counted against the failure budget, not rolled
    back); a rollback is never skipped (it waits). While waiting the change is asked for again once the cluster
    answers (requested=False; SetVersion is idempotent), and instanceTimeout still bounds the wait.
    """
    why = seen.message or "cluster unreachable"
    mode = t.desired.policy.offline
    if mode == "fail":
        return replace(inst, step=failure, message=f"{what} to {version} failed: {why} (offline: fail)")
    if mode == "skip" and what == "upgrade":
        return replace(inst, step=Step.SKIPPED, message=f"skipped (offline: skip): {why}")
    return replace(inst, requested=False if inst.step is not Step.PENDING else inst.requested,
                   message=f"waiting: {why}")


def _advance_one(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, version: str,
                 success: Step, failure: Step, what: str) -> InstanceState:
    """Shared by upgrade and rollback: wait until ready at `version`, then verify, within instanceTimeout. An
    in-place Deployment's RollingUpdate knobs are put back once its change is over (README "Strategies")."""
    moved = _move_one(t, st, iid, inst, version, success, failure, what)
    policy = t.desired.policy
    if moved.step is success and inst.step is not success and t.desired.strategy == "inPlace" and (
            policy.max_surge is not None or policy.max_unavailable is not None):
        t.effects.append(RestoreKnobs(st.plugin, iid))
    return moved


def _move_one(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, version: str,
              success: Step, failure: Step, what: str) -> InstanceState:
    policy = t.desired.policy
    seen = t.obs.instances.get(iid)
    started = inst.started or t.now
    if inst.started is None:
        inst = replace(inst, started=started)
    moving = inst.step in (Step.UPGRADING, Step.ROLLING_BACK)
    bg, cn, part = t.blue_green(iid), t.canary(iid), t.partition(iid)
    if moving and (bg is not None or cn is not None) and seen is not None and seen.reachable:
        if bg is not None:
            inst, moving = _move_blue_green(t, st, iid, inst, bg, version, failure, what)
        elif cn is not None:
            inst, moving = _move_canary(t, st, iid, inst, cn, version, failure, what)
        if inst.step is failure:
            return inst
    elif moving:
        if part is not None and part.reachable and what == "rollback" and part.partition > 0:
            t.effects.append(SetPartition(st.plugin, iid, 0))  # a rollback moves every pod at once
        refused = t.obs.apply_errors.get(iid)
        if refused:
            return replace(inst, step=failure, message=f"{what} to {version} refused: {refused}")
        if seen is None:
            inst = replace(inst, message="not observed yet")
        elif not seen.reachable:
            inst = _unreachable(t, inst, seen, version, failure, what)
            if inst.step in (failure, Step.SKIPPED):
                return inst
        elif seen.version != version:
            if not inst.requested:  # after a restart the change may never have been made: make it (idempotent)
                t.set_version(SetVersion(st.plugin, iid, version, st.rollout_id, seen.version,
                                            _pinned(st, version)))
                inst = replace(inst, requested=True)
        elif seen.failed:
            return replace(inst, step=failure, message=f"{what} to {version} failed: {seen.failed}")
        elif seen.ready:
            moving = False
            inst = replace(inst, step=Step.VERIFYING if inst.step is Step.UPGRADING else inst.step,
                           requested=False, message="")
        elif part is not None and what != "rollback":
            inst, moving = _move_partition(t, st, iid, inst, part)
    after = _smoke_after(t, inst, what, version)
    if part is not None and what != "rollback" and _next_step(t, iid, inst) is not None:
        after = None  # the smoke tests follow the last partition step
    smoked = t.smokes.get((iid, after, version)) if after is not None and not moving else None
    if smoked is not None and (smoked.ok or smoked.reachable):
        if smoked.ok:
            return replace(inst, step=success, message="", smoked=f"{after} {version}")
        return replace(inst, step=failure, message=f"{_SMOKE_FAILED} after {what} to {version} failed: "
                                                   f"{smoked.message}")
    if smoked is not None:  # its cluster went away mid-test: verify and run them again
        inst = replace(inst, requested=False, message="")
    elif not moving and after is not None and inst.requested and inst.message.startswith(_SMOKING):
        moving = True  # still running: wait (within instanceTimeout)
    if not moving:
        passed = replace(inst, step=success, message="")
        if after is not None:  # README "Strategies": smoke tests after a promotion and after a rollback
            passed = replace(inst, requested=True, message=f"{_SMOKING} after {what} to {version}")
        result = t.checks.get((iid, "verify", version))
        if not policy.verify or (result is not None and result.ok):
            if after is not None:
                t.effects.append(RunSmoke(st.plugin, iid, version, st.rollout_id, after, "serving",
                                          tuple(policy.smoke)))
            return passed
        if result is not None:
            return replace(inst, step=failure, message=f"verify after {what} to {version} failed: {result.message}")
        if not inst.requested:
            t.effects.append(RunChecks(st.plugin, iid, "verify", version, tuple(policy.verify)))
            inst = replace(inst, requested=True, message="verifying")
    if (t.now - started).total_seconds() > policy.instance_timeout:
        return replace(inst, step=failure, message=f"{what} to {version} not ready and verified within "
                       f"{format_duration(policy.instance_timeout)}")
    return inst


# --- strategies (README "Strategies") ----------------------------------------------------------------------

_SMOKING = "smoke tests running"  # an instance's note while its smoke tests run
_SMOKE_FAILED = "smoke tests"  # how the note of an instance whose smoke tests failed begins


def _smoke_after(t: _Tick, inst: InstanceState, what: str, version: str) -> Literal["upgrade", "rollback"] | None:
    """"upgrade" or "rollback" when the policy's smoke tests must still pass on this instance at `version`."""
    after: Literal["upgrade", "rollback"] | None = "upgrade" if what == "upgrade" else (
        "rollback" if what == "rollback" else None)
    if after is None or not t.desired.policy.smoke or inst.smoked == f"{after} {version}":
        return None
    return after


def _move_blue_green(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, seen: BlueGreenObservation,
                     version: str, failure: Step, what: str) -> tuple[InstanceState, bool]:
    """One step of a blue-green instance towards serving `version`, as `steps.blue_green` names it; (the instance,
    still moving). Before an upgrade's switch the staged color passes the smoke tests through its preview Service."""
    answer = t.operations.get(iid)
    if answer is not None and answer.outcome in ("refused", "error") and answer.operation in ("Adopt", "Stage"):
        return replace(inst, step=failure, message=f"{what} to {version}: {answer.operation} {answer.outcome}: "
                                                   f"{answer.message}"), True
    key = f"upgrade {version}"
    smoke_first = what == "upgrade" and bool(t.desired.policy.smoke) and inst.smoked != key
    smoked = t.smokes.get((iid, "upgrade", version)) if smoke_first else None
    if smoked is not None and smoked.reachable:
        if not smoked.ok:
            return replace(inst, step=failure, message=f"{_SMOKE_FAILED} on the staged color before the switch to "
                                                       f"{version} failed: {smoked.message}"), True
        inst, smoke_first = replace(inst, smoked=key), False
    nxt = steps.blue_green(st.plugin, seen, version, st.rollout_id, smoke_first, _pinned(st, version))
    return _follow(t, st, iid, inst, nxt, answer, smoked, version, failure, what)


def _move_canary(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, seen: CanaryObservation,
                 version: str, failure: Step, what: str) -> tuple[InstanceState, bool]:
    """One step of a traffic canary instance, as `steps.canary` names it: the weight of its traffic step
    (`at_step`), or, past the last one, the promotion; a rollback takes the weight back to 0 at once. Before its
    first weight the canary passes the smoke tests through `<service>-canary`."""
    answer = t.operations.get(iid)
    if answer is not None and answer.outcome in ("refused", "error") and answer.operation in ("Adopt", "Stage"):
        return replace(inst, step=failure, message=f"{what} to {version}: {answer.operation} {answer.outcome}: "
                                                   f"{answer.message}"), True
    refused = t.obs.apply_errors.get(iid)
    if refused:  # the promotion, or a rollback of a promoted instance: the one change in place
        return replace(inst, step=failure, message=f"{what} to {version} refused: {refused}"), True
    if what == "rollback":
        return _follow(t, st, iid, inst, steps.canary_rollback(st.plugin, seen, version), answer, None, version,
                       failure, what)
    weights = t.desired.traffic_steps
    weight = weights[inst.at_step] if inst.at_step < len(weights) else None
    key = f"upgrade {version}"
    smoke_first = what == "upgrade" and weight is not None and bool(t.desired.policy.smoke) and inst.smoked != key
    smoked = t.smokes.get((iid, "upgrade", version)) if smoke_first else None
    if smoked is not None and smoked.reachable:
        if not smoked.ok:
            return replace(inst, step=failure, message=f"{_SMOKE_FAILED} on the canary before it got traffic "
                                                       f"failed: {smoked.message}"), True
        inst, smoke_first = replace(inst, smoked=key), False
    nxt = steps.canary(st.plugin, seen, version, st.rollout_id, weight, smoke_first, _pinned(st, version))
    return _follow(t, st, iid, inst, nxt, answer, smoked, version, failure, what)


def _move_partition(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, seen: PartitionObservation
                    ) -> tuple[InstanceState, bool]:
    """A StatefulSet with partitionSteps at its step: lower the partition to it, then verify the step."""
    nxt = steps.partition(st.plugin, seen, inst.at_step)
    if nxt.serving:
        return replace(inst, step=Step.VERIFYING if inst.step is Step.UPGRADING else inst.step, requested=False,
                       message=""), False
    if nxt.operation is not None:
        t.effects.append(nxt.operation)
    return replace(inst, message=nxt.message), True


def _follow(t: _Tick, st: RolloutState, iid: str, inst: InstanceState, nxt: steps.Next,
            answer: OperationResult | None, smoked: SmokeResult | None, version: str, failure: Step,
            what: str) -> tuple[InstanceState, bool]:
    """What `steps` named for a blue-green or canary instance, asked of the driver; (the instance, still moving)."""
    if nxt.serving:
        step = Step.VERIFYING if inst.step is Step.UPGRADING else inst.step
        return replace(inst, step=step, requested=False, message=""), False
    if nxt.failed:
        return replace(inst, step=failure, message=f"{what} to {version} failed: {nxt.failed}"), True
    if nxt.smoke:
        if smoked is None and inst.requested and inst.message.startswith(_SMOKING):
            return inst, True  # running
        t.effects.append(RunSmoke(st.plugin, iid, version, st.rollout_id, "upgrade", "staged",
                                  tuple(t.desired.policy.smoke)))
        return replace(inst, requested=True, message=f"{_SMOKING}: {nxt.message}"), True
    if nxt.promote:
        seen = t.obs.instances.get(iid)
        t.effects.append(SetVersion(st.plugin, iid, version, st.rollout_id, seen.version if seen else None,
                                    _pinned(st, version)))
    if nxt.operation is not None:
        t.effects.append(nxt.operation)
    message = nxt.message
    if answer is not None and answer.outcome not in ("done", "unchanged", "waiting"):
        message += f" ({answer.operation} {answer.outcome}: {answer.message})"
    return replace(inst, requested=False, message=message), True


# --- traffic and partition steps (README "Strategies") ------------------------------------------------------


def _next_step(t: _Tick, iid: str, inst: InstanceState) -> tuple[str, str] | None:
    """(the step the instance is at, the one after it) when a traffic canary or a partitionSteps StatefulSet has
    steps left; None when this is its last. A partition not observed (its cluster lost) says "unknown"."""
    weights = t.desired.traffic_steps
    if t.desired.strategy == "canary" and weights:
        if inst.at_step >= len(weights):
            return None
        after = f"the canary to {weights[inst.at_step + 1]}%" if inst.at_step + 1 < len(weights) else "promotion"
        return f"the canary at {weights[inst.at_step]}%", after
    if not t.desired.policy.partition_steps or t.desired.strategy != "inPlace":
        return None
    part = t.partition(iid)
    if part is None or not part.reachable:
        return _UNKNOWN
    targets = steps.partition_targets(part)
    if inst.at_step + 1 >= len(targets) or part.partition == 0:
        return None
    return f"partition {targets[inst.at_step]}", f"partition {targets[inst.at_step + 1]}"


_UNKNOWN = ("", "")


def _promoted(t: _Tick, st: RolloutState, batch: BatchState) -> bool:
    return t.desired.strategy == "canary" and bool(t.desired.traffic_steps) and all(
        st.instances[iid].at_step >= len(t.desired.traffic_steps) for iid in batch.instances
        if st.instances[iid].step is Step.DONE)


def _at_step(t: _Tick, st: RolloutState, batch: BatchState) -> str:
    """" at the canary's 10%" for a bake that judges a step, for the transition's reason."""
    found = [n for iid in batch.instances if st.instances[iid].step is Step.DONE
             and (n := _next_step(t, iid, st.instances[iid])) not in (None, _UNKNOWN)]
    return f" ({found[0][0]})" if found else ""


def _step_on(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState | None:
    """The batch's bake passed at a step: its instances with steps left move to the next (the batch upgrades,
    then bakes and is judged again, afresh); None when none has steps left. Each instance keeps its step in
    `at_step`, so a restart resumes there."""
    nexts = {iid: n for iid in batch.instances if st.instances[iid].step is Step.DONE
             and (n := _next_step(t, iid, st.instances[iid])) is not None}
    if not nexts:
        return None
    if _UNKNOWN in nexts.values():
        return st  # a partition not observed: the step waits for its cluster
    instances = dict(st.instances)
    for iid in nexts:
        inst = instances[iid]
        instances[iid] = replace(inst, step=Step.UPGRADING, at_step=inst.at_step + 1, started=t.now,
                                 requested=False, message="")
    batch = replace(batch, phase=BatchPhase.UPGRADING, bake_started=None, last_query=None,
                    metrics=tuple(MetricTrack(m.name, m.last) for m in batch.metrics))
    st = replace(_replace_batch(st, batch), instances=instances)
    passed, after = nexts[min(nexts)]
    return t.transition(st, Phase.PROGRESSING, f"batch {batch.name}: {passed} passed its bake; next: {after} "
                        f"({len(nexts)} instance(s))", "step", batch.name)


def _strategy_upkeep(t: _Tick, st: RolloutState) -> RolloutState:
    """Blue-green: the old color of each upgraded instance scaled down after scaleDownDelay (also after its batch
    passed), and cleanup once the rollout settled; a canary: cleanup once it settled."""
    if t.desired.strategy == "canary" and st.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK):
        return _clean_up(t, st)
    if t.desired.strategy != "blueGreen":
        return st
    if st.phase in (Phase.SUCCEEDED, Phase.ROLLED_BACK):
        return _clean_up(t, st)
    if st.phase.terminal:
        return st  # Failed: a human looks at it as it is
    for iid, inst in st.instances.items():
        seen = t.blue_green(iid)
        if inst.step is Step.DONE and seen is not None:
            scale = steps.scale_down(st.plugin, seen, st.target_version, t.desired.scale_down_delay, t.now)
            if scale is not None:
                t.effects.append(scale)
    return st


def _clean_up(t: _Tick, st: RolloutState) -> RolloutState:
    """Cleanup of each instance the rollout touched, asked until its cluster answers; once all are done the report
    is written again with what was removed."""
    cleanup = {**{iid: "" for iid, inst in st.instances.items() if inst.step.touched}, **st.cleanup}
    for result in t.obs.cleanups:
        if cleanup.get(result.instance) == "" and result.outcome not in ("waiting", "unreachable"):
            cleanup[result.instance] = _cleaned(result)
    for iid, done in sorted(cleanup.items()):
        if not done:
            ask = steps.cleanup(st.plugin, t.blue_green(iid) or t.canary(iid), st.phase is Phase.SUCCEEDED,
                                t.desired.scale_down_delay, t.now)
            if ask is not None:
                t.effects.append(ask)
    after = replace(st, cleanup=cleanup)
    if not st.cleanup_pending or after.cleanup_pending:
        return after
    t.effects.append(WriteReport(st.plugin))
    removed = sum(text.count(_REMOVED) for text in cleanup.values())
    return t.transition(after, st.phase, f"cleanup of {len(cleanup)} instance(s): {removed} object(s) removed",
                        "cleanup", _batch_name(st))


_REMOVED = "removed "


def _cleaned(result: CleanupResult) -> str:
    """What one instance's cleanup did, for the status and the report."""
    if result.outcome in ("refused", "error"):
        return f"cleanup {result.outcome}: {result.message}"
    done = [f"{_REMOVED}{what}" for what in result.removed] + [f"scaled {what} to 0" for what in result.scaled_down]
    return "; ".join(done) or "nothing to remove"


# --- bake and analysis --------------------------------------------------------------------------------------


def _bake(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    analysis = t.desired.policy.analysis
    specs = {m.name: m for m in analysis.metrics}
    tracks = {m.name: m for m in batch.metrics}
    for name in specs.keys() - tracks.keys():  # the policy gained a metric mid-bake
        tracks[name] = MetricTrack(name)
    bake_started = batch.bake_started
    assert bake_started is not None
    for result in t.obs.metrics:
        if result.rollout_id != st.rollout_id or result.batch != batch.name or result.metric not in specs:
            continue
        reading = judge(specs[result.metric], result.measurement, t.now)
        before = tracks[result.metric]
        interval = specs[result.metric].interval or analysis.interval
        tracks[result.metric] = replace(track(before, reading), covered=before.covered + _covers(
            before, reading, bake_started, interval, analysis.no_data))
        if reading.verdict is Verdict.FAILED:
            spec = specs[result.metric]
            current = tracks[result.metric]
            st = t.alert(st, "metric_threshold", Severity.WARNING,
                         f"{st.plugin} {st.target_version} batch {batch.name}: {reading.message}",
                         f"threshold:{batch.index}:{result.metric}:{current.failures}")
            batch = replace(batch, metrics=tuple(tracks[n] for n in specs))
            st = _replace_batch(st, batch)
            st = t.transition(st, st.phase, f"batch {batch.name}: {reading.message} "
                              f"(failure {current.failures}, limit {spec.failure_limit})", "analysis", batch.name)
    batch = replace(batch, metrics=tuple(tracks[n] for n in specs))
    st = _replace_batch(st, batch)

    for name, spec in specs.items():
        current = tracks[name]
        if current.failures > spec.failure_limit:
            assert current.last is not None
            return _fail_batch(t, st, batch, f"{current.last.message} ({current.failures} failed reading(s), "
                               f"limit {spec.failure_limit})")
        error_limit = analysis.consecutive_error_limit if spec.consecutive_error_limit is None \
            else spec.consecutive_error_limit
        if current.consecutive_errors > error_limit:
            assert current.last is not None
            return _hold(t, st, f"{current.consecutive_errors} failed queries in a row for {name}: "
                         f"{current.last.message}", "metrics_error")
        if spec.inconclusive_limit is not None and current.inconclusives > spec.inconclusive_limit:
            assert current.last is not None
            return _hold(t, st, f"{current.inconclusives} inconclusive readings of {name} (limit "
                         f"{spec.inconclusive_limit}): {current.last.message}", "metrics_missing")
        if current.no_data_since is not None:
            silent = (t.now - current.no_data_since).total_seconds()
            if silent >= analysis.no_data_timeout:
                st = t.alert(st, "metrics_missing", Severity.CRITICAL,
                             f"{st.plugin} {st.target_version} batch {batch.name}: no data for {name} for "
                             f"{human_duration(silent)}", f"no-data:{batch.index}:{name}")
                if analysis.no_data == "pause":
                    return _hold(t, st, f"no data for {name} for {human_duration(silent)} (noData: pause)",
                                 "metrics_missing")
                if analysis.no_data == "fail":
                    return _fail_batch(t, st, batch, f"no data for {name} for {human_duration(silent)}")

    baked = (t.now - bake_started).total_seconds()
    bake = _bake_of(t, batch)
    intervals = {n: spec.interval or analysis.interval for n, spec in specs.items()}
    if baked >= bake and all(
        tracks[n].covered >= bake - _EPSILON and _conclusive(tracks[n], analysis.no_data, specs[n].count)
        for n in specs
    ):
        return _pass_batch(t, st, batch)
    if specs and (batch.last_query is None
                  or (t.now - batch.last_query).total_seconds() >= min(intervals.values())):
        # One query per metric per batch per interval: a metric with a longer interval of its own waits for it.
        fastest = min(intervals.values())
        due = tuple(spec for n, spec in specs.items() if _due(tracks[n], intervals[n], fastest, t.now))
        baseline = tuple(sorted(iid for iid, inst in st.instances.items()
                                if inst.step is Step.PENDING and inst.version == st.from_version))
        needs_baseline = any(spec.max_increase is not None for spec in due) and st.from_version is not None
        t.effects.append(QueryMetrics(st.plugin, st.rollout_id, batch.name, st.target_version, batch.instances,
                                      due, analysis.interval,
                                      baseline if needs_baseline else (),
                                      st.from_version if needs_baseline else None))
        st = _replace_batch(st, replace(batch, last_query=t.now))
    return st


def _due(current: MetricTrack, interval: float, fastest: float, now: datetime) -> bool:
    """Read at every query round, or, for a metric with a longer interval of its own, once that has passed."""
    last = current.last
    return interval <= fastest or last is None or (now - last.at).total_seconds() >= interval


_EPSILON = 1e-6  # seconds: sums of intervals are floats


def _good(verdict: Verdict, no_data: str) -> bool:
    """Evidence that the batch is healthy: a successful reading, or no data when the policy ignores it."""
    return verdict is Verdict.SUCCESSFUL or (verdict is Verdict.INCONCLUSIVE and no_data == "ignore")


def _covers(before: MetricTrack, reading: Reading, bake_started: datetime, interval: float, no_data: str) -> float:
    """Seconds of the bake a reading is evidence for: a good reading covers the time since the reading before
    it (or the bake's start), at most one interval (what its query looks at). So time the reconciler was
    stopped, and time of Error or Inconclusive readings, never counts: after a restart one reading covers one
    interval, not the whole gap."""
    if not _good(reading.verdict, no_data):
        return 0.0
    since = max(before.last.at, bake_started) if before.last is not None else bake_started
    return max(0.0, min((reading.at - since).total_seconds(), interval))


def _conclusive(current: MetricTrack, no_data: str, count: int | None = None) -> bool:
    """The bake may pass on this metric: its latest reading is good, after at least `count` readings when the
    metric asks for that many."""
    last = current.last
    if last is None:
        return False
    if count is not None and current.readings < count:
        return False
    return _good(last.verdict, no_data)


def _pass_batch(t: _Tick, st: RolloutState, batch: BatchState) -> RolloutState:
    stepped = _step_on(t, st, batch)
    if stepped is not None:
        return stepped
    summary = ", ".join(m.last.message for m in batch.metrics if m.last is not None)
    reason = f"batch {batch.name} passed" + (f": {summary}" if summary else "")
    st = _replace_batch(st, replace(batch, phase=BatchPhase.PASSED, ended=t.now, reason=reason))
    return t.transition(st, Phase.PROGRESSING, reason, "batch-pass", batch.name)


def _fail_batch(t: _Tick, st: RolloutState, batch: BatchState, why: str) -> RolloutState:
    policy = t.desired.policy
    reason = f"batch {batch.name} failed: {why}"
    st = _replace_batch(st, replace(batch, phase=BatchPhase.FAILED, ended=t.now, reason=reason))
    st = t.alert(st, "batch_failed", Severity.CRITICAL, f"{st.plugin} {st.target_version}: {reason}",
                 f"batch-failed:{batch.index}:{st.rollbacks}")
    if policy.rollback.on_failure and st.rollbacks < policy.rollback.limit:
        return _begin_rollback(t, st, reason, ENGINE, revert=True)
    if not policy.rollback.on_failure:
        hold = f"{reason}; rollback on failure is off, {_way_forward(st)}"
    else:
        hold = (f"{reason}; rollback limit reached ({st.rollbacks} of {policy.rollback.limit} since the last "
                f"success), {_way_forward(st)}")
    return _hold(t, st, hold, "rollback_limit")


# --- rollback and the end -----------------------------------------------------------------------------------


def _begin_rollback(t: _Tick, st: RolloutState, why: str, by: str, revert: bool) -> RolloutState:
    touched = sorted(iid for iid, inst in st.instances.items() if inst.step.touched)
    unknown = [iid for iid in touched if st.instances[iid].rollback_to is None]
    if unknown:
        message = (f"{why}; cannot roll back: no known good version for {len(unknown)} instance(s) "
                   f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}); "
                   f"{_way_forward(st, rollback=False)}")
        st = t.alert(st, "no_good_version", Severity.CRITICAL, f"{st.plugin} {st.target_version}: {message}",
                     "no-good-version")
        st = replace(st, finished=t.now)
        t.effects.append(WriteReport(st.plugin))
        return t.transition(st, Phase.FAILED, message, "fail", _batch_name(st))
    instances = dict(st.instances)
    for iid in touched:
        inst = instances[iid]
        assert inst.rollback_to is not None
        t.set_version(SetVersion(st.plugin, iid, inst.rollback_to, st.rollout_id, inst.version,
                                    _pinned(st, inst.rollback_to)))
        instances[iid] = replace(inst, step=Step.ROLLING_BACK, started=t.now, requested=True, message="")
    st = replace(_stop_waiting(t, st), instances=instances, rollbacks=st.rollbacks + 1, rollback_by=by,
                 rollback_started=t.now, revert_pending=revert, paused_at=None, paused_by=None, pause_reason=None,
                 spec_paused_seen=False, cleanup={})  # a rollback of a settled rollout: cleanup again after it
    reason = f"{why}; rolling back {len(touched)} instance(s)" + _by_tag(st, touched)
    st = t.transition(st, Phase.ROLLING_BACK, reason, "rollback", _batch_name(st))
    return _roll_back(t, st)


def _roll_back(t: _Tick, st: RolloutState) -> RolloutState:
    """All touched instances at once, each back to its own last good version, verified like an upgrade."""
    instances = dict(st.instances)
    for iid, inst in st.instances.items():
        if inst.step is Step.ROLLING_BACK:
            assert inst.rollback_to is not None
            instances[iid] = _advance_one(t, st, iid, inst, inst.rollback_to, Step.ROLLED_BACK,
                                          Step.ROLLBACK_FAILED, "rollback")
    st = replace(st, instances=instances)
    if any(inst.step is Step.ROLLING_BACK for inst in instances.values()):
        return _watch_deadline(t, st)
    back = [iid for iid, inst in instances.items() if inst.step is Step.ROLLED_BACK]
    failed = sorted(iid for iid, inst in instances.items() if inst.step is Step.ROLLBACK_FAILED)
    st = replace(st, finished=t.now)
    t.effects.append(WriteReport(st.plugin))
    for iid in failed:  # escalate: the previous version is back, yet its smoke tests fail
        if instances[iid].message.startswith(_SMOKE_FAILED):
            st = t.alert(st, "rollback_smoke_failed", Severity.CRITICAL,
                         f"{st.plugin} {st.target_version}: {iid}: {instances[iid].message}; a human must look at it",
                         f"rollback-smoke:{iid}")
    if failed:
        message = (f"rollback failed on {len(failed)} instance(s): {failed[0]}: {instances[failed[0]].message}; "
                   f"{_way_forward(st, rollback=False)} (retry runs the rollback again)")
        st = t.alert(st, "rollback_failed", Severity.CRITICAL, f"{st.plugin} {st.target_version}: {message}",
                     "rollback-failed")
        return t.transition(st, Phase.FAILED, message, "fail", _batch_name(st))
    targets = sorted({instances[iid].rollback_to or "" for iid in back})
    last_good = dict(st.last_good)
    for iid in back:  # it runs its last good version again, which stays the one to come back to
        last_good[iid] = instances[iid].rollback_to or last_good.get(iid, "")
    st = replace(st, last_good=last_good)
    return t.transition(st, Phase.ROLLED_BACK,
                        f"rolled back {len(back)} instance(s) to {', '.join(targets)}", "rolled-back",
                        _batch_name(st))


def _watch_deadline(t: _Tick, st: RolloutState) -> RolloutState:
    """A rollback still running past rollback.deadline alerts once (README "Targets": back within 3 minutes)."""
    deadline = t.desired.policy.rollback.deadline
    if st.rollback_started is None or (t.now - st.rollback_started).total_seconds() <= deadline:
        return st
    waiting = sorted(iid for iid, inst in st.instances.items() if inst.step is Step.ROLLING_BACK)
    took = human_duration((t.now - st.rollback_started).total_seconds())
    first = st.instances[waiting[0]].message or "not back yet"
    return t.alert(st, "rollback_slow", Severity.CRITICAL,
                   f"{st.plugin} {st.target_version}: the rollback has run {took}, longer than its "
                   f"{format_duration(deadline)} deadline; {len(waiting)} instance(s) not back yet ({waiting[0]}: "
                   f"{first})", "rollback-slow")


def _succeed(t: _Tick, st: RolloutState) -> RolloutState:
    last_good = dict(st.last_good)
    done = [iid for iid, inst in st.instances.items() if inst.step is Step.DONE]
    failed = [iid for iid, inst in st.instances.items() if inst.step is Step.FAILED]
    skipped = [iid for iid, inst in st.instances.items() if inst.step is Step.SKIPPED]
    for iid in done:
        last_good[iid] = st.target_version
    st = replace(st, last_good=last_good, rollbacks=0, finished=t.now)
    t.effects.append(WriteReport(st.plugin))
    reason = f"{st.target_version} rolled out to {len(done)} instance(s) in {len(st.batches)} batch(es)"
    if failed:
        reason += f"; {len(failed)} failed within the failure budget"
    if skipped:
        reason += f"; {len(skipped)} skipped (offline)"
    return t.transition(st, Phase.SUCCEEDED, reason, "succeed")


# --- drift -------------------------------------------------------------------------------------------------

_RECONVERGE = "re-convergence"  # what an instance of a passed batch does when it drifted: its messages start so


def _passed_instances(st: RolloutState) -> list[str]:
    return [iid for batch in st.batches if batch.phase is BatchPhase.PASSED for iid in batch.instances
            if iid in st.instances]


def _reconverging(st: RolloutState) -> bool:
    return any(st.instances[iid].step in (Step.UPGRADING, Step.VERIFYING) for iid in _passed_instances(st))


def _drift(t: _Tick, st: RolloutState) -> RolloutState:
    """An instance of a passed batch that no longer runs the version (a lost fleet state, a hand-made change)
    is drift: alert, and upgrade it again, or with `drift: pause` hold for a human first (resume re-converges)."""
    drifted: dict[str, str | None] = {}
    for iid in _passed_instances(st):
        seen = t.obs.instances.get(iid)
        if st.instances[iid].step is Step.DONE and seen is not None and seen.reachable \
                and seen.version != st.target_version:
            drifted[iid] = seen.version
    if not drifted:
        return st
    keys = frozenset(f"drift:{iid}@{version}" for iid, version in drifted.items())
    first = min(drifted)
    what = (f"{len(drifted)} instance(s) of passed batches no longer run {st.target_version} ({first} runs "
            f"{drifted[first] or 'nothing'})")
    if t.desired.policy.drift == "pause" and not keys <= st.alerts:
        st = replace(st, alerts=st.alerts | keys)
        return _hold(t, st, f"drift: {what}; grayops resume {st.plugin} re-converges them, or grayops rollback "
                     f"{st.plugin}", "drift")
    if not keys <= st.alerts:
        st = t.alert(st, "drift", Severity.WARNING, f"{st.plugin} {st.target_version}: drift: {what}; re-converging",
                     min(keys - st.alerts))
        st = replace(st, alerts=st.alerts | keys)
    instances = dict(st.instances)
    for iid, version in drifted.items():
        t.set_version(SetVersion(st.plugin, iid, st.target_version, st.rollout_id, version,
                                    _pinned(st, st.target_version)))
        instances[iid] = replace(instances[iid], step=Step.UPGRADING, started=t.now, requested=True,
                                 message=f"{_RECONVERGE}: it ran {version or 'nothing'}")
    st = replace(st, instances=instances)
    return t.transition(st, st.phase, f"drift: {what}; re-converging", "reconverge", _batch_name(st))


def _reconverge(t: _Tick, st: RolloutState) -> RolloutState:
    """Drifted instances move back to the version like an upgrade; one that fails holds for a human."""
    moving = [iid for iid in _passed_instances(st) if st.instances[iid].step in (Step.UPGRADING, Step.VERIFYING)]
    if not moving:
        return st
    instances = dict(st.instances)
    for iid in moving:
        instances[iid] = _advance_one(t, st, iid, instances[iid], st.target_version, Step.DONE, Step.FAILED,
                                      _RECONVERGE)
    st = replace(st, instances=instances)
    failed = [iid for iid in moving if instances[iid].step is Step.FAILED]
    if failed and st.phase is not Phase.PAUSED:
        return _hold(t, st, f"drift: {failed[0]}: {instances[failed[0]].message}; a human must decide: grayops "
                     f"resume {st.plugin} (re-converges again), or grayops rollback {st.plugin}, or commit a new "
                     "version", "drift")
    return st


def _pending_commits(t: _Tick, st: RolloutState) -> RolloutState:
    """Changes the engine owes to the plugin's file, asked for until the desired state shows them."""
    d = t.desired
    if st.revert_pending and st.phase is Phase.ROLLED_BACK:
        revert_to = st.from_version or _common_rollback_version(st)
        if revert_to is None or d.version != st.target_version:
            return replace(st, revert_pending=False)
        t.effects.append(CommitSpec(st.plugin, "version", revert_to, "rollback",
                                    f"revert {st.plugin} to {revert_to}: {st.target_version} was rolled back"))
    if st.phase is Phase.PAUSED and st.paused_by == ENGINE and not d.paused and not st.spec_paused_seen:
        t.effects.append(CommitSpec(st.plugin, "paused", True, "pause", st.pause_reason or "paused by grayops"))
    return st


def _common_rollback_version(st: RolloutState) -> str | None:
    versions = Counter(i.rollback_to for i in st.instances.values() if i.rollback_to)
    return versions.most_common(1)[0][0] if versions else None


def blocked_clusters(
    depends_on: tuple[str, ...],
    desired_versions: Mapping[str, str],
    observed: Mapping[str, Mapping[str, InstanceObservation]],
    situations: Mapping[str, str] | None = None,
) -> dict[str, Blocked]:
    """Clusters where a dependency is not yet ready at its desired version: the plugin must wait there.
    `situations` says where each dependency's rollout stands (see `situation`)."""
    blocked: dict[str, Blocked] = {}
    for dependency in depends_on:
        want = desired_versions.get(dependency)
        for iid, seen in observed.get(dependency, {}).items():
            if not (seen.version == want and seen.ready):
                cluster = cluster_of(iid)
                blocked.setdefault(cluster, Blocked(dependency, want, cluster, (situations or {}).get(dependency, "")))
    return blocked


def situation(state: RolloutState | None, version: str | None) -> str:
    """Where a dependency's rollout to `version` stands, for the rollouts that wait for it."""
    if state is None or state.target_version != version:
        return f"its rollout to {version} has not started"
    if state.waiting_for:
        return f"waiting for {state.waiting_for}"
    if state.phase in (Phase.AWAITING_APPROVAL, Phase.WAITING_WINDOW, Phase.PAUSED):
        return state.reason  # e.g. "batch all awaits approval", "paused by alice: incident 42"
    if state.phase is Phase.PROGRESSING and state.batches:
        return f"rolling out {version}, batch {state.batches[-1].name}"
    return {Phase.PENDING: "pending", Phase.PROGRESSING: f"rolling out {version}", Phase.ROLLING_BACK: "rolling back",
            Phase.SUCCEEDED: "succeeded", Phase.ROLLED_BACK: "rolled back",
            Phase.FAILED: "failed"}[state.phase]
