"""A rollback runs what the version's own rollout ran (README "Supply chain"), by table over the pure engine: the
digest pinned when a version rolled out is kept in status (`digests:`) and given to every instance set back to
it, automatically or by a commit; a version rolled out before the gate has none, and goes back by tag, said so."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import pytest

from reconciler.core.effects import Desired, Observations, SetVersion
from reconciler.core.model import Phase, RolloutState
from reconciler.core.status import dump_status, load_status
from reconciler.core.trust import ArtifactAllowed
from tests.core.test_engine import T0, Run, World, desired, installed, run

IMAGE = "127.0.0.1:5000/plugins/billing"
D150, D160, D170 = ("sha256:" + c * 64 for c in "567")
MOVED = "sha256:" + "f" * 64  # what tag 1.5.0 names after it was pushed again


def allowed(version: str, digest: str) -> ArtifactAllowed:
    return ArtifactAllowed(IMAGE, version, digest, "sha256:0123456789abcdef", None)


@dataclass
class GatedWorld(World):
    """The world, and the artifact gate's answer for the version asked for (as the shell gives it each tick)."""

    answer: ArtifactAllowed | None = None

    def observe(self) -> Observations:
        return replace(super().observe(), artifact=self.answer)


def gated(version: str, **kwargs: object) -> Desired:
    return replace(desired(version, **kwargs), artifact_gate=True)  # type: ignore[arg-type]


def roll(world: GatedWorld, version: str, digest: str, state: RolloutState | None, now: datetime,
         **kwargs: object) -> Run:
    world.answer = allowed(version, digest)
    return run(gated(version), world, state, now, **kwargs)  # type: ignore[arg-type]


def settled(result: Run, phase: Phase) -> RolloutState:
    assert result.state is not None and result.state.phase is phase, result.reasons()
    return result.state


def set_back(result: Run, version: str) -> list[SetVersion]:
    return [e for e in result.effects if isinstance(e, SetVersion) and e.version == version]


def installed_gated() -> tuple[RolloutState, GatedWorld, datetime]:
    """1.5.0 rolled out through the gate (digest D150 pinned), then 1.6.0 (D160)."""
    world = GatedWorld()
    first = roll(world, "1.5.0", D150, None, T0)
    return settled(first, Phase.SUCCEEDED), world, first.now


def test_an_automatic_rollback_uses_the_digest_pinned_when_the_version_rolled_out() -> None:
    state, world, now = installed_gated()
    world.error_rate["1.6.0"] = 0.2
    failed = roll(world, "1.6.0", D160, state, now)
    final = settled(failed, Phase.ROLLED_BACK)
    back = set_back(failed, "1.5.0")
    assert back and {e.digest for e in back} == {D150}
    assert final.digests == {"1.5.0": D150}  # kept in status/<plugin>.yaml, read back each tick
    assert "digests:" in dump_status(final)
    assert load_status(dump_status(final)).digests == {"1.5.0": D150}


def test_a_version_set_back_by_a_commit_runs_its_recorded_digest_even_after_its_tag_moved() -> None:
    state, world, now = installed_gated()
    halfway = roll(world, "1.6.0", D160, state, now, until=[Phase.PROGRESSING], ticks=30)
    halfway = roll(world, "1.6.0", D160, halfway.state, halfway.now, ticks=12)
    world.answer = allowed("1.5.0", MOVED)  # the gate, asked about 1.5.0 now, finds the tag moved
    back = run(gated("1.5.0", by="carol"), world, halfway.state, halfway.now)
    settled(back, Phase.ROLLED_BACK)
    restored = set_back(back, "1.5.0")
    assert restored and {e.digest for e in restored} == {D150}


def test_the_record_keeps_only_the_versions_an_instance_may_go_back_to() -> None:
    state, world, now = installed_gated()
    second = settled(roll(world, "1.6.0", D160, state, now), Phase.SUCCEEDED)
    third = roll(world, "1.7.0", D170, second, now)
    assert settled(third, Phase.SUCCEEDED).digests == {"1.6.0": D160}


def test_a_version_rolled_out_before_the_gate_goes_back_by_tag_and_says_so() -> None:
    state, plain, now = installed("1.5.0")  # no gate: no digest was ever pinned for 1.5.0
    world = GatedWorld(versions=plain.versions)
    world.error_rate["1.6.0"] = 0.2
    failed = roll(world, "1.6.0", D160, state, now)
    settled(failed, Phase.ROLLED_BACK)
    back = set_back(failed, "1.5.0")
    assert back and {e.digest for e in back} == {None}
    assert any("by tag: no digest was recorded for 1.5.0" in r for r in failed.reasons()), failed.reasons()


@pytest.mark.parametrize("digests", [None, {}, {"2.0": D150}])
def test_status_without_digests_reads_as_before_and_versions_that_look_like_numbers_stay_strings(
        digests: dict[str, str] | None) -> None:
    state, _, _ = installed("1.5.0")
    text = dump_status(replace(state, digests=digests or {}))
    assert ("digests:" in text) is bool(digests)
    assert load_status(text).digests == (digests or {})
