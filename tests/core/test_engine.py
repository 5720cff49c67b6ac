"""The engine by scenario tables: a tiny pure world answers the engine's effects, the clock is an argument.

Each scenario drives `decide` tick by tick the way the shell does (effects of one tick are the next tick's
observations) and asserts what an operator would check: phases, which versions run where, which gates held,
which alerts fired and what the engine asked git to record.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from reconciler.core.effects import (
    Alert,
    Blocked,
    Change,
    CheckResult,
    CommitSpec,
    Desired,
    InstanceObservation,
    MetricResult,
    Observations,
    QueryMetrics,
    RunChecks,
    SetVersion,
    WriteReport,
)
from reconciler.core.engine import Decision, blocked_clusters, decide
from reconciler.core.model import BatchPhase, Measurement, Phase, RolloutState, Step, from_doc, to_doc
from reconciler.core.plan import select_instances
from reconciler.core.spec import ApprovalRecord, ClusterSpec, PluginSpec, PolicySpec
from reconciler.core.status import dump_status, load_status

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday, 02:00 UTC
STEP = timedelta(milliseconds=250)


def make_policy(**overrides: Any) -> PolicySpec:
    doc: dict[str, Any] = {
        "order": {"label": "tier", "values": ["canary", "staging", "prod"]},
        "batches": [{"name": "canary", "size": 1, "bake": "1s"}, {"name": "wave-1", "size": "50%", "bake": "1s"},
                    {"name": "all", "size": "100%", "bake": "1s"}],
        "maxParallel": 2,
        "instanceTimeout": "5s",
        "analysis": {"interval": "250ms", "metrics": [{"name": "error_rate", "max": 0.05}],
                     "noDataTimeout": "2s"},
    }
    doc.update(overrides)
    return PolicySpec.model_validate(doc)


CLUSTERS = [ClusterSpec(name="canary-1", labels={"tier": "canary"})] + [
    ClusterSpec(name=f"prod-{i}", labels={"tier": "prod"}) for i in range(1, 8)
]


def desired(version: str, policy: PolicySpec | None = None, paused: bool = False, commit: str | None = None,
            by: str = "alice", reason: str | None = None, depends_on: tuple[str, ...] = ()) -> Desired:
    return Desired(
        plugin="billing", version=version, paused=paused, policy_name="p", policy=policy or make_policy(),
        instances=tuple(select_instances(PluginSpec(version=version), CLUSTERS)),
        desired_commit=commit or f"c0ffee{version.replace('.', '')}", change=Change("c0ffee", by, reason=reason),
        depends_on=depends_on,
    )


@dataclass
class World:
    """Instances that become ready one tick after a change, and metrics per version."""

    versions: dict[str, str | None] = field(default_factory=lambda: {f"{c.name}/plugins": None for c in CLUSTERS})
    error_rate: dict[str, float | None] = field(default_factory=dict)  # version -> value (None: no data)
    query_error: bool = False
    fail_readiness: set[str] = field(default_factory=set)  # "version" or "instance@version" that fail readiness
    never_ready: set[str] = field(default_factory=set)  # versions that stay not-ready (no failure reported)
    failing_checks: set[str] = field(default_factory=set)  # "stage/version"
    pending: set[str] = field(default_factory=set)  # changed this tick: not ready until the next
    results: list[Any] = field(default_factory=list)
    applied: list[SetVersion] = field(default_factory=list)
    approvals: tuple[ApprovalRecord, ...] = ()
    blocked: dict[str, Blocked] = field(default_factory=dict)
    max_in_flight: int = 0

    def observe(self) -> Observations:
        seen = {}
        for iid, version in self.versions.items():
            broken = version in self.fail_readiness or f"{iid}@{version}" in self.fail_readiness
            failed = "readiness probe failed" if broken and iid not in self.pending else None
            ready = (version is not None and iid not in self.pending and failed is None
                     and version not in self.never_ready)
            seen[iid] = InstanceObservation(version, ready, failed)
        self.pending = set()
        checks = tuple(r for r in self.results if isinstance(r, CheckResult))
        metrics = tuple(r for r in self.results if isinstance(r, MetricResult))
        self.results = []
        return Observations(seen, checks, metrics, self.approvals, self.blocked)

    def act(self, decision: Decision) -> None:
        in_flight = 0
        for effect in decision.effects:
            if isinstance(effect, SetVersion):
                if self.versions[effect.instance] != effect.version:
                    self.pending.add(effect.instance)
                    in_flight += 1
                self.versions[effect.instance] = effect.version
                self.applied.append(effect)
            elif isinstance(effect, RunChecks):
                ok = f"{effect.stage}/{effect.version}" not in self.failing_checks
                self.results.append(CheckResult(effect.instance, effect.stage, effect.version, ok,
                                                "" if ok else "PING answered ERR"))
            elif isinstance(effect, QueryMetrics):
                for metric in effect.metrics:
                    if self.query_error:
                        measured = Measurement(None, error="connection refused")
                    else:
                        measured = Measurement(self.error_rate.get(effect.version, 0.001))
                    self.results.append(MetricResult(effect.rollout_id, effect.batch, metric.name, measured))
        self.max_in_flight = max(self.max_in_flight, in_flight)


@dataclass
class Run:
    state: RolloutState | None
    now: datetime
    decisions: list[Decision] = field(default_factory=list)

    @property
    def effects(self) -> list[Any]:
        return [e for d in self.decisions for e in d.effects]

    def alerts(self) -> list[str]:
        return [e.kind for e in self.effects if isinstance(e, Alert)]

    def actions(self) -> list[str]:
        return [t.action for d in self.decisions for t in d.transitions]

    def reasons(self) -> list[str]:
        return [t.reason for d in self.decisions for t in d.transitions]


def run(want: Desired, world: World, state: RolloutState | None = None, now: datetime = T0,
        until: Iterable[Phase] = (), ticks: int = 200, persist: bool = True) -> Run:
    """Tick until the rollout settles (or reaches one of `until`); status round-trips through its storage form."""
    stop = set(until)
    result = Run(state, now)
    for _ in range(ticks):
        decision = decide(result.state, want, world.observe(), result.now)
        result.decisions.append(decision)
        world.act(decision)
        result.state = decision.state
        if persist and decision.changed and result.state is not None:  # what the shell commits, read back
            stored = load_status(dump_status(result.state))
            result.state = replace(stored, batches=tuple(
                replace(b, last_query=old.last_query) for b, old in zip(stored.batches, result.state.batches,
                                                                         strict=True)))
        assert result.state is not None
        if result.state.phase in stop or (not stop and result.state.phase.settled):
            break
        result.now += STEP
    return result


def installed(version: str = "1.4.0") -> tuple[RolloutState, World, datetime]:
    """A fleet where `version` rolled out successfully: the starting point of most scenarios."""
    world = World()
    first = run(desired(version), world)
    assert first.state is not None and first.state.phase is Phase.SUCCEEDED, first.reasons()
    return first.state, world, first.now


# --- the good path ------------------------------------------------------------------------------------------


def test_a_good_version_goes_batch_by_batch_canary_first_and_each_batch_bakes() -> None:
    state, world, now = installed()
    result = run(desired("1.5.0"), world, state, now)
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    assert set(world.versions.values()) == {"1.5.0"}
    batches = result.state.batches
    assert [(b.name, len(b.instances), b.phase) for b in batches] == [
        ("canary", 1, BatchPhase.PASSED), ("wave-1", 3, BatchPhase.PASSED), ("all", 4, BatchPhase.PASSED)]
    assert batches[0].instances == ("canary-1/plugins",)
    for batch in batches:
        assert batch.bake_started is not None and batch.ended is not None
        assert batch.ended - batch.bake_started >= timedelta(seconds=1)
    for earlier, later in itertools.pairwise(batches):
        assert earlier.ended is not None and later.started >= earlier.ended
    assert world.max_in_flight <= 2  # maxParallel
    assert result.state.last_good == {iid: "1.5.0" for iid in world.versions}
    assert any(isinstance(e, WriteReport) for e in result.effects)


def test_every_transition_has_a_one_line_reason() -> None:
    state, world, now = installed()
    world.error_rate["1.6.0"] = 0.3
    result = run(desired("1.6.0"), world, state, now)
    assert result.reasons() and all(r and "\n" not in r for r in result.reasons())


def test_a_first_install_starts_from_nothing_and_records_no_previous_version() -> None:
    result = run(desired("1.0.0"), World())
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    assert result.state.from_version is None
    assert "(none) -> 1.0.0" in result.reasons()[0]


# --- metric failures and rollback ---------------------------------------------------------------------------


def test_a_bad_canary_is_rolled_back_at_once_and_the_version_reverted_in_git() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    result = run(desired("1.6.0"), world, state, now)
    final = result.state
    assert final is not None and final.phase is Phase.ROLLED_BACK
    assert set(world.versions.values()) == {"1.5.0"}
    assert [i for i, v in world.versions.items() if v == "1.6.0"] == []
    touched = {e.instance for e in world.applied if e.version == "1.6.0"}
    assert touched == {"canary-1/plugins"}  # only the canary ever ran the bad version
    assert {"metric_threshold", "batch_failed"} <= set(result.alerts())
    reverts = [e for e in result.effects if isinstance(e, CommitSpec)]
    assert reverts and reverts[-1].field == "version" and reverts[-1].value == "1.5.0"
    assert reverts[-1].action == "rollback"
    assert final.rollbacks == 1
    assert "error_rate 0.2 > max 0.05" in final.history[-3].reason or any(
        "error_rate 0.2 > max 0.05" in r for r in result.reasons())


def test_a_rolled_back_version_is_not_retried_and_the_revert_brings_calm() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    result = run(desired("1.6.0"), world, state, now)
    applied_before = len(world.applied)
    again = run(desired("1.6.0"), world, result.state, result.now, ticks=20)
    assert again.state is not None and again.state.phase is Phase.ROLLED_BACK
    assert len(world.applied) == applied_before  # nothing was touched
    assert "no_retry" in again.alerts()
    reverted = run(desired("1.5.0"), world, again.state, again.now, ticks=20)
    assert reverted.state is not None and reverted.state.phase is Phase.ROLLED_BACK
    assert reverted.effects == [] and len(world.applied) == applied_before
    newer = run(desired("1.6.1"), world, reverted.state, reverted.now)
    assert newer.state is not None and newer.state.phase is Phase.SUCCEEDED
    assert newer.state.from_version == "1.5.0" and newer.state.rollbacks == 0


def test_rollback_returns_each_instance_to_its_own_last_good_version() -> None:
    state, world, now = installed("1.5.0")
    # prod-7 last succeeded at 1.4.9 (say, it was added later and never upgraded)
    state = replace(state, last_good={**state.last_good, "prod-7/plugins": "1.4.9"})
    world.versions["prod-7/plugins"] = "1.4.9"
    world.error_rate["1.6.0"] = 0.2
    policy = make_policy(batches=[{"name": "all", "size": "100%", "bake": "1s"}], maxParallel=10)
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.ROLLED_BACK
    assert world.versions["prod-7/plugins"] == "1.4.9"
    assert world.versions["prod-1/plugins"] == "1.5.0"


@pytest.mark.parametrize(
    ("failure_limit", "bad_readings", "expected"),
    [(0, 1, Phase.ROLLED_BACK), (1, 1, Phase.SUCCEEDED), (1, 2, Phase.ROLLED_BACK)],
    ids=["limit-0-one-failure-fails", "limit-1-tolerates-one", "limit-1-two-fail"],
)
def test_failure_limit_counts_failed_readings(failure_limit: int, bad_readings: int, expected: Phase) -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(analysis={"interval": "250ms", "metrics": [
        {"name": "error_rate", "max": 0.05, "failureLimit": failure_limit}]})
    result = Run(state, now)
    bad_left = bad_readings
    want = desired("1.6.0", policy)
    for _ in range(200):
        decision = decide(result.state, want, world.observe(), result.now)
        world.error_rate["1.6.0"] = 0.3 if bad_left > 0 else 0.001
        if any(isinstance(e, QueryMetrics) for e in decision.effects):
            bad_left -= 1
        world.act(decision)
        result.decisions.append(decision)
        result.state = decision.state
        assert result.state is not None
        if result.state.phase.settled:
            break
        result.now += STEP
    assert result.state is not None and result.state.phase is expected


def test_rollback_limit_reached_pauses_for_a_human_and_records_the_pause_in_git() -> None:
    state, world, now = installed("1.5.0")
    state = replace(state, rollbacks=3)  # three rollbacks since the last success
    world.error_rate["1.6.0"] = 0.2
    result = run(desired("1.6.0"), world, state, now)
    assert result.state is not None and result.state.phase is Phase.PAUSED
    assert result.state.paused_by == "grayops" and "rollback limit reached" in (result.state.pause_reason or "")
    assert "rollback_limit" in result.alerts()
    pauses = [e for e in result.effects if isinstance(e, CommitSpec)]
    assert pauses and pauses[-1].field == "paused" and pauses[-1].value is True
    assert world.versions["canary-1/plugins"] == "1.6.0"  # nothing was rolled back


def test_resume_after_a_held_failure_runs_the_failed_batch_again() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(rollback={"onFailure": False})
    world.error_rate["1.6.0"] = 0.2
    held = run(desired("1.6.0", policy), world, state, now)
    assert held.state is not None and held.state.phase is Phase.PAUSED
    paused = run(desired("1.6.0", policy, paused=True), world, held.state, held.now, ticks=3)
    world.error_rate["1.6.0"] = 0.001  # the human fixed what was wrong outside grayops
    resumed = run(desired("1.6.0", policy, by="bob"), world, paused.state, paused.now)
    assert resumed.state is not None and resumed.state.phase is Phase.SUCCEEDED
    assert "resumed by bob" in resumed.reasons()


def test_no_known_good_version_stops_and_asks_for_a_human() -> None:
    world = World(error_rate={"1.0.0": 0.5})
    result = run(desired("1.0.0"), world)
    assert result.state is not None and result.state.phase is Phase.FAILED
    assert "no_good_version" in result.alerts()
    assert world.versions["canary-1/plugins"] == "1.0.0"  # left as it is, for a human
    assert not [e for e in world.applied if e.version != "1.0.0"]


def test_a_failed_rollback_is_its_own_alert() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    world.failing_checks.add("verify/1.5.0")
    policy = make_policy(verify=[{"type": "exec", "command": ["ping"], "expect": "PONG"}])
    world.failing_checks.discard("verify/1.5.0")
    started = run(desired("1.6.0", policy), world, state, now, until=[Phase.ROLLING_BACK])
    world.failing_checks.add("verify/1.5.0")
    result = run(desired("1.6.0", policy), world, started.state, started.now)
    assert result.state is not None and result.state.phase is Phase.FAILED
    assert "rollback_failed" in result.alerts()


# --- instances: readiness, timeouts, checks, budget ----------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "fault", "expected"),
    [
        (0, "fail_readiness", Phase.ROLLED_BACK),
        (0, "never_ready", Phase.ROLLED_BACK),
        (1, "fail_readiness", Phase.ROLLED_BACK),  # every instance fails, more than one
    ],
    ids=["readiness-failure", "instance-timeout", "budget-exceeded"],
)
def test_instance_failures_fail_the_batch_beyond_the_budget(budget: int, fault: str, expected: Phase) -> None:
    state, world, now = installed("1.5.0")
    getattr(world, fault).add("1.6.0")
    policy = make_policy(failureBudget=budget, batches=[{"name": "all", "size": "100%", "bake": "1s"}],
                         maxParallel=8)
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is expected
    failed = result.state.batches[0].reason
    assert "instance(s) failed" in failed
    if fault == "never_ready":
        assert "not ready and verified within 5s" in failed


def test_a_failure_within_the_budget_is_tolerated_and_reported() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(failureBudget=1, batches=[{"name": "all", "size": "100%", "bake": "1s"}], maxParallel=8)
    world.fail_readiness.add("prod-3/plugins@1.6.0")
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.SUCCEEDED
    assert result.state.instances["prod-3/plugins"].step is Step.FAILED
    assert "1 failed within the failure budget" in result.state.reason
    assert "prod-3/plugins" not in result.state.last_good or result.state.last_good["prod-3/plugins"] == "1.5.0"


def test_verify_checks_run_after_ready_and_a_failed_check_fails_the_instance() -> None:
    state, world, now = installed("1.5.0")
    world.failing_checks.add("verify/1.6.0")
    policy = make_policy(verify=[{"type": "exec", "command": ["redis-cli", "ping"], "expect": "PONG"}])
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is Phase.ROLLED_BACK
    assert "verify after upgrade to 1.6.0 failed: PING answered ERR" in result.state.batches[0].reason


def test_a_failed_pre_check_fails_the_instance_without_touching_it() -> None:
    state, world, now = installed("1.5.0")
    world.failing_checks.add("pre/1.6.0")
    policy = make_policy(preChecks=[{"type": "http", "path": "/health", "status": 200}])
    result = run(desired("1.6.0", policy), world, state, now)
    assert not [e for e in world.applied if e.version == "1.6.0"]
    assert result.state is not None and "pre-check failed" in result.state.batches[0].reason


def test_a_batch_running_too_long_alerts_and_fails() -> None:
    state, world, now = installed("1.5.0")
    world.never_ready.add("1.6.0")
    policy = make_policy(batchTimeout="2s", instanceTimeout="1h")
    result = run(desired("1.6.0", policy), world, state, now)
    assert "batch_timeout" in result.alerts()
    assert result.state is not None and result.state.phase is Phase.ROLLED_BACK


# --- missing data and broken queries -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_data", "expected", "alerted"),
    [("pause", Phase.PAUSED, True), ("fail", Phase.ROLLED_BACK, True), ("ignore", Phase.SUCCEEDED, False)],
)
def test_no_data_never_passes_a_bake_silently(no_data: str, expected: Phase, alerted: bool) -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = None
    policy = make_policy(analysis={"interval": "250ms", "metrics": [{"name": "error_rate", "max": 0.05}],
                                   "noData": no_data, "noDataTimeout": "2s"})
    result = run(desired("1.6.0", policy), world, state, now)
    assert result.state is not None and result.state.phase is expected
    assert ("metrics_missing" in result.alerts()) is alerted
    canary = result.state.batches[0]
    assert canary.bake_started is not None
    if expected is Phase.PAUSED:
        assert result.now - canary.bake_started >= timedelta(seconds=2)  # no pass before the timeout
        assert any(isinstance(e, CommitSpec) and e.field == "paused" for e in result.effects)


def test_broken_queries_pause_after_the_consecutive_error_limit() -> None:
    state, world, now = installed("1.5.0")
    world.query_error = True
    result = run(desired("1.6.0"), world, state, now)
    assert result.state is not None and result.state.phase is Phase.PAUSED
    assert "metrics_error" in result.alerts()
    assert "5 failed queries in a row for error_rate" in (result.state.pause_reason or "")
    assert world.versions["canary-1/plugins"] == "1.6.0"  # paused, not rolled back: no evidence either way


# --- gates: windows, approvals, dependencies -----------------------------------------------------------------


def test_new_batches_wait_for_a_window_and_start_inside_it() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(windows=[{"days": ["mon"], "start": "03:00", "end": "05:00", "timezone": "UTC"}])
    waiting = run(desired("1.6.0", policy), world, state, now)  # 02:00: outside
    assert waiting.state is not None and waiting.state.phase is Phase.WAITING_WINDOW
    assert "next opens 2026-11-23T03:00+00:00" in waiting.state.reason
    assert not [e for e in world.applied if e.version == "1.6.0"]
    inside = run(desired("1.6.0", policy), world, waiting.state, T0 + timedelta(hours=1))
    assert inside.state is not None and inside.state.phase is Phase.SUCCEEDED


def test_an_approval_gate_needs_a_record_bound_to_version_batch_and_commit() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batches=[{"name": "canary", "size": 1, "bake": "1s"},
                                  {"name": "all", "size": "100%", "bake": "1s", "approval": True}])
    want = desired("1.6.0", policy, commit="abcdef123456")
    waiting = run(want, world, state, now)
    assert waiting.state is not None and waiting.state.phase is Phase.AWAITING_APPROVAL
    assert "approval_needed" in waiting.alerts()
    world.approvals = (ApprovalRecord(version="1.6.0", batch="all", desired_commit="0000000", by="bob", at="x"),)
    still = run(want, world, waiting.state, waiting.now, ticks=5)
    assert still.state is not None and still.state.phase is Phase.AWAITING_APPROVAL
    world.approvals = (ApprovalRecord(version="1.6.0", batch="all", desired_commit="abcdef1", by="bob", at="x"),)
    done = run(want, world, still.state, still.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED
    assert done.state.batches[1].approved_by == "bob"
    assert "batch all started: 7 instance(s), approved by bob" in done.reasons()


def test_dependencies_hold_instances_on_clusters_where_they_are_not_ready() -> None:
    state, world, now = installed("1.5.0")
    world.blocked = {"prod-1": Blocked("auth", "2.0", "prod-1")}
    policy = make_policy(batches=[{"name": "all", "size": "100%", "bake": "1s"}], maxParallel=10,
                         batchTimeout="1h")
    result = run(desired("1.6.0", policy), world, state, now, ticks=30)
    assert world.versions["prod-1/plugins"] == "1.5.0"
    assert result.state is not None
    assert result.state.instances["prod-1/plugins"].message == "waiting: auth is not ready at 2.0 on prod-1 yet"
    world.blocked = {}
    done = run(desired("1.6.0", policy), world, result.state, result.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED


def test_blocked_clusters_come_from_the_dependency_observations() -> None:
    seen = {"auth": {"a/plugins": InstanceObservation("2.0", True), "b/plugins": InstanceObservation("1.9", True),
                     "c/plugins": InstanceObservation("2.0", False)}}
    blocked = blocked_clusters(("auth",), {"auth": "2.0"}, seen, {"auth": "batch all awaits approval"})
    assert {cluster: b.message for cluster, b in blocked.items()} == {
        "b": "auth is not ready at 2.0 on b yet (batch all awaits approval)",
        "c": "auth is not ready at 2.0 on c yet (batch all awaits approval)"}


# --- humans: pause, resume, rollback, new versions and policies mid-rollout ---------------------------------


def test_pause_lets_in_flight_instances_finish_and_starts_nothing_new() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batches=[{"name": "all", "size": "100%", "bake": "1s"}], maxParallel=2)
    started = run(desired("1.6.0", policy), world, state, now, ticks=1)
    assert sum(v == "1.6.0" for v in world.versions.values()) == 2
    paused = run(desired("1.6.0", policy, paused=True, by="alice", reason="incident 42"), world, started.state,
                 started.now + STEP, ticks=10, until=[Phase.SUCCEEDED])
    assert paused.state is not None and paused.state.phase is Phase.PAUSED
    assert paused.reasons()[0] == "paused by alice: incident 42"
    assert sum(v == "1.6.0" for v in world.versions.values()) == 2
    assert all(paused.state.instances[i].step is Step.DONE for i, v in world.versions.items() if v == "1.6.0")
    resumed = run(desired("1.6.0", policy, by="bob"), world, paused.state, paused.now + timedelta(minutes=5))
    assert resumed.state is not None and resumed.state.phase is Phase.SUCCEEDED
    assert set(world.versions.values()) == {"1.6.0"}


def test_time_paused_does_not_count_against_the_batch_timeout() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batchTimeout="10s")
    started = run(desired("1.6.0", policy), world, state, now, ticks=2)
    paused = run(desired("1.6.0", policy, paused=True), world, started.state, started.now, ticks=2)
    resumed = run(desired("1.6.0", policy), world, paused.state, paused.now + timedelta(hours=1))
    assert resumed.state is not None and resumed.state.phase is Phase.SUCCEEDED
    assert "batch_timeout" not in resumed.alerts()


def test_setting_the_version_back_mid_rollout_is_a_fast_rollback_without_a_revert_commit() -> None:
    state, world, now = installed("1.5.0")
    halfway = run(desired("1.6.0"), world, state, now, until=[Phase.PROGRESSING], ticks=30)
    halfway = run(desired("1.6.0"), world, halfway.state, halfway.now, ticks=12)
    back = run(desired("1.5.0", by="carol", reason="customer reports"), world, halfway.state, halfway.now)
    assert back.state is not None and back.state.phase is Phase.ROLLED_BACK
    assert back.state.rollback_by == "carol"
    assert set(world.versions.values()) == {"1.5.0"}
    assert not [e for e in back.effects if isinstance(e, CommitSpec)]
    assert back.decisions[0].transitions[0].action == "rollback"


def test_a_new_version_mid_rollout_restarts_from_the_canary() -> None:
    state, world, now = installed("1.5.0")
    first = run(desired("1.6.0"), world, state, now, ticks=12)
    assert first.state is not None and len(first.state.batches) >= 2
    second = run(desired("1.7.0"), world, first.state, first.now)
    assert second.state is not None and second.state.phase is Phase.SUCCEEDED
    assert "restarting from the canary" in second.reasons()[0]
    assert second.state.batches[0].name == "canary" and second.state.from_version == "1.5.0"
    assert set(world.versions.values()) == {"1.7.0"}


def test_a_policy_change_applies_to_batches_not_yet_started() -> None:
    state, world, now = installed("1.5.0")
    before = run(desired("1.6.0"), world, state, now, ticks=6)  # the canary has started
    assert before.state is not None and [b.name for b in before.state.batches] == ["canary"]
    changed = make_policy(batches=[{"name": "canary", "size": 1, "bake": "1s"},
                                   {"name": "half", "size": "25%", "bake": "1s"},
                                   {"name": "rest", "size": "100%", "bake": "1s"}])
    after = run(desired("1.6.0", changed), world, before.state, before.now)
    assert after.state is not None
    assert [(b.name, len(b.instances)) for b in after.state.batches] == [("canary", 1), ("half", 1), ("rest", 6)]


# --- restart: no passed gate redone, no unpassed gate skipped ------------------------------------------------


def test_a_state_read_back_from_status_resumes_without_redoing_passed_batches() -> None:
    state, world, now = installed("1.5.0")
    part = run(desired("1.6.0"), world, state, now, ticks=14)
    assert part.state is not None
    passed = [b.name for b in part.state.batches if b.phase is BatchPhase.PASSED]
    assert passed, "at least the canary passed before the restart"
    restored = load_status(dump_status(part.state))  # what a restarted reconciler reads from status/
    rest = run(desired("1.6.0"), world, restored, part.now)
    assert rest.state is not None and rest.state.phase is Phase.SUCCEEDED
    started_again = [t.batch for d in rest.decisions for t in d.transitions if t.action == "batch-start"]
    assert not set(passed) & set(started_again)
    upgrades = [e.instance for e in world.applied if e.version == "1.6.0"]
    assert len(upgrades) == len(set(upgrades)) == len(world.versions)


def test_the_status_document_round_trips() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    result = run(desired("1.6.0"), world, state, now)
    assert result.state is not None
    doc = to_doc(result.state)
    assert {"phase", "rolloutId", "targetVersion", "batches", "instances"} <= doc.keys()
    assert doc["instances"]["canary-1/plugins"]["version"] == "1.5.0"
    assert to_doc(from_doc(doc)) == doc
