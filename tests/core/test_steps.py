"""The blue-green step function by tables: from what the cluster reports of one instance, which operation is next
(README "Strategies"), when the old color is scaled down, and when a settled rollout's instance is cleaned up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from reconciler.core import steps
from reconciler.core.strategy import (
    Adopt,
    BlueGreenObservation,
    Cleanup,
    Color,
    Scale,
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
