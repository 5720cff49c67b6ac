"""The tick of a sharded replica (README "Sharding") over a real git remote: it acts only for the plugins of the
shards it holds, commits nothing for a shard whose lease it lost since the tick began (the fence), and goes on
from what the last holder pushed when it takes a shard over."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.ports import DriverAdapter, NotifierAdapter
from reconciler.adapters.registry import default_registry
from reconciler.core.shards import shard_of
from reconciler.shell import Reconciler
from tests.conftest import FakeClock, Human, git, make_fleet_repo, plugin_yaml, remote_file
from tests.shell.test_tick import NOW, SETTINGS, HeardSettings, TickedCluster, World

BILLING, AUTH = shard_of("billing", 2), shard_of("auth", 2)  # 1 and 0


@dataclass
class Held:
    """The shards a replica holds, as the Lease adapter reports them: `lost` ones were held when the tick took
    its snapshot and are no longer (a renewal failed, another holder was seen)."""

    shards: set[int]
    lost: set[int] = field(default_factory=set)

    def snapshot(self) -> frozenset[int]:
        return frozenset(self.shards)

    def shard_of(self, plugin: str) -> int:
        return shard_of(plugin, 2)

    def holds(self, shard: int) -> bool:
        return shard in self.shards and shard not in self.lost


def replica(human: Human, tmp_path: Path, name: str, held: Held, world: World | None = None
            ) -> tuple[Reconciler, World]:
    workdir = tmp_path / name
    repo = GitRepo(str(human.remote), workdir)
    world = world or World(repo)
    registry = default_registry().with_(
        DriverAdapter("ticked", TickedCluster, lambda clusters, context: world),
        NotifierAdapter("heard", HeardSettings, lambda settings, context: world))
    reconciler = Reconciler(repo, workdir, builtin_policies(), clock=FakeClock(), poll_interval=0.0,
                            registry=registry, scope=held)
    reconciler.start()
    return reconciler, world


def fleet(human: Human) -> None:
    assert BILLING != AUTH
    human.commit("fleet", {"grayops.yaml": SETTINGS, "policies/now.yaml": NOW,
                           "plugins/billing.yaml": plugin_yaml("billing", "1.0.0", policy="now"),
                           "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", policy="now")})


def status_subjects(human: Human, plugin: str) -> list[str]:
    return git(human.remote, "log", "--reverse", "--format=%s", "main", "--", f"status/{plugin}.yaml").splitlines()


def test_a_replica_acts_only_for_the_plugins_of_its_shards(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    fleet(human)
    reconciler, world = replica(human, tmp_path, "a", Held({BILLING}))
    reconciler.tick()
    assert {key.split("@")[0] for key in world.versions} == {"billing"}
    assert remote_file(human, "status/billing.yaml") is not None
    assert remote_file(human, "status/auth.yaml") is None  # another replica's: not touched


def test_a_shard_lost_during_the_tick_gets_no_commit(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    fleet(human)
    held = Held({BILLING, AUTH}, lost={BILLING})  # held when the tick began, lost before its commit
    reconciler, world = replica(human, tmp_path, "a", held)
    reconciler.tick()
    assert remote_file(human, "status/billing.yaml") is None and reconciler.repo.read("status/billing.yaml") is None
    assert not any(key.startswith("billing@") for key in world.versions)  # nothing acted on without a record
    assert remote_file(human, "status/auth.yaml") is not None  # the shard still held goes on


def test_a_shard_taken_over_goes_on_from_what_its_last_holder_pushed(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    fleet(human)
    clusters = World(GitRepo(str(human.remote), tmp_path / "a"))  # the clusters both replicas act on
    held_by_b = Held({AUTH})
    b, _ = replica(human, tmp_path, "b", held_by_b, clusters)  # started before billing had any status
    a, _ = replica(human, tmp_path, "a", Held({BILLING}), clusters)
    a.tick()  # billing: rollout begins, canary started (committed, pushed)
    b.tick()
    assert b.states["billing"].batches[0].name == "canary"  # b follows what a pushed, without acting on it
    a.tick()  # a goes on: b saw less than the remote has now
    done_by_a = status_subjects(human, "billing")
    assert len(done_by_a) == 2, done_by_a  # a commit per plugin per tick

    held_by_b.shards.add(BILLING)  # a died; b takes billing's shard over
    for _ in range(4):
        b.tick()
    subjects = status_subjects(human, "billing")
    assert subjects[:len(done_by_a)] == done_by_a and len(subjects) > len(done_by_a)
    assert len(set(subjects)) == len(subjects), subjects  # nothing a did is done again
    status = yaml.safe_load(remote_file(human, "status/billing.yaml") or "{}")
    assert status["phase"] == "Succeeded"
