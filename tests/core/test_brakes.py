"""The brakes under every condition: manual rollback, its deadline, waiting on a dependency, bake time that
needs evidence, retry of what failed, and drift in batches that already passed. Driven like
tests/core/test_engine.py: a tiny pure world answers the engine's effects, the clock is an argument."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import pytest

from reconciler.core.effects import (
    Alert,
    Blocked,
    CommitSpec,
    Desired,
    Hold,
    InstanceObservation,
    Observations,
    SetVersion,
)
from reconciler.core.engine import decide, retry_point, situation
from reconciler.core.model import BatchPhase, Phase, RolloutState, Severity, Step, fmt_time, from_doc, to_doc
from reconciler.core.report import render_report
from reconciler.core.spec import RetryRecord, RollbackSpec
from tests.core.test_engine import CLUSTERS, STEP, Run, World, desired, installed, make_policy, run

ALL_AT_ONCE = [{"name": "all", "size": "100%", "bake": "1s"}]


@dataclass
class RetryWorld(World):
    """The world plus the retry records of approvals/<plugin>.yaml, as the shell reads them."""

    retries: tuple[RetryRecord, ...] = ()

    def observe(self) -> Observations:
        return replace(super().observe(), retries=self.retries)


def halfway(world: World, state: RolloutState, now: datetime) -> Run:
    """1.6.0 with its canary passed and wave-1 under way."""
    result = run(desired("1.6.0"), world, state, now, ticks=12)
    assert result.state is not None and result.state.phase is Phase.PROGRESSING
    assert result.state.batches[0].phase is BatchPhase.PASSED
    return result


# --- 1. a manual rollback is one rollback ---------------------------------------------------------------------


def test_a_manual_rollback_is_one_transition_counted_once_and_timed_from_its_start() -> None:
    state, world, now = installed("1.5.0")
    mid = halfway(world, state, now)
    assert mid.state is not None
    world.never_ready.add("1.5.0")  # the old version takes a few ticks to come back
    slow = run(desired("1.5.0", by="carol"), world, mid.state, mid.now, ticks=8, until=[Phase.ROLLED_BACK])
    world.never_ready.discard("1.5.0")
    back = run(desired("1.5.0", by="carol"), world, slow.state, slow.now)
    assert back.state is not None and back.state.phase is Phase.ROLLED_BACK
    reasons = slow.reasons() + back.reasons()
    assert sum("spec.version set back to 1.5.0" in r for r in reasons) == 1, reasons
    assert (slow.actions() + back.actions()).count("rollback") == 1
    assert back.state.rollbacks == mid.state.rollbacks + 1
    assert back.state.rollback_started == mid.now  # the tick the set-back was seen
    assert from_doc(to_doc(back.state)).rollback_started == mid.now
    assert set(world.versions.values()) == {"1.5.0"}


def test_a_manual_rollback_whose_old_version_never_gets_ready_fails_like_an_automatic_one() -> None:
    state, world, now = installed("1.5.0")
    mid = halfway(world, state, now)
    world.never_ready.add("1.5.0")
    back = run(desired("1.5.0", by="carol"), world, mid.state, mid.now, ticks=100)
    assert back.state is not None and back.state.phase is Phase.FAILED, back.state and back.state.reason
    assert "rollback_failed" in back.alerts()
    assert "rollback to 1.5.0 not ready and verified within 5s" in back.state.reason
    assert "grayops retry billing" in back.state.reason  # the way forward is named
    later = run(desired("1.5.0", by="carol"), world, back.state, back.now, ticks=10)
    assert later.state is not None and later.state.phase is Phase.FAILED  # held for a human, no new rollout
    assert not later.actions()


def test_a_rollback_is_timed_from_its_start_in_telemetry() -> None:
    from reconciler.adapters.telemetry import Telemetry
    from tests.adapters.test_telemetry import feed, sample

    telemetry = Telemetry()
    state, world, now = installed("1.5.0")
    mid = halfway(world, state, now)
    world.never_ready.add("1.5.0")
    slow = run(desired("1.5.0", by="carol"), world, mid.state, mid.now, ticks=8, until=[Phase.ROLLED_BACK])
    world.never_ready.discard("1.5.0")
    back = run(desired("1.5.0", by="carol"), world, slow.state, slow.now)
    feed(telemetry, slow)
    feed(telemetry, back)
    assert back.state is not None and back.state.finished is not None
    took = (back.state.finished - mid.now).total_seconds() * 1000
    assert sample(telemetry, "version_rollback_duration_ms_count", plugin="billing") == 1
    assert sample(telemetry, "version_rollback_duration_ms_sum", plugin="billing") == pytest.approx(took)
    assert took >= 2000


# --- 2. rollback.deadline -------------------------------------------------------------------------------------


def test_a_rollback_past_its_deadline_alerts_once_and_the_report_says_how_long_it_took() -> None:
    assert RollbackSpec().deadline == 180.0  # README "Targets": a rollback completes within 3 minutes
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    policy = make_policy(instanceTimeout="1h", rollback={"deadline": "2s"})
    started = run(desired("1.6.0", policy), world, state, now, until=[Phase.ROLLING_BACK])
    world.never_ready.add("1.5.0")
    slow = run(desired("1.6.0", policy), world, started.state, started.now, ticks=20)  # 5 s
    world.never_ready.discard("1.5.0")
    done = run(desired("1.6.0", policy), world, slow.state, slow.now)
    assert done.state is not None and done.state.phase is Phase.ROLLED_BACK
    slow_alerts = [e for e in slow.effects + done.effects if isinstance(e, Alert) and e.kind == "rollback_slow"]
    assert len(slow_alerts) == 1 and slow_alerts[0].severity is Severity.CRITICAL
    assert "longer than its 2s deadline" in slow_alerts[0].message
    report = render_report(done.state)
    took = re.search(r"rollback took (\d+(?:\.\d)?)s", report)
    assert took is not None and 5.0 <= float(took.group(1)) < 7.0, report
    assert "longer than the deadline" in report


def test_a_quick_rollback_raises_no_deadline_alert() -> None:
    state, world, now = installed("1.5.0")
    world.error_rate["1.6.0"] = 0.2
    result = run(desired("1.6.0"), world, state, now)
    assert result.state is not None and result.state.phase is Phase.ROLLED_BACK
    assert "rollback_slow" not in result.alerts()
    assert re.search(r"rollback took \d", render_report(result.state))


# --- 6. waiting on a dependency -------------------------------------------------------------------------------


def blocked_prod(situation_text: str = "batch all awaits approval") -> dict[str, Blocked]:
    return {c.name: Blocked("auth", "2.0", c.name, situation_text) for c in CLUSTERS if c.name.startswith("prod")}


def test_a_batch_waiting_for_a_dependency_does_not_start_says_so_and_its_timeout_does_not_run() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batchTimeout="3s")
    world.blocked = blocked_prod()
    waiting = run(desired("1.6.0", policy), world, state, now, ticks=120)  # 30 s, ten times the batch timeout
    final = waiting.state
    assert final is not None and final.phase is Phase.PROGRESSING
    assert final.waiting_for == "auth 2.0 (batch all awaits approval)"
    assert [b.name for b in final.batches] == ["canary"]  # wave-1 has not started: all its new instances wait
    assert "batch wave-1 waits for auth 2.0 (batch all awaits approval)" in waiting.reasons()
    assert waiting.actions().count("wait-dependency") == 1  # one transition, not one per tick
    assert "batch_timeout" not in waiting.alerts()
    assert not [e for e in world.applied if e.version == "1.6.0" and e.instance.startswith("prod")]
    world.blocked = {}
    done = run(desired("1.6.0", policy), world, final, waiting.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED
    assert done.state.waiting_for is None and "batch_timeout" not in done.alerts()


def test_time_a_started_batch_waits_for_a_dependency_is_not_counted_against_its_timeout() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batches=ALL_AT_ONCE, maxParallel=8, batchTimeout="3s")
    world.blocked = {"prod-1": Blocked("auth", "2.0", "prod-1", "rolling out 2.0, batch wave-1")}
    waiting = run(desired("1.6.0", policy), world, state, now, ticks=120)
    final = waiting.state
    assert final is not None and final.phase is Phase.PROGRESSING, final and final.reason
    assert final.waiting_for == "auth 2.0 (rolling out 2.0, batch wave-1)"
    assert final.instances["prod-1/plugins"].step is Step.PENDING
    assert "batch_timeout" not in waiting.alerts()
    world.blocked = {}
    done = run(desired("1.6.0", policy), world, from_doc(to_doc(final)), waiting.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED, done.state and done.state.reason
    assert done.state.batches[0].waited_seconds >= 25
    assert "waited" in render_report(done.state)


def test_a_dependency_situation_says_where_its_rollout_stands() -> None:
    state, world, now = installed("2.0.0")
    assert situation(None, "2.0.0") == "its rollout to 2.0.0 has not started"
    assert situation(state, "2.1.0") == "its rollout to 2.1.0 has not started"
    assert situation(state, "2.0.0") == "succeeded"
    policy = make_policy(batches=[{"name": "canary", "size": 1, "bake": "1s"},
                                  {"name": "all", "size": "100%", "bake": "1s", "approval": True}])
    gated = run(desired("2.1.0", policy), world, state, now)
    assert gated.state is not None
    assert situation(gated.state, "2.1.0") == "batch all awaits approval"


# --- 7. bake time needs evidence -------------------------------------------------------------------------------


def until_baking(want: Desired, world: World, state: RolloutState, now: datetime) -> Run:
    """Tick until the batch in flight starts baking (no reading of it yet)."""
    result = Run(state, now)
    for _ in range(40):
        step = run(want, world, result.state, result.now, ticks=1)
        result = Run(step.state, step.now, result.decisions + step.decisions)
        if step.state is not None and step.state.batches and step.state.batches[-1].phase is BatchPhase.BAKING:
            return result
    raise AssertionError("the batch never started baking")


def readings_to_pass(result: Run) -> int:
    assert result.state is not None
    return result.state.batches[-1].metrics[0].readings


def test_a_restart_mid_bake_cannot_pass_the_bake_on_one_reading() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batches=[{"name": "all", "size": "100%", "bake": "2s"}], maxParallel=8)
    want = desired("1.6.0", policy)
    baking = until_baking(want, world, state, now)
    assert baking.state is not None
    restarted = from_doc(to_doc(baking.state))  # the reconciler was stopped for ten minutes
    before = restarted.batches[-1].metrics[0].readings
    rest = run(want, world, restarted, baking.now + timedelta(minutes=10))
    assert rest.state is not None and rest.state.phase is Phase.SUCCEEDED
    assert readings_to_pass(rest) - before >= 7  # 2 s of bake at one 250 ms interval per reading


@pytest.mark.parametrize("outage", ["query_error", "no_data"])
def test_readings_without_evidence_do_not_count_toward_the_bake(outage: str) -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(batches=ALL_AT_ONCE, maxParallel=8, analysis={
        "interval": "250ms", "consecutiveErrorLimit": 100, "noDataTimeout": "1h",
        "metrics": [{"name": "error_rate", "max": 0.05}]})
    want = desired("1.6.0", policy)
    baking = until_baking(want, world, state, now)
    if outage == "query_error":
        world.query_error = True
    else:
        world.error_rate["1.6.0"] = None
    dark = run(want, world, baking.state, baking.now, ticks=12)  # 3 s without evidence, three times the bake
    assert dark.state is not None and dark.state.phase is Phase.PROGRESSING
    world.query_error = False
    world.error_rate["1.6.0"] = 0.001
    before = dark.state.batches[-1].metrics[0].readings
    rest = run(want, world, dark.state, dark.now)
    assert rest.state is not None and rest.state.phase is Phase.SUCCEEDED
    assert readings_to_pass(rest) - before >= 3  # 1 s of bake still to cover, not one reading


# --- 8. retry -------------------------------------------------------------------------------------------------


def retry_of(state: RolloutState, by: str = "bob") -> RetryRecord:
    point = retry_point(state)
    assert point is not None, state.reason
    batch, failed_at = point
    return RetryRecord(version=state.target_version, rollout_id=state.rollout_id, batch=batch,
                       failed_at=fmt_time(failed_at) or "", by=by, at="2026-11-23T03:00:00.000Z")


def test_a_rollout_paused_after_a_failed_batch_is_retried_by_a_record_and_names_its_way_forward() -> None:
    state, plain, now = installed("1.5.0")
    world = RetryWorld(versions=plain.versions)
    world.error_rate["1.6.0"] = 0.2
    policy = make_policy(rollback={"limit": 0})
    held = run(desired("1.6.0", policy), world, state, now)
    assert held.state is not None and held.state.phase is Phase.PAUSED
    for command in ("grayops retry billing", "grayops rollback billing", "commit a new version"):
        assert command in held.state.reason
    world.error_rate["1.6.0"] = 0.001  # fixed outside grayops
    world.retries = (retry_of(held.state),)
    done = run(desired("1.6.0", policy), world, held.state, held.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED, done.state and done.state.reason
    assert "batch canary retried by bob" in done.reasons()
    assert done.actions()[0] == "retry"


def test_a_retry_answers_one_failure_only() -> None:
    state, plain, now = installed("1.5.0")
    world = RetryWorld(versions=plain.versions)
    world.error_rate["1.6.0"] = 0.2
    policy = make_policy(rollback={"limit": 0})
    held = run(desired("1.6.0", policy), world, state, now)
    assert held.state is not None
    record = retry_of(held.state)
    world.retries = tuple(record.model_copy(update=change) for change in (
        {"rollout_id": "0000000000"}, {"version": "1.7.0"}, {"failed_at": "2020-01-01T00:00:00.000Z"}))
    ignored = run(desired("1.6.0", policy), world, held.state, held.now, ticks=10)
    assert ignored.state is not None and ignored.state.phase is Phase.PAUSED and not ignored.actions()
    world.retries = (record,)
    again = run(desired("1.6.0", policy), world, held.state, held.now)  # still bad: fails again, pauses again
    assert again.state is not None and again.state.phase is Phase.PAUSED
    assert again.actions().count("retry") == 1
    assert "batch_failed" in again.alerts()  # the second failure alerts too
    later = run(desired("1.6.0", policy), world, again.state, again.now, ticks=10)
    assert later.state is not None and later.state.phase is Phase.PAUSED and not later.actions()


def test_a_failed_rollback_is_retried_by_running_the_rollback_again() -> None:
    state, plain, now = installed("1.5.0")
    world = RetryWorld(versions=plain.versions)
    world.error_rate["1.6.0"] = 0.2
    policy = make_policy(verify=[{"type": "exec", "command": ["ping"], "expect": "PONG"}])
    started = run(desired("1.6.0", policy), world, state, now, until=[Phase.ROLLING_BACK])
    world.failing_checks.add("verify/1.5.0")
    failed = run(desired("1.6.0", policy), world, started.state, started.now)
    assert failed.state is not None and failed.state.phase is Phase.FAILED
    assert "grayops retry billing" in failed.state.reason
    world.failing_checks.discard("verify/1.5.0")
    world.retries = (retry_of(failed.state),)
    back = run(desired("1.6.0", policy), world, failed.state, failed.now)
    assert back.state is not None and back.state.phase is Phase.ROLLED_BACK, back.state and back.state.reason
    assert back.state.rollbacks == failed.state.rollbacks  # the same rollback, run again
    assert set(world.versions.values()) == {"1.5.0"}


def test_a_failed_first_install_is_retried_from_its_failed_batch() -> None:
    world = RetryWorld(error_rate={"1.0.0": 0.5})
    failed = run(desired("1.0.0"), world)
    assert failed.state is not None and failed.state.phase is Phase.FAILED
    assert "grayops retry billing" in failed.state.reason
    world.error_rate["1.0.0"] = 0.001
    world.retries = (retry_of(failed.state),)
    done = run(desired("1.0.0"), world, failed.state, failed.now)
    assert done.state is not None and done.state.phase is Phase.SUCCEEDED, done.state and done.state.reason
    assert set(world.versions.values()) == {"1.0.0"}


def test_nothing_to_retry_in_a_rollout_that_did_not_fail() -> None:
    state, world, now = installed("1.5.0")
    assert retry_point(state) is None
    mid = halfway(world, state, now)
    assert mid.state is not None and retry_point(mid.state) is None


# --- 19. drift in batches that already passed -----------------------------------------------------------------


def lose_passed(world: World, state: RolloutState) -> list[str]:
    """The instances of passed batches lose what they ran (a sim fleet's state deleted, a human's kubectl)."""
    lost = [iid for b in state.batches if b.phase is BatchPhase.PASSED for iid in b.instances]
    for iid in lost:
        world.versions[iid] = None
    return lost


def test_instances_of_passed_batches_that_lost_their_version_are_drift_and_reconverged() -> None:
    state, world, now = installed("1.5.0")
    mid = halfway(world, state, now)
    assert mid.state is not None
    lost = lose_passed(world, mid.state)
    rest = run(desired("1.6.0"), world, from_doc(to_doc(mid.state)), mid.now)
    assert rest.state is not None and rest.state.phase is Phase.SUCCEEDED
    assert "drift" in rest.alerts()
    assert all(world.versions[iid] == "1.6.0" for iid in lost)
    assert all(inst.version == "1.6.0" for inst in rest.state.instances.values())
    assert [e.instance for e in rest.effects if isinstance(e, SetVersion) and e.instance in lost] == lost


def test_drift_with_policy_pause_holds_for_a_human_and_resume_reconverges() -> None:
    state, world, now = installed("1.5.0")
    policy = make_policy(drift="pause")
    mid = run(desired("1.6.0", policy), world, state, now, ticks=12)
    assert mid.state is not None and mid.state.batches[0].phase is BatchPhase.PASSED
    lost = lose_passed(world, mid.state)
    held = run(desired("1.6.0", policy), world, mid.state, mid.now)
    assert held.state is not None and held.state.phase is Phase.PAUSED
    assert "drift" in held.alerts() and "canary-1/plugins" in (held.state.pause_reason or "")
    assert world.versions[lost[0]] is None
    assert any(isinstance(e, CommitSpec) and e.field == "paused" for e in held.effects)
    paused = run(desired("1.6.0", policy, paused=True), world, held.state, held.now, ticks=2)
    resumed = run(desired("1.6.0", policy, by="bob"), world, paused.state, paused.now)
    assert resumed.state is not None and resumed.state.phase is Phase.SUCCEEDED
    assert all(world.versions[iid] == "1.6.0" for iid in lost)


def test_an_unreachable_instance_is_not_drift() -> None:
    state, world, now = installed("1.5.0")
    mid = halfway(world, state, now)
    assert mid.state is not None
    seen = world.observe()
    gone = {**seen.instances, "canary-1/plugins": InstanceObservation(None, False, reachable=False)}
    decision = decide(mid.state, desired("1.6.0"), replace(seen, instances=gone), mid.now)
    assert "drift" not in [e.kind for e in decision.effects if isinstance(e, Alert)]
    assert not [e for e in decision.effects if isinstance(e, SetVersion) and e.instance == "canary-1/plugins"]


def test_every_hold_for_a_human_names_the_commands_that_decide() -> None:
    state, world, now = installed("1.5.0")
    world.query_error = True
    held = run(desired("1.6.0"), world, state, now)
    assert held.state is not None and held.state.phase is Phase.PAUSED
    assert "a human must decide: grayops resume billing, or grayops rollback billing" in held.state.reason
    alert = next(e for e in held.effects if isinstance(e, Alert) and e.kind == "metrics_error")
    assert "grayops resume billing" in alert.message


def test_the_shell_decides_dependencies_first_so_a_waiting_rollout_names_where_they_stand_now() -> None:
    from reconciler.shell.tick import dependencies_first

    plugins = {"api": ("zeta",), "billing": ("api", "auth"), "auth": (), "zeta": ()}
    want = {name: replace(desired("1.0.0"), plugin=name, depends_on=deps) for name, deps in plugins.items()}
    order = dependencies_first(want)
    assert sorted(order) == sorted(plugins)
    for name, deps in plugins.items():
        assert all(order.index(dep) < order.index(name) for dep in deps), order


@pytest.mark.parametrize("kind", ["git_conflict", "history_rewritten"])
def test_a_hold_from_the_shell_pauses_and_alerts_with_the_shells_kind(kind: str) -> None:
    state, world, now = installed()
    want = desired("1.5.0")
    started = run(want, world, state, now, until=(Phase.PROGRESSING,))
    assert started.state is not None
    obs = replace(world.observe(), hold=Hold(f"the cause of {kind}", kind))
    decision = decide(started.state, want, obs, started.now + STEP)
    assert decision.state is not None and decision.state.phase is Phase.PAUSED
    assert [e.kind for e in decision.effects if isinstance(e, Alert)] == [kind]
    assert f"the cause of {kind}" in decision.state.reason


def test_a_hold_on_a_rollout_that_is_rolling_back_still_alerts_its_cause_once() -> None:
    state, world, now = installed()
    started = run(desired("1.5.0"), world, state, now, until=(Phase.PROGRESSING,))
    assert started.state is not None
    back = desired("1.4.0")  # the rewrite set the version back: a rollback, never held
    hold = Hold("history rewritten", "history_rewritten")
    first = decide(started.state, back, replace(world.observe(), hold=hold), started.now + STEP)
    assert first.state is not None and first.state.phase is Phase.ROLLING_BACK
    assert [e.kind for e in first.effects if isinstance(e, Alert)] == ["history_rewritten"]
    again = decide(first.state, back, replace(world.observe(), hold=hold), started.now + 2 * STEP)
    assert not [e for e in again.effects if isinstance(e, Alert) and e.kind == "history_rewritten"]
