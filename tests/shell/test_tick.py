"""The tick over a real git remote with a cluster driver and a notifier declared here: a transition is committed
before its effects run, notified after, and pushed; a plugin whose handling raises is held (paused, alerted once)
while the others go on (README "Architecture")."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.ports import DriverAdapter, NotifierAdapter
from reconciler.adapters.registry import default_registry
from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.model import Phase, RolloutState
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ClusterSpec, NotifierSettings, Plugin
from reconciler.core.status import load_status
from reconciler.shell import Reconciler
from tests.conftest import (
    SETTINGS_HEAD,
    FakeClock,
    Human,
    make_fleet_repo,
    plugin_yaml,
    remote_file,
    remote_status,
)

NOW = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: now}
spec:
  batches:
    - {name: canary, size: 1}
    - {name: all, size: 100%}
  instanceTimeout: 20s
"""
SETTINGS = SETTINGS_HEAD + """\
clusters:
  - {name: c1, driver: ticked}
  - {name: c2, driver: ticked}
metrics: {provider: sim}
notifiers: [{type: heard}]
"""


class TickedCluster(ClusterSpec):
    driver: Literal["ticked"]


class HeardSettings(NotifierSettings):
    type: Literal["heard"]


@dataclass
class World:
    """Clusters where a change is done at once, a notifier, and one log of what each was asked, in order. A plugin
    named in `raising` makes the driver raise when asked to observe or apply it."""

    repo: GitRepo
    versions: dict[str, str] = field(default_factory=dict)  # "plugin@instance" -> version
    raising: dict[str, Literal["observe", "apply"]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    on_apply: Callable[[], None] = lambda: None  # called as each change is asked

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        self._maybe_raise(plugin, "observe")
        name = plugin.metadata.name
        return {ref.id: InstanceObservation(self.versions.get(f"{name}@{ref.id}"), True) for ref in instances}

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        self._maybe_raise(plugin, "apply")
        self.on_apply()
        name = plugin.metadata.name
        text = self.repo.read(f"status/{name}.yaml")
        recorded = load_status(text) if text else None
        batches = [b.name for b in recorded.batches] if recorded else []
        self.log.append(f"apply {name}: the clone records {recorded and recorded.phase.value} {batches}")
        for change in changes:
            self.versions[f"{name}@{change.instance}"] = change.version
        return {}

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        return CheckResult(instance.id, stage, version, True)

    def notify(self, event: Event) -> None:
        self.events.append(event)
        if event.kind == "transition":
            self.log.append(f"notify {event.plugin}: {event.message}")

    def _maybe_raise(self, plugin: Plugin, step: str) -> None:
        if self.raising.get(plugin.metadata.name) == step:
            raise RuntimeError(f"the driver cannot {step} {plugin.metadata.name}")

    def alerts(self, kind: str) -> list[Event]:
        return [event for event in self.events if event.kind == kind]


def running(human: Human, tmp_path: Path, plugins: Mapping[str, str]) -> tuple[Reconciler, World]:
    human.commit("fleet", {"grayops.yaml": SETTINGS, "policies/now.yaml": NOW,
                           **{f"plugins/{name}.yaml": plugin_yaml(name, version, policy="now")
                              for name, version in plugins.items()}})
    workdir = tmp_path / "work"
    repo = GitRepo(str(human.remote), workdir)
    world = World(repo)
    registry = default_registry().with_(
        DriverAdapter("ticked", TickedCluster, lambda clusters, context: world),
        NotifierAdapter("heard", HeardSettings, lambda settings, context: world))
    reconciler = Reconciler(repo, workdir, builtin_policies(), clock=FakeClock(), poll_interval=0.0,
                            registry=registry)
    reconciler.start()
    return reconciler, world


def phase(reconciler: Reconciler, plugin: str) -> Phase | None:
    state: RolloutState | None = reconciler.states.get(plugin)
    return state.phase if state else None


def test_a_transition_is_committed_before_its_effects_run_notified_after_and_pushed(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, {"billing": "1.0.0"})
    report = reconciler.tick()
    assert report.transitions == 2
    assert world.log == [
        "apply billing: the clone records Progressing ['canary']",  # committed before the driver was asked
        "notify billing: rollout of billing (none) -> 1.0.0 begins: 2 instances, policy now, requested by Alice Ops",
        "notify billing: batch canary started: 1 instance(s)",
    ]
    pushed = remote_status(human, "billing")
    assert pushed is not None and pushed["phase"] == "Progressing"  # and pushed in the same tick


def test_a_plugin_whose_driver_raises_is_held_and_the_others_go_on(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, {"billing": "1.0.0", "auth": "2.0.0"})
    world.raising["auth"] = "apply"
    for _ in range(8):
        reconciler.tick()
    assert phase(reconciler, "billing") is Phase.SUCCEEDED
    auth = reconciler.states["auth"]
    assert auth.phase is Phase.PAUSED
    assert "internal error while acting: RuntimeError: the driver cannot apply auth" in auth.reason
    [alert] = world.alerts("internal_error")
    assert alert.plugin == "auth" and "the driver cannot apply auth" in alert.message
    assert "paused: true" in (remote_file(human, "plugins/auth.yaml") or "")  # recorded as any pause grayops makes
    assert "auth: internal error while acting" in caplog.text


def test_a_plugin_that_keeps_failing_before_it_can_be_paused_is_alerted_once(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, {"billing": "1.0.0", "auth": "2.0.0"})
    world.raising["auth"] = "observe"
    for _ in range(8):
        reconciler.tick()
    assert phase(reconciler, "billing") is Phase.SUCCEEDED
    assert "auth" not in reconciler.states  # never observed, never decided: nothing claimed about it
    [alert] = world.alerts("internal_error")
    assert alert.plugin == "auth" and "internal error while observing: RuntimeError" in alert.message
    world.raising.clear()
    for _ in range(4):
        reconciler.tick()
    auth = reconciler.states["auth"]  # observed again: the hold it was given pauses it
    assert auth.phase is Phase.PAUSED and "internal error while observing" in auth.reason


def test_a_dependency_that_cannot_be_observed_counts_as_not_ready(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": SETTINGS, "policies/now.yaml": NOW,
                           "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", policy="now"),
                           "plugins/billing.yaml": plugin_yaml("billing", "1.0.0", policy="now",
                                                               extra="  dependsOn: [auth]\n")})
    workdir = tmp_path / "work"
    repo = GitRepo(str(human.remote), workdir)
    world = World(repo, raising={"auth": "observe"})
    registry = default_registry().with_(
        DriverAdapter("ticked", TickedCluster, lambda clusters, context: world),
        NotifierAdapter("heard", HeardSettings, lambda settings, context: world))
    reconciler = Reconciler(repo, workdir, builtin_policies(), clock=FakeClock(), poll_interval=0.0,
                            registry=registry)
    reconciler.start()
    for _ in range(4):
        reconciler.tick()
    assert not any(key.startswith("billing@") for key in world.versions)  # billing waits for auth
    assert reconciler.states["billing"].waiting_for is not None


