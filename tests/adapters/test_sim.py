"""The sim fleet as a cluster driver and the sim metrics source, driven by a fake clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from reconciler.adapters.sim import STATE_FILE, SimFleet, SimMetrics
from reconciler.core.effects import InstanceObservation, SetVersion
from reconciler.core.model import Measurement
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Check, ClusterSpec, MetricSpec, Plugin, SimFault, SimSettings
from tests.conftest import FakeClock

UPGRADE = 10.0


CLUSTERS = [
    ClusterSpec(name="canary-1", labels={"tier": "canary", "region": "eu"}),
    ClusterSpec(name="prod-1", labels={"tier": "prod", "region": "eu"}),
    ClusterSpec(name="prod-2", labels={"tier": "prod", "region": "us"}),
]
PLUGIN = Plugin.model_validate({
    "apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"}, "spec": {"version": "1.0.0"},
})


def ref(cluster: str, namespace: str = "plugins") -> InstanceRef:
    labels = next((c.labels for c in CLUSTERS if c.name == cluster), {})
    return InstanceRef(cluster, namespace, tuple(sorted(labels.items())))


ALL = [ref(c.name) for c in CLUSTERS]


def change(instance: InstanceRef, version: str) -> SetVersion:
    return SetVersion("billing", instance.id, version, "r1", None)


def settings(*faults: SimFault) -> SimSettings:
    return SimSettings(upgrade_seconds=UPGRADE, faults=list(faults))


def make(tmp_path: Path, *faults: SimFault) -> tuple[SimFleet, FakeClock]:
    clock = FakeClock()
    return SimFleet(tmp_path, settings(*faults), CLUSTERS, clock), clock


def upgraded(fleet: SimFleet, clock: FakeClock, version: str, instances: Sequence[InstanceRef] = ALL) -> None:
    assert fleet.apply(PLUGIN, [change(i, version) for i in instances]) == {}
    clock.advance(UPGRADE)


# --- observe and apply --------------------------------------------------------------------------------------


class TestObserve:
    def test_a_new_instance_runs_nothing_and_is_reachable(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)
        obs = fleet.observe(PLUGIN, ALL)
        assert set(obs) == {i.id for i in ALL}
        assert all(o == InstanceObservation(version=None, ready=False) for o in obs.values())
        assert all(o.reachable and o.failed is None for o in obs.values())

    @pytest.mark.parametrize(("elapsed", "ready"), [
        pytest.param(0.0, False, id="just-applied"),
        pytest.param(UPGRADE - 0.1, False, id="almost-done"),
        pytest.param(UPGRADE, True, id="exactly-upgrade-seconds"),
        pytest.param(UPGRADE * 100, True, id="long-after"),
    ])
    def test_ready_after_upgrade_seconds(self, tmp_path: Path, elapsed: float, ready: bool) -> None:
        fleet, clock = make(tmp_path)
        assert fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")]) == {}
        clock.advance(elapsed)
        obs = fleet.observe(PLUGIN, ALL)[ALL[0].id]
        assert (obs.version, obs.ready, obs.failed) == ("1.0.0", ready, None)

    def test_an_upgrade_reports_the_new_version_while_not_ready(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        upgraded(fleet, clock, "1.0.0")
        fleet.apply(PLUGIN, [change(ALL[0], "1.1.0")])
        obs = fleet.observe(PLUGIN, ALL)
        assert (obs[ALL[0].id].version, obs[ALL[0].id].ready) == ("1.1.0", False)
        assert "1.0.0" in obs[ALL[0].id].message
        assert (obs[ALL[1].id].version, obs[ALL[1].id].ready) == ("1.0.0", True)

    @pytest.mark.parametrize(("selector", "failing"), [
        pytest.param({}, {"canary-1", "prod-1", "prod-2"}, id="everywhere"),
        pytest.param({"tier": "canary"}, {"canary-1"}, id="one-label"),
        pytest.param({"tier": "prod", "region": "us"}, {"prod-2"}, id="all-labels-must-match"),
        pytest.param({"tier": "staging"}, set(), id="no-cluster"),
    ])
    def test_fail_readiness_only_on_selected_clusters(
            self, tmp_path: Path, selector: dict[str, str], failing: set[str]) -> None:
        fleet, clock = make(tmp_path, SimFault(version="2.0.0", selector=selector, fail_readiness=True))
        fleet.apply(PLUGIN, [change(i, "2.0.0") for i in ALL])
        assert not any(o.failed for o in fleet.observe(PLUGIN, ALL).values())  # still upgrading
        clock.advance(UPGRADE)
        obs = fleet.observe(PLUGIN, ALL)
        for instance in ALL:
            got = obs[instance.id]
            if instance.cluster in failing:
                assert (got.version, got.ready) == ("2.0.0", False)
                assert got.failed == "readiness probe failed (sim fault for 2.0.0)"
            else:
                assert (got.version, got.ready, got.failed) == ("2.0.0", True, None)

    def test_a_fault_for_another_version_does_nothing(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path, SimFault(version="2.0.0", fail_readiness=True))
        upgraded(fleet, clock, "1.0.0")
        assert all(o.ready for o in fleet.observe(PLUGIN, ALL).values())

    def test_an_unknown_cluster_is_unreachable(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)
        obs = fleet.observe(PLUGIN, [InstanceRef("gone", "plugins")])["gone/plugins"]
        assert (obs.version, obs.ready, obs.reachable) == (None, False, False)
        assert "gone" in obs.message

    def test_ten_thousand_instances(self, tmp_path: Path) -> None:
        clusters = [ClusterSpec(name=f"c{i}", labels={"tier": "prod"}) for i in range(1000)]
        refs = [InstanceRef(c.name, f"ns{j}") for c in clusters for j in range(10)]
        clock = FakeClock()
        fleet = SimFleet(tmp_path, settings(), clusters, clock)
        assert fleet.apply(PLUGIN, [change(r, "1.0.0") for r in refs[:1000]]) == {}
        clock.advance(UPGRADE)
        obs = fleet.observe(PLUGIN, refs)
        assert len(obs) == 10_000
        assert sum(o.ready for o in obs.values()) == 1000
        assert sum(o.version is None for o in obs.values()) == 9000


class TestApply:
    def test_same_version_again_keeps_the_start_time(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")])
        clock.advance(UPGRADE - 1)
        assert fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")]) == {}
        clock.advance(1)
        assert fleet.observe(PLUGIN, ALL)[ALL[0].id].ready

    def test_unknown_cluster_is_an_error_naming_it_and_the_rest_is_applied(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)
        errors = fleet.apply(PLUGIN, [change(InstanceRef("gone", "plugins"), "1.0.0"), change(ALL[0], "1.0.0")])
        assert set(errors) == {"gone/plugins"}
        assert "gone" in errors["gone/plugins"]
        assert fleet.versions("billing") == {ALL[0].id: "1.0.0"}

    def test_snapshot_and_versions(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        upgraded(fleet, clock, "1.0.0", ALL[:2])
        assert fleet.snapshot() == {"billing": {ALL[0].id: "1.0.0", ALL[1].id: "1.0.0"}}
        assert fleet.versions("billing") == {ALL[0].id: "1.0.0", ALL[1].id: "1.0.0"}
        assert fleet.versions("other") == {}


class TestPersistence:
    def test_a_new_fleet_on_the_same_workdir_sees_the_same_state(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")])
        clock.advance(UPGRADE / 2)
        fleet.apply(PLUGIN, [change(ALL[1], "1.0.0")])
        clock.advance(UPGRADE / 2)
        again = SimFleet(tmp_path, settings(), CLUSTERS, clock)
        assert again.snapshot() == fleet.snapshot()
        obs = again.observe(PLUGIN, ALL)
        assert [obs[i.id].ready for i in ALL] == [True, False, False]  # start times survived too

    def test_the_file_is_json_written_without_leftovers(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)
        fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")])
        doc = json.loads((tmp_path / STATE_FILE).read_text())
        assert doc["plugins"]["billing"][ALL[0].id]["target"] == "1.0.0"
        assert sorted(p.name for p in tmp_path.iterdir()) == [STATE_FILE]

    def test_the_file_holds_every_plugin_as_json_dumps_writes_it(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        other = PLUGIN.model_copy(update={"metadata": PLUGIN.metadata.model_copy(update={"name": "audit"})})
        fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")])
        fleet.apply(other, [change(ALL[1], "2.0.0")])
        clock.advance(UPGRADE)
        fleet.apply(PLUGIN, [change(ALL[0], "1.1.0"), change(ALL[2], "1.1.0")])
        text = (tmp_path / STATE_FILE).read_text()
        assert text == json.dumps(json.loads(text), separators=(",", ":"), sort_keys=True)
        assert SimFleet(tmp_path, settings(), CLUSTERS, clock).snapshot() == {
            "billing": {ALL[0].id: "1.1.0", ALL[2].id: "1.1.0"}, "audit": {ALL[1].id: "2.0.0"}}
        again = SimFleet(tmp_path, settings(), CLUSTERS, clock)  # restarted: a change keeps what it read
        again.apply(other, [change(ALL[0], "2.0.0")])
        assert SimFleet(tmp_path, settings(), CLUSTERS, clock).snapshot() == {
            "billing": {ALL[0].id: "1.1.0", ALL[2].id: "1.1.0"}, "audit": {ALL[1].id: "2.0.0", ALL[0].id: "2.0.0"}}

    def test_a_change_that_could_not_be_saved_is_not_made_nor_saved_later(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        other = PLUGIN.model_copy(update={"metadata": PLUGIN.metadata.model_copy(update={"name": "audit"})})
        assert fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")]) == {}
        (tmp_path / STATE_FILE).unlink()
        (tmp_path / STATE_FILE).mkdir()  # in the way of the file: saving fails
        (tmp_path / STATE_FILE / "x").touch()
        failed = fleet.apply(PLUGIN, [change(ALL[1], "1.0.0")])
        assert list(failed) == [ALL[1].id] and "could not save sim fleet state" in failed[ALL[1].id]
        assert fleet.versions("billing") == {ALL[0].id: "1.0.0"}
        (tmp_path / STATE_FILE / "x").unlink()
        (tmp_path / STATE_FILE).rmdir()
        assert fleet.apply(other, [change(ALL[2], "2.0.0")]) == {}
        assert SimFleet(tmp_path, settings(), CLUSTERS, clock).snapshot() == {
            "billing": {ALL[0].id: "1.0.0"}, "audit": {ALL[2].id: "2.0.0"}}

    @pytest.mark.parametrize("content", [
        pytest.param(b"{not json", id="not-json"),
        pytest.param(b'["a list"]', id="wrong-shape"),
        pytest.param(b'{"format": 1, "plugins": {"billing": {"a/b": {"target": 3}}}}', id="bad-entry"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
    ])
    def test_a_corrupt_file_starts_empty_and_is_kept_aside(self, tmp_path: Path, content: bytes) -> None:
        (tmp_path / STATE_FILE).write_bytes(content)
        fleet, _ = make(tmp_path)
        assert fleet.snapshot() == {}
        assert (tmp_path / f"{STATE_FILE}.corrupt").read_bytes() == content
        assert fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")]) == {}
        assert SimFleet(tmp_path, settings(), CLUSTERS, FakeClock()).versions("billing") == {ALL[0].id: "1.0.0"}

    def test_a_missing_workdir_is_created_on_first_apply(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path / "deep" / "dir")
        assert fleet.apply(PLUGIN, [change(ALL[0], "1.0.0")]) == {}
        assert (tmp_path / "deep" / "dir" / STATE_FILE).exists()


# --- checks -------------------------------------------------------------------------------------------------


VERIFY = [
    {"type": "http", "path": "/health", "status": 200},
    {"type": "exec", "command": ["redis-cli", "ping"], "expect": "PONG"},
    {"type": "metric", "name": "error_rate", "max": 0.05},
]


CHECKS: list[Check] = TypeAdapter(list[Check]).validate_python(VERIFY)


class TestCheck:
    @pytest.mark.parametrize(("apply_version", "elapsed", "fault", "ok", "says"), [
        pytest.param("2.0.0", UPGRADE, None, True, "answered 'PONG'", id="ready-on-version"),
        pytest.param("2.0.0", 1.0, None, False, "not ready", id="still-upgrading"),
        pytest.param("1.0.0", UPGRADE, None, False, "runs 1.0.0, not 2.0.0", id="other-version"),
        pytest.param(None, UPGRADE, None, False, "runs nothing", id="not-installed"),
        pytest.param("2.0.0", UPGRADE, SimFault(version="2.0.0", fail_checks=True), False,
                     "http /health answered 500", id="fail-checks-fault"),
        pytest.param("2.0.0", UPGRADE, SimFault(version="2.0.0", fail_readiness=True), False,
                     "readiness probe failed", id="fail-readiness-fault"),
        pytest.param("2.0.0", UPGRADE, SimFault(version="2.0.0", selector={"tier": "prod"}, fail_checks=True),
                     True, "passed", id="fault-elsewhere"),
    ])
    def test_verify(self, tmp_path: Path, apply_version: str | None, elapsed: float, fault: SimFault | None,
                    ok: bool, says: str) -> None:
        fleet, clock = make(tmp_path, *([fault] if fault else []))
        if apply_version:
            fleet.apply(PLUGIN, [change(ALL[0], apply_version)])
        clock.advance(elapsed)
        result = fleet.check(PLUGIN, ALL[0], "verify", "2.0.0", CHECKS)
        assert (result.instance, result.stage, result.version, result.ok) == (ALL[0].id, "verify", "2.0.0", ok)
        assert says in result.message

    def test_pre_checks_look_at_what_runs_now(self, tmp_path: Path) -> None:
        fault = SimFault(version="1.1.0", fail_checks=True)
        fleet, clock = make(tmp_path, fault)
        assert fleet.check(PLUGIN, ALL[0], "pre", "2.0.0", CHECKS).ok  # nothing installed yet
        upgraded(fleet, clock, "1.0.0", ALL[:1])
        assert fleet.check(PLUGIN, ALL[0], "pre", "2.0.0", CHECKS).ok
        fleet.apply(PLUGIN, [change(ALL[0], "1.1.0")])
        assert not fleet.check(PLUGIN, ALL[0], "pre", "2.0.0", CHECKS).ok  # mid-upgrade
        clock.advance(UPGRADE)
        result = fleet.check(PLUGIN, ALL[0], "pre", "2.0.0", CHECKS)
        assert not result.ok and "sim fault for 1.1.0" in result.message

    def test_an_unknown_cluster_fails_the_check(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)
        result = fleet.check(PLUGIN, InstanceRef("gone", "plugins"), "verify", "1.0.0", [])
        assert not result.ok and "gone" in result.message


# --- metrics ------------------------------------------------------------------------------------------------


def metric(name: str) -> MetricSpec:
    return MetricSpec(name=name, max=1000.0)


class TestSimMetrics:
    @pytest.mark.parametrize(("faults", "name", "low", "high", "series"), [
        pytest.param((), "error_rate", 0.001, 0.004, 3, id="healthy-error-rate"),
        pytest.param((), "latency_p99_ms", 100.0, 140.0, 3, id="healthy-latency"),
        pytest.param((SimFault(version="2.0.0", error_rate=0.2),), "error_rate", 0.2, 0.2, 3,
                     id="error-rate-fault-is-the-max"),
        pytest.param((SimFault(version="2.0.0", selector={"tier": "canary"}, latency_p99_ms=900.0),),
                     "latency_p99_ms", 900.0, 900.0, 3, id="latency-fault-on-one-cluster"),
        pytest.param((SimFault(version="2.0.0", selector={"tier": "prod"}, no_metrics=True),),
                     "error_rate", 0.001, 0.004, 1, id="silent-instances-contribute-nothing"),
        pytest.param((SimFault(version="2.0.0", fail_readiness=True, selector={"region": "us"}),),
                     "error_rate", 0.001, 0.004, 2, id="not-ready-instances-contribute-nothing"),
    ])
    def test_values(self, tmp_path: Path, faults: tuple[SimFault, ...], name: str, low: float, high: float,
                    series: int) -> None:
        fleet, clock = make(tmp_path, *faults)
        upgraded(fleet, clock, "2.0.0")
        got = SimMetrics(fleet, settings(*faults), clock).measure(PLUGIN, "2.0.0", metric(name), ALL, 60)
        assert got.error is None and got.series == series
        assert got.value is not None and low <= got.value <= high

    @pytest.mark.parametrize(("faults", "name", "version"), [
        pytest.param((SimFault(version="2.0.0", no_metrics=True),), "error_rate", "2.0.0", id="all-silent"),
        pytest.param((), "cpu_seconds", "2.0.0", id="unknown-metric"),
        pytest.param((), "error_rate", "3.0.0", id="no-instance-on-the-version"),
    ])
    def test_no_data(self, tmp_path: Path, faults: tuple[SimFault, ...], name: str, version: str) -> None:
        fleet, clock = make(tmp_path, *faults)
        upgraded(fleet, clock, "2.0.0")
        got = SimMetrics(fleet, settings(*faults), clock).measure(PLUGIN, version, metric(name), ALL, 60)
        assert got == Measurement(value=None, series=0)

    def test_still_upgrading_is_no_data(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        fleet.apply(PLUGIN, [change(i, "2.0.0") for i in ALL])
        got = SimMetrics(fleet, settings(), clock).measure(PLUGIN, "2.0.0", metric("error_rate"), ALL, 60)
        assert got == Measurement(value=None, series=0)

    def test_only_the_given_instances_count(self, tmp_path: Path) -> None:
        fault = SimFault(version="2.0.0", selector={"tier": "canary"}, error_rate=0.5)
        fleet, clock = make(tmp_path, fault)
        upgraded(fleet, clock, "2.0.0")
        got = SimMetrics(fleet, settings(fault), clock).measure(PLUGIN, "2.0.0", metric("error_rate"), ALL[1:], 60)
        assert got.series == 2 and got.value is not None and got.value < 0.01

    def test_noise_is_stable_within_a_second_and_moves_over_time(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path)
        upgraded(fleet, clock, "2.0.0")
        source = SimMetrics(fleet, settings(), clock)

        def read() -> float | None:
            return source.measure(PLUGIN, "2.0.0", metric("latency_p99_ms"), ALL, 60).value

        first = read()
        clock.advance(0.4)
        assert read() == first
        seen = set()
        for _ in range(5):
            clock.advance(1)
            seen.add(read())
        assert len(seen) > 1

    def test_never_raises(self, tmp_path: Path) -> None:
        fleet, _ = make(tmp_path)

        class Broken:
            def now(self) -> datetime:
                raise RuntimeError("clock broke")

        got = SimMetrics(fleet, settings(), Broken()).measure(PLUGIN, "2.0.0", metric("error_rate"), ALL, 60)
        assert got.value is None and got.error is not None and "clock broke" in got.error

    def test_health_is_none_until_ready(self, tmp_path: Path) -> None:
        fleet, clock = make(tmp_path, SimFault(version="2.0.0", error_rate=0.3, no_metrics=True))
        assert fleet.health("billing", ALL[0].id) is None
        fleet.apply(PLUGIN, [change(ALL[0], "2.0.0")])
        assert fleet.health("billing", ALL[0].id) is None
        clock.advance(UPGRADE)
        health = fleet.health("billing", ALL[0].id)
        assert health is not None
        assert (health.version, health.error_rate, health.silent) == ("2.0.0", 0.3, True)
        assert health.ready_since == clock.now().timestamp()
