"""Leader election on a coordination.k8s.io Lease in the emulated API server, through the official client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.kube.client import connect_default
from reconciler.adapters.kube.lease import LeaderElector, ShardLeases
from tests.kube.emulator import Emulator, kubeconfig


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Emulator, Path]]:
    emulator = Emulator("home", controller=False).start()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig([emulator])))
    yield emulator, path
    emulator.stop()


def elector(path: Path, identity: str, duration: float = 2.0) -> LeaderElector:
    return LeaderElector(connect_default(str(path)), "grayops", "grayops", identity, duration=duration)


def test_only_one_candidate_leads(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b = elector(path, "a"), elector(path, "b")
    assert a.try_acquire_or_renew() and a.is_leader()
    assert not b.try_acquire_or_renew() and not b.is_leader()
    assert b.last_error == "held by a"
    assert a.try_acquire_or_renew()  # renewing keeps it
    lease = emulator.get(emulator.resource("leases", "coordination.k8s.io"), "grayops", "grayops")
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 0


def test_an_expired_lease_is_taken_over(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b = elector(path, "a", duration=1.0), elector(path, "b", duration=1.0)
    assert a.try_acquire_or_renew()
    time.sleep(1.3)  # a stopped renewing (crashed): its lease expires
    assert not a.is_leader()
    assert b.try_acquire_or_renew() and b.is_leader()
    lease = emulator.get(emulator.resource("leases", "coordination.k8s.io"), "grayops", "grayops")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_losing_the_lease_or_the_api_stops_leading_at_once(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a = elector(path, "a", duration=30.0)
    assert a.try_acquire_or_renew()
    leases = emulator.resource("leases", "coordination.k8s.io")
    lease = emulator.get(leases, "grayops", "grayops")
    lease["spec"]["holderIdentity"] = "intruder"
    emulator.replace(leases, "grayops", "grayops", lease)
    assert not a.try_acquire_or_renew() and not a.is_leader()

    b = elector(path, "b", duration=30.0)
    lease = emulator.get(leases, "grayops", "grayops")
    lease["spec"]["renewTime"] = "2000-01-01T00:00:00.000000Z"
    emulator.replace(leases, "grayops", "grayops", lease)
    assert b.try_acquire_or_renew()
    emulator.fail_next(10, 500)
    assert not b.try_acquire_or_renew() and not b.is_leader()  # cannot renew: not leader, even before expiry
    assert "500" in (b.last_error or "")


def test_a_clean_stop_hands_the_lease_over(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b = elector(path, "a"), elector(path, "b")
    assert a.try_acquire_or_renew()
    a.stop(release=True)  # a clean stop hands the lease over
    lease = emulator.get(emulator.resource("leases", "coordination.k8s.io"), "grayops", "grayops")
    assert lease["spec"].get("holderIdentity") is None
    assert b.try_acquire_or_renew()
    assert not a.try_acquire_or_renew()


# --- sharding: one Lease per shard --------------------------------------------------------------------------


def replica(path: Path, identity: str, shards: int = 3, duration: float = 2.0) -> ShardLeases:
    return ShardLeases(connect_default(str(path)), "grayops", "grayops", identity, shards, duration=duration)


def holders(emulator: Emulator, shards: int = 3) -> list[str | None]:
    leases = emulator.resource("leases", "coordination.k8s.io")
    return [emulator.get(leases, "grayops", f"grayops-{i}")["spec"].get("holderIdentity") for i in range(shards)]


def test_three_replicas_share_three_shards_one_each(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b, c = replica(path, "a"), replica(path, "b"), replica(path, "c")
    a.step()  # alone: a takes every shard
    assert a.snapshot() == {0, 1, 2} and holders(emulator) == ["a", "a", "a"]
    b.step()
    c.step()  # nothing free: b and c only make themselves seen
    assert b.snapshot() == c.snapshot() == set()
    a.step()  # a sees b and c: it keeps its fair share and stops acting for the rest at once
    assert a.snapshot() == {0}
    a.step()  # a round later it gives their Leases back
    b.step()
    c.step()
    assert a.snapshot() == {0} and len(b.snapshot()) == len(c.snapshot()) == 1
    assert a.snapshot() | b.snapshot() | c.snapshot() == {0, 1, 2}
    for one in (a, b, c):
        one.step()  # renewing keeps them
    assert sorted(filter(None, holders(emulator))) == ["a", "b", "c"]


def test_a_dead_replicas_shards_are_taken_within_the_lease_duration(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b, c = replica(path, "a", duration=1.0), replica(path, "b", duration=1.0), replica(path, "c", duration=1.0)
    for one in (a, b, c, a, a, b, c):
        one.step()
    assert sorted(filter(None, holders(emulator))) == ["a", "b", "c"]
    dead = c.snapshot()
    time.sleep(1.2)  # c stopped renewing (killed): its Lease expires
    assert c.snapshot() == set()  # and a process in c's place would have stopped acting for it by itself
    for one in (a, b):
        one.step()
    assert dead <= a.snapshot() | b.snapshot()
    assert a.snapshot() | b.snapshot() == {0, 1, 2} and not a.snapshot() & b.snapshot()
    assert "c" not in holders(emulator)


def test_a_replica_that_lost_a_shard_stops_acting_for_it_at_once(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a = replica(path, "a", shards=2, duration=30.0)
    a.step()
    assert a.holds(0) and a.holds(1)
    leases = emulator.resource("leases", "coordination.k8s.io")
    lease = emulator.get(leases, "grayops", "grayops-1")
    lease["spec"].update(holderIdentity="intruder", renewTime=lease["spec"]["renewTime"])
    emulator.replace(leases, "grayops", "grayops-1", lease)
    a.step()  # another holder seen: shard 1 dropped, shard 0 renewed
    assert a.holds(0) and not a.holds(1)
    emulator.fail_next(10, 500)
    a.step()  # the API fails: nothing can be renewed, nothing is held any more
    assert a.snapshot() == set() and not a.holds(0)


def test_a_shard_not_renewed_in_time_is_not_held(server: tuple[Emulator, Path]) -> None:
    _, path = server
    a = replica(path, "a", shards=1, duration=1.0)
    a.step()
    assert a.holds(0)
    time.sleep(0.85)  # past 0.8 x the duration without a renewal: the fence closes before the Lease expires
    assert not a.holds(0) and a.snapshot() == set()


def test_a_clean_stop_hands_every_shard_over(server: tuple[Emulator, Path]) -> None:
    emulator, path = server
    a, b = replica(path, "a"), replica(path, "b")
    a.step()
    a.stop(release=True)
    assert holders(emulator) == [None, None, None]
    b.step()
    assert b.snapshot() == {0, 1, 2}  # a's presence is gone too: b is alone


def test_replicas_started_with_another_number_of_shards_act_for_none(server: tuple[Emulator, Path]) -> None:
    _, path = server
    a, b = replica(path, "a", shards=3), replica(path, "b", shards=4)
    a.step()
    b.step()  # a plugin's shard of 4 is not its shard of 3: acting would share plugins with a
    assert a.snapshot() == {0, 1, 2} and b.snapshot() == set()
    assert "a runs with --shards 3, this replica with 4" in (b.last_error or "")
    a.stop(release=True)  # every replica of the old number stopped: the new number takes over
    b.step()
    assert b.snapshot() == {0, 1, 2, 3}
