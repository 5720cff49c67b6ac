"""The artifact gate in the pure engine (README "Supply chain"), by table: with `artifact_gate`, no instance is
touched until the shell's check of the version's image passed; a block waits with the reason and alerts once per
reason; the digest that passed is pinned in the rollout's state and its status. A tag that does not exist in the
registry fails the rollout at once (waiting cannot make it exist), with nothing touched and nothing to roll back."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from reconciler.core.effects import Alert, InstanceObservation, SetVersion, WriteReport
from reconciler.core.engine import decide, retry_point
from reconciler.core.model import Phase, RolloutState, fmt_time
from reconciler.core.report import render_report
from reconciler.core.spec import RetryRecord
from reconciler.core.status import dump_status, load_status
from reconciler.core.trust import ArtifactAllowed, ArtifactBlocked, ArtifactDecision, ScanSummary
from tests.core.test_engine import T0, World, desired

IMAGE = "127.0.0.1:5000/plugins/billing"
DIGEST = "sha256:" + "ab" * 32
ALLOWED = ArtifactAllowed(IMAGE, "2.0.0", DIGEST, "sha256:0123456789abcdef",
                          ScanSummary({"HIGH": 1}, source="report"))
UNTRUSTED = ArtifactBlocked(IMAGE, "2.0.0", "artifact_untrusted", "no signature (no tag sha256-ab.sig)", DIGEST)
DOWN = ArtifactBlocked(IMAGE, "2.0.0", "registry_unreachable", "127.0.0.1:5000 did not answer")
SCAN = ArtifactBlocked(IMAGE, "2.0.0", "scan_blocked", "1 finding(s) above maxSeverity HIGH: CVE-2025-9 (CRITICAL)")
OLD = replace(ALLOWED, version="1.0.0")
MISSING = ArtifactBlocked(IMAGE, "2.0.0", "artifact_missing", f"{IMAGE}:2.0.0: not found (MANIFEST_UNKNOWN)")


def run(answers: list[ArtifactDecision | None], gate: bool = True) -> tuple[RolloutState, list[object]]:
    """Ticks with the gate's answer of each tick; returns the last state and every effect."""
    world, state = World(), None
    effects: list[object] = []
    want = replace(desired("2.0.0"), artifact_gate=gate)
    for n, answer in enumerate(answers):
        decision = decide(state, want, replace(world.observe(), artifact=answer), T0 + timedelta(seconds=n))
        world.act(decision)
        state, effects = decision.state, [*effects, *decision.effects]
    assert state is not None
    return state, effects


def touched(effects: list[object]) -> bool:
    return any(isinstance(e, SetVersion) for e in effects)


def alerts(effects: list[object]) -> list[str]:
    return [e.kind for e in effects if isinstance(e, Alert)]


@pytest.mark.parametrize(("answers", "kinds", "waiting"), [
    ([None, None], [], "the artifact gate"),
    ([UNTRUSTED, UNTRUSTED, UNTRUSTED], ["artifact_untrusted"], "the artifact gate (artifact_untrusted: no signature"),
    ([SCAN, SCAN], ["scan_blocked"], "the artifact gate (scan_blocked: 1 finding(s) above maxSeverity HIGH: CVE"),
    ([DOWN, DOWN], ["registry_unreachable"], "the artifact gate (registry_unreachable: 127.0.0.1:5000 did not"),
    ([OLD, OLD], [], "the artifact gate"),  # an answer about another version lets nothing through
], ids=["no-answer-yet", "untrusted", "scan", "registry-down", "other-version"])
def test_no_instance_is_touched_until_the_gate_passes(answers: list[ArtifactDecision | None], kinds: list[str],
                                                      waiting: str) -> None:
    state, effects = run(answers)
    assert not touched(effects) and state.batches == () and state.phase is Phase.PENDING
    assert alerts(effects) == kinds  # once per reason, however many ticks
    assert state.waiting_for is not None and state.waiting_for.startswith(waiting)
    assert not state.artifact


def test_a_tag_that_does_not_exist_fails_the_rollout_at_once_with_nothing_touched() -> None:
    state, effects = run([None, MISSING, MISSING, MISSING])
    assert not touched(effects) and state.batches == ()
    assert state.phase is Phase.FAILED and state.finished is not None and state.waiting_for is None
    assert state.reason.startswith(f"artifact_missing: {IMAGE}:2.0.0: not found (MANIFEST_UNKNOWN); no instance "
                                   "touched")
    assert alerts(effects) == ["artifact_missing"]  # once, and no batch_failed or rollback alert
    assert sum(isinstance(e, WriteReport) for e in effects) == 1
    assert "| Result | Failed |" in render_report(state)


