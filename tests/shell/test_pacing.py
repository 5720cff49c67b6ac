"""Pacing (README "Sizing"): a tick goes through plugins until its time budget is spent, the next one goes on from
there; a plugin whose desired state changed goes first, so a human's pause is obeyed within the next tick however
many plugins wait; each tick's commits are pushed at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.core.effects import Desired
from reconciler.core.model import Phase
from reconciler.shell.pacing import Pacing
from reconciler.shell.tick import dependencies_first
from tests.conftest import make_fleet_repo, plugin_yaml, remote_status
from tests.core.test_engine import desired
from tests.shell.test_tick import phase, running


def fleet(*names: str, depends: dict[str, tuple[str, ...]] | None = None) -> dict[str, Desired]:
    return {name: replace(desired("1.0.0"), plugin=name, depends_on=(depends or {}).get(name, ()))
            for name in names}


class Ticking:
    """A clock that moves one second each time it is read."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        self.at += 1.0
        return self.at


def one_turn(pacing: Pacing, wanted: dict[str, Desired]) -> list[str]:
    return list(pacing.turn(pacing.order(wanted, dependencies_first)))


@pytest.mark.parametrize(("budget", "taken"), [
    (100.0, ["a", "b", "c", "d"]),  # a small fleet: all of it every tick
    (1.5, ["a", "b"]),  # the clock moves 1 s per reading: the budget is spent after two
    (0.0, ["a"]),  # at least one plugin, whatever the budget
])
def test_a_tick_takes_plugins_until_its_budget_is_spent(budget: float, taken: list[str]) -> None:
    pacing = Pacing(budget, clock=Ticking())
    assert one_turn(pacing, fleet("a", "b", "c", "d")) == taken
    assert pacing.left == 4 - len(taken)


def test_the_next_tick_goes_on_with_the_plugins_waiting_longest() -> None:
    pacing, wanted = Pacing(0.0), fleet("a", "b", "c")
    turns = [one_turn(pacing, wanted) for _ in range(4)]
    assert turns == [["a"], ["b"], ["c"], ["a"]]


def test_a_plugin_whose_desired_state_changed_goes_first() -> None:
    pacing, wanted = Pacing(0.0), fleet("a", "b", "c", "d")
    assert one_turn(pacing, wanted) == ["a"]
    paused = {**wanted, "d": replace(wanted["d"], paused=True)}
    assert one_turn(pacing, paused) == ["d"]  # before b and c, which waited longer
    assert one_turn(pacing, paused) == ["b"]  # then on as before


def test_dependencies_go_just_before_the_plugin_that_needs_them() -> None:
    pacing = Pacing(100.0)
    wanted = fleet("a", "b", "c", depends={"a": ("c",)})
    assert one_turn(pacing, wanted) == ["c", "a", "b"]
    changed = {**wanted, "a": replace(wanted["a"], version="2.0.0")}
    assert one_turn(pacing, changed) == ["c", "a", "b"]  # a goes first, its dependency right before it


@pytest.fixture
def plugins() -> Iterator[dict[str, str]]:
    yield {name: "1.0.0" for name in ("p1", "p2", "p3", "p4")}


def test_a_tick_over_budget_records_and_pushes_what_it_went_through_and_the_next_goes_on(
        tmp_path: Path, plugins: dict[str, str]) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, plugins)
    reconciler.pacing = Pacing(budget=0.0)  # one plugin per tick
    reconciler.tick()
    assert [name for name in plugins if remote_status(human, name)] == ["p1"]  # recorded and pushed
    assert {key.partition("@")[0] for key in world.versions} == {"p1"}  # and acted on
    reconciler.tick()
    assert [name for name in plugins if remote_status(human, name)] == ["p1", "p2"]


def test_a_pause_is_obeyed_in_the_next_tick_before_the_plugins_still_waiting(
        tmp_path: Path, plugins: dict[str, str]) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, _ = running(human, tmp_path, plugins)
    reconciler.pacing = Pacing(budget=0.0)
    reconciler.tick()
    human.pull()
    human.commit("pause p4", {"plugins/p4.yaml": plugin_yaml("p4", "1.0.0", policy="now", extra="  paused: true\n")})
    reconciler.tick()
    assert phase(reconciler, "p4") is Phase.PAUSED
    assert (remote_status(human, "p4") or {}).get("phase") == "Paused"
    assert remote_status(human, "p2") is None and remote_status(human, "p3") is None  # still waiting their turn


def test_the_commit_that_asked_stays_known_across_ticks_of_status_commits_and_follows_a_human_change(
        tmp_path: Path, plugins: dict[str, str]) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, _ = running(human, tmp_path, plugins)
    asked = human.log("-1", "--format=%H").strip()
    for _ in range(3):  # grayops' own status commits move HEAD each tick
        reconciler.tick()
    assert {reconciler.states[name].desired_commit for name in plugins} == {asked}
    human.pull()
    bumped = human.commit("p3 1.1.0", {"plugins/p3.yaml": plugin_yaml("p3", "1.1.0", policy="now")})
    reconciler.tick()
    assert reconciler.states["p3"].desired_commit == bumped
    assert {reconciler.states[name].desired_commit for name in ("p1", "p2", "p4")} == {asked}


def test_a_tick_that_obeys_a_human_change_pushes_it_even_when_woken_meanwhile(
        tmp_path: Path, plugins: dict[str, str]) -> None:
    """A wake during a tick (our own last push seen on the remote, a webhook) leaves that tick's push to the next
    one, but not the push of a pause: it is on the remote at the end of the tick that obeyed it."""
    human = make_fleet_repo(tmp_path)
    reconciler, _ = running(human, tmp_path, plugins)
    waking: list[bool] = []

    def clock() -> float:  # read while the tick goes through plugins
        if waking:
            reconciler.wake.set()
        return time.monotonic()

    reconciler.pacing = Pacing(budget=0.0, clock=clock)
    reconciler.tick()
    human.pull()
    human.commit("pause p4", {"plugins/p4.yaml": plugin_yaml("p4", "1.0.0", policy="now", extra="  paused: true\n")})
    waking.append(True)
    reconciler.tick()
    assert reconciler.wake.is_set()
    assert (remote_status(human, "p4") or {}).get("phase") == "Paused"