def test_a_wake_during_a_tick_leaves_its_push_to_the_next_tick_once(tmp_path: Path) -> None:
    """A push webhook (or a command) wakes the reconciler mid-tick: that tick does not push, so the next one starts
    at once and fetches the new commit; the next one pushes both ticks' commits, even when woken again."""
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, {"billing": "1.0.0"})

    def pushed_and_woken() -> None:  # a human's push arrives while the tick acts, and its webhook wakes us
        if not remote_file(human, "README.md"):
            human.commit("a readme", {"README.md": "the fleet\n"})
        reconciler.wake.set()

    world.on_apply = pushed_and_woken
    reconciler.tick()
    assert remote_file(human, "status/billing.yaml") is None and reconciler.repo.unpushed() > 0
    assert reconciler.wake.is_set()  # the loop starts the next tick at once
    reconciler.tick()  # woken again during this one: it pushes all the same
    assert reconciler.repo.unpushed() == 0
    assert (remote_status(human, "billing") or {}).get("phase") == "Progressing"


def test_a_wake_with_nothing_new_on_the_remote_does_not_hold_the_push_back(tmp_path: Path) -> None:
    """The remote watcher sees our own pushes too: woken while the remote holds nothing we have not fetched, a
    tick pushes all the same (README "Sizing": pushed as it goes, each tick)."""
    human = make_fleet_repo(tmp_path)
    reconciler, world = running(human, tmp_path, {"billing": "1.0.0"})
    world.on_apply = reconciler.wake.set  # as our last push, seen on the remote, would
    reconciler.tick()
    assert reconciler.repo.unpushed() == 0
    assert (remote_status(human, "billing") or {}).get("phase") == "Progressing"