def test_the_rollout_proceeds_when_the_registry_is_back_and_pins_the_digest() -> None:
    state, effects = run([DOWN, DOWN, ALLOWED, None, None])
    assert touched(effects) and state.waiting_for is None and state.batches
    assert {e.digest for e in effects if isinstance(e, SetVersion)} == {DIGEST}  # image@digest on every instance
    assert state.artifact == {"image": IMAGE, "digest": DIGEST, "signer": "sha256:0123456789abcdef",
                              "scan": "0 CRITICAL, 1 HIGH, 0 MEDIUM, 0 LOW, 0 UNKNOWN"}
    assert any(f"artifact {IMAGE}@{DIGEST} passed the gate" in h.reason for h in state.history)
    assert load_status(dump_status(state)).artifact == state.artifact  # pinned in status/<plugin>.yaml
    report = render_report(state)
    assert f"| Artifact | `{IMAGE}@{DIGEST}` |" in report
    assert "| Artifact signer | `sha256:0123456789abcdef` |" in report
    assert "| Scan | 0 CRITICAL, 1 HIGH, 0 MEDIUM, 0 LOW, 0 UNKNOWN |" in report


def test_without_the_gate_a_rollout_starts_as_before() -> None:
    state, effects = run([None], gate=False)
    assert touched(effects) and not state.artifact and "| Artifact" not in render_report(state)


def test_the_signer_of_the_desired_revision_is_recorded_in_status_and_report() -> None:
    want = replace(desired("2.0.0"), signed_by="alice@example.com (SHA256:abc)")
    state = decide(None, want, World().observe(), T0).state
    assert state.desired_signer == "alice@example.com (SHA256:abc)"
    assert load_status(dump_status(state)).desired_signer == state.desired_signer
    assert "| Commit signer | alice@example.com (SHA256:abc) |" in render_report(state)


# --- preflight of the workloads (README "Supply chain") ------------------------------------------------------

GONE = "Deployment plugins/billing on cluster prod-3: not found"


@pytest.mark.parametrize("gate", [True, False], ids=["with-image", "without-image"])
def test_a_rollout_whose_workload_is_missing_somewhere_fails_before_anything_is_touched(gate: bool) -> None:
    world = World()
    world.versions = dict.fromkeys(world.versions, "1.0.0")
    want = replace(desired("2.0.0"), artifact_gate=gate)
    state: RolloutState | None = None
    effects: list[object] = []
    for n in range(3):
        obs = world.observe()
        obs = replace(obs, artifact=ALLOWED if gate else None,
                      instances={**obs.instances, "prod-3/plugins": InstanceObservation(None, False, missing=GONE)})
        decision = decide(state, want, obs, T0 + timedelta(seconds=n))
        world.act(decision)
        state, effects = decision.state, [*effects, *decision.effects]
    assert state is not None and not touched(effects) and state.batches == ()
    assert state.phase is Phase.FAILED and state.reason.startswith(
        f"workload_missing: 1 instance(s) lack their workload or container: prod-3/plugins: {GONE}; no instance "
        "touched")
    assert alerts(effects) == ["workload_missing"]


def test_an_unreachable_instance_is_not_a_missing_one() -> None:
    world = World()
    world.versions = dict.fromkeys(world.versions, "1.0.0")
    obs = world.observe()
    obs = replace(obs, instances={**obs.instances, "prod-3/plugins": InstanceObservation(None, False,
                                                                                         reachable=False)})
    state = decide(None, desired("2.0.0"), obs, T0).state
    assert state.phase is Phase.PROGRESSING and state.batches


def test_a_retry_after_the_image_was_pushed_runs_the_preflight_again() -> None:
    world, want = World(), replace(desired("2.0.0"), artifact_gate=True)
    state = decide(None, want, replace(world.observe(), artifact=MISSING), T0).state
    point = retry_point(state)
    assert state.phase is Phase.FAILED and point is not None and point[0] == "preflight"
    assert "grayops retry billing" in state.reason
    record = RetryRecord(version="2.0.0", rollout_id=state.rollout_id, batch=point[0],
                         failed_at=fmt_time(point[1]) or "", by="alice", at=fmt_time(T0) or "")
    retried = decide(state, want, replace(world.observe(), retries=(record,)), T0 + timedelta(seconds=1))
    assert retried.state.phase is Phase.PENDING and retried.state.finished is None
    assert any("preflight retried by alice" in h.reason for h in retried.state.history)
    went = decide(retried.state, want, replace(world.observe(), artifact=ALLOWED, retries=(record,)),
                  T0 + timedelta(seconds=2))
    assert went.state.phase is Phase.PROGRESSING and touched(list(went.effects))
    again = decide(state, want, replace(world.observe(), artifact=MISSING), T0 + timedelta(seconds=1))
    assert again.state == state and not again.effects  # without a retry, a failed rollout stays as it is
