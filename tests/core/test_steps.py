"""The blue-green step function by tables: from what the cluster reports of one instance, which operation is next
(README "Strategies"), when the old color is scaled down, and when a settled rollout's instance is cleaned up; the
traffic canary's and the partition's steps likewise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core import steps
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    CanaryObservation,
    Cleanup,
    Color,
    PartitionObservation,
    Scale,
    SetPartition,
    SetWeight,
    Stage,
    Switch,
    Track,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
IID = "eu-1/shop"


def track(color: Color, version: str, ready: bool = True, replicas: int = 2, failed: str | None = None) -> Track:
    name = "billing" if color == "blue" else "billing-green"
    return Track(name, version, replicas, replicas if ready else 0, ready, failed)


def seen(serving: Color | None, *colors: Track, switched: float | None = None, reachable: bool = True,
         message: str = "") -> BlueGreenObservation:
    by_color: dict[Color, Track] = {"blue" if t.name == "billing" else "green": t for t in colors}
    at = NOW - timedelta(seconds=switched) if switched is not None else None
    return BlueGreenObservation(IID, "billing", serving, by_color, at, reachable=reachable, message=message)


BLUE_1 = track("blue", "1.0.0")
NEXT_CASES = {
    "not adopted: adopt first": (seen(None, BLUE_1), "1.1.0", False, steps.Next(Adopt("billing", IID, "r1"))),
    "adopted, nothing staged: stage the idle color": (
        seen("blue", BLUE_1), "1.1.0", False, steps.Next(Stage("billing", IID, "1.1.0", "r1", "1.0.0"))),
    "idle color at another version: stage it again": (
        seen("blue", BLUE_1, track("green", "0.9.0")), "1.1.0", False,
        steps.Next(Stage("billing", IID, "1.1.0", "r1", "1.0.0"))),
    "staged, not ready: wait": (seen("blue", BLUE_1, track("green", "1.1.0", ready=False)), "1.1.0", False,
                                steps.Next()),
    "staged, never ready: failed": (
        seen("blue", BLUE_1, track("green", "1.1.0", ready=False, failed="ProgressDeadlineExceeded")), "1.1.0",
        False, steps.Next(failed="x")),
    "staged and ready, smoke tests first": (seen("blue", BLUE_1, track("green", "1.1.0")), "1.1.0", True,
                                            steps.Next(smoke=True)),
    "staged and ready: switch": (seen("blue", BLUE_1, track("green", "1.1.0")), "1.1.0", False,
                                 steps.Next(Switch("billing", IID, "green"))),
    "serving the version: verify as usual": (seen("green", BLUE_1, track("green", "1.1.0")), "1.1.0", True,
                                             steps.Next(serving=True)),
    "rollback within the delay: switch back": (seen("green", BLUE_1, track("green", "1.1.0")), "1.0.0", False,
                                               steps.Next(Switch("billing", IID, "blue"))),
    "rollback after the scale-down: scale the old color up": (
        seen("green", track("blue", "1.0.0", ready=False, replicas=0), track("green", "1.1.0")), "1.0.0", False,
        steps.Next(Scale("billing", IID, "blue", None))),
    "rollback after the old color is gone: stage the previous version": (
        seen("blue", track("blue", "1.2.0")), "1.1.0", False,
        steps.Next(Stage("billing", IID, "1.1.0", "r1", "1.2.0"))),
    "cluster unreachable: wait": (seen(None, reachable=False, message="cluster eu-1 unreachable"), "1.1.0", False,
                                  steps.Next()),
}


@pytest.mark.parametrize("observed, version, smoke_first, expected", NEXT_CASES.values(), ids=NEXT_CASES.keys())
def test_the_next_blue_green_step(observed: BlueGreenObservation, version: str, smoke_first: bool,
                                  expected: steps.Next) -> None:
    found = steps.blue_green("billing", observed, version, "r1", smoke_first)
    assert (found.operation, found.smoke, found.serving, found.failed is not None) == \
        (expected.operation, expected.smoke, expected.serving, expected.failed is not None)
    if not (found.serving or found.operation or found.smoke):
        assert found.message or found.failed  # every wait says why


def test_a_color_that_can_never_be_ready_names_the_reason_and_the_service_stays() -> None:
    found = steps.blue_green("billing", seen("blue", BLUE_1, track("green", "2.0.0", ready=False,
                                                                   failed="ProgressDeadlineExceeded")),
                             "2.0.0", "r1", False)
    assert found.failed == ("green (billing-green) can never be ready: ProgressDeadlineExceeded; the Service stays "
                            "on blue")


SCALE_CASES = {
    "delay not over: keep the old color": (seen("green", BLUE_1, track("green", "1.1.0"), switched=599), None),
    "delay over: scale the old color to 0": (seen("green", BLUE_1, track("green", "1.1.0"), switched=600),
                                             Scale("billing", IID, "blue", 0)),
    "already at 0": (seen("green", track("blue", "1.0.0", replicas=0), track("green", "1.1.0"), switched=900),
                     None),
    "not serving the version (rolled back)": (seen("blue", BLUE_1, track("green", "1.1.0"), switched=900), None),
    "cluster unreachable": (seen(None, reachable=False), None),
}


@pytest.mark.parametrize("observed, expected", SCALE_CASES.values(), ids=SCALE_CASES.keys())
def test_the_old_color_is_scaled_down_after_the_delay(observed: BlueGreenObservation, expected: Scale | None) -> None:
    assert steps.scale_down("billing", observed, "1.1.0", 600, NOW) == expected


CLEANUP_CASES = {
    "succeeded, delay not over: the old color stays for a switch back": (
        seen("green", BLUE_1, track("green", "1.1.0"), switched=10), True, None),
    "succeeded, delay over": (seen("green", BLUE_1, track("green", "1.1.0"), switched=600), True,
                              Cleanup("billing", IID)),
    "rolled back: at once": (seen("blue", BLUE_1, track("green", "1.1.0"), switched=10), False,
                             Cleanup("billing", IID)),
    "cluster unreachable: later": (seen(None, reachable=False), False, None),
}


@pytest.mark.parametrize("observed, keep_old, expected", CLEANUP_CASES.values(), ids=CLEANUP_CASES.keys())
def test_cleanup_is_asked_when_due(observed: BlueGreenObservation, keep_old: bool, expected: Cleanup | None) -> None:
    assert steps.cleanup("billing", observed, keep_old, 600, NOW) == expected


# --- traffic canary ---------------------------------------------------------------------------------------------


def canary_seen(stable: str = "1.0.0", canary: Track | None = None, weight: int = 0, adopted: bool = True,
                stable_ready: bool = True, reachable: bool = True) -> CanaryObservation:
    return CanaryObservation(IID, "billing", "billing", Track("billing", stable, 2, 2 if stable_ready else 0,
                                                                stable_ready),
                             canary, 100 - weight, weight, adopted, reachable=reachable,
                             message="" if reachable else "cluster eu-1 unreachable")


def canary_track(version: str, ready: bool = True, replicas: int = 2, failed: str | None = None) -> Track:
    return Track("billing-canary", version, replicas, replicas if ready else 0, ready, failed, managed=True)


CANARY_CASES = {
    "not adopted: adopt first": (canary_seen(adopted=False), 10, False, steps.Next(Adopt("billing", IID, "r1"))),
    "nothing staged: stage the canary at the version": (
        canary_seen(), 10, False, steps.Next(Stage("billing", IID, "1.1.0", "r1", "1.0.0"))),
    "a canary of another version: stage it again": (
        canary_seen(canary=canary_track("0.9.0")), 10, False, steps.Next(Stage("billing", IID, "1.1.0", "r1",
                                                                               "1.0.0"))),
    "staged, not ready: wait, no weight yet": (canary_seen(canary=canary_track("1.1.0", ready=False)), 10, False,
                                               steps.Next()),
    "never ready: failed": (canary_seen(canary=canary_track("1.1.0", ready=False, failed="ProgressDeadlineExceeded")),
                            10, False, steps.Next(failed="x")),
    "scaled to 0: scale it up": (canary_seen(canary=canary_track("1.1.0", ready=False, replicas=0)), 10, False,
                                 steps.Next(Scale("billing", IID, "canary", None))),
    "ready, smoke tests first": (canary_seen(canary=canary_track("1.1.0")), 10, True, steps.Next(smoke=True)),
    "ready: the first weight": (canary_seen(canary=canary_track("1.1.0")), 10, False,
                                steps.Next(SetWeight("billing", IID, 10))),
    "at the step's weight: judge it": (canary_seen(canary=canary_track("1.1.0"), weight=10), 10, False,
                                       steps.Next(serving=True)),
    "the next step: raise the weight": (canary_seen(canary=canary_track("1.1.0"), weight=10), 50, False,
                                        steps.Next(SetWeight("billing", IID, 50))),
    "past the last step: promote the stable Deployment": (canary_seen(canary=canary_track("1.1.0"), weight=100),
                                                          None, False, steps.Next(promote=True)),
    "promoted, not ready yet: wait with the canary taking the traffic": (
        canary_seen("1.1.0", canary_track("1.1.0"), weight=100, stable_ready=False), None, False, steps.Next()),
    "promoted and ready: the weights back to 100/0": (canary_seen("1.1.0", canary_track("1.1.0"), weight=100), None,
                                                      False, steps.Next(SetWeight("billing", IID, 0))),
    "promoted, weight 0: serving": (canary_seen("1.1.0", canary_track("1.1.0")), None, False,
                                    steps.Next(serving=True)),
    "cluster unreachable: wait": (canary_seen(reachable=False), 10, False, steps.Next()),
}


@pytest.mark.parametrize("observed, weight, smoke_first, expected", CANARY_CASES.values(), ids=CANARY_CASES.keys())
def test_the_next_canary_step(observed: CanaryObservation, weight: int | None, smoke_first: bool,
                              expected: steps.Next) -> None:
    found = steps.canary("billing", observed, "1.1.0", "r1", weight, smoke_first)
    assert (found.operation, found.smoke, found.promote, found.serving, found.failed is not None) == \
        (expected.operation, expected.smoke, expected.promote, expected.serving, expected.failed is not None)
    if not (found.serving or found.operation or found.smoke or found.promote):
        assert found.message or found.failed


CANARY_BACK_CASES = {
    "traffic on the canary: weight 0 at once": (canary_seen(canary=canary_track("1.1.0"), weight=10),
                                                steps.Next(SetWeight("billing", IID, 0))),
    "traffic back, the stable Deployment never changed: serving": (canary_seen(canary=canary_track("1.1.0")),
                                                                   steps.Next(serving=True)),
    "promoted already: the previous version in place": (canary_seen("1.1.0", canary_track("1.1.0")),
                                                        steps.Next(promote=True)),
    "a failed canary never blocks the way back": (
        canary_seen(canary=canary_track("1.1.0", ready=False, failed="ProgressDeadlineExceeded"), weight=50),
        steps.Next(SetWeight("billing", IID, 0))),
}


@pytest.mark.parametrize("observed, expected", CANARY_BACK_CASES.values(), ids=CANARY_BACK_CASES.keys())
def test_a_canary_rollback_takes_the_traffic_back_first(observed: CanaryObservation, expected: steps.Next) -> None:
    found = steps.canary_rollback("billing", observed, "1.0.0")
    assert (found.operation, found.promote, found.serving) == (expected.operation, expected.promote, expected.serving)


def test_a_settled_canary_is_cleaned_up_at_once() -> None:
    assert steps.cleanup("billing", canary_seen("1.1.0", canary_track("1.1.0")), True, 600, NOW) == \
        Cleanup("billing", IID)


# --- partition steps --------------------------------------------------------------------------------------------


def part(partition: int, step_ready: bool, steps_: tuple[int, ...] = (3, 2, 0),
         reachable: bool = True) -> PartitionObservation:
    return PartitionObservation(IID, partition, steps_, 4, 4 - partition if step_ready else 0, 4, step_ready,
                                reachable=reachable)


PARTITION_CASES = {
    "first step set with the version, its pods not ready: wait": (part(3, False), 0, steps.Next()),
    "first step ready: judge it": (part(3, True), 0, steps.Next(serving=True)),
    "the next step: lower the partition one step": (part(3, True), 1, steps.Next(SetPartition("billing", IID, 2))),
    "the last step: 0": (part(2, True), 2, steps.Next(SetPartition("billing", IID, 0))),
    "at 0: the StatefulSet's own readiness decides": (part(0, False), 2, steps.Next()),
    "steps not set yet (the change not made): wait": (part(4, False, ()), 0, steps.Next()),
    "steps that stop above 0 end at 0": (part(2, True, (3, 2)), 2, steps.Next(SetPartition("billing", IID, 0))),
    "a restart at step 1 finds the partition still at 3: lowers it": (part(3, False), 1,
                                                                      steps.Next(SetPartition("billing", IID, 2))),
    "cluster unreachable: wait": (part(0, False, (), reachable=False), 1, steps.Next()),
}


@pytest.mark.parametrize("observed, at_step, expected", PARTITION_CASES.values(), ids=PARTITION_CASES.keys())
def test_the_next_partition_step(observed: PartitionObservation, at_step: int, expected: steps.Next) -> None:
    found = steps.partition("billing", observed, at_step)
    assert (found.operation, found.serving) == (expected.operation, expected.serving)
    if not (found.serving or found.operation):
        assert found.message
