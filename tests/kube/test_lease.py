"""Leader election on a coordination.k8s.io Lease in the emulated API server, through the official client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from reconciler.adapters.kube.client import connect_default
from reconciler.adapters.kube.lease import LeaderElector
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
