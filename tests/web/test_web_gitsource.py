"""The standalone view's source: the record of a real git remote written by a real `grayops run`, read from a
clone it keeps fresh (README "Web view")."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import RemoteUnavailable, WorkdirBusy
from reconciler.cli import full_registry
from reconciler.core.model import Phase
from reconciler.web.gitsource import GitRecordSource
from reconciler.web.record import Record
from tests.conftest import FAST_POLICY, Human, grayops, plugin_yaml, settings_yaml, wait_for

TIERS = {"canary": 1, "staging": 2, "prod": 5}
FAULTS = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"


def run_once(human: Human, workdir: Path) -> None:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress")
    assert done.returncode == 0, done.stderr


def rolled_out_then_rolled_back(human: Human, workdir: Path) -> None:
    human.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS, FAULTS),
                                          "policies/fast.yaml": FAST_POLICY,
                                          "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    run_once(human, workdir)
    human.pull()


@pytest.fixture
def source(fleet_repo: Human, tmp_path: Path) -> Iterator[GitRecordSource]:
    rolled_out_then_rolled_back(fleet_repo, tmp_path / "work")
    source = GitRecordSource(str(fleet_repo.remote), tmp_path / "view", full_registry().models, poll=0.2)
    source.start()
    yield source
    source.close()


def test_the_record_of_a_remote_is_read_whole(source: GitRecordSource, fleet_repo: Human) -> None:
    record = source.record()
    state = record.states["billing"]
    assert (state.phase, state.from_version, state.target_version) == (Phase.ROLLED_BACK, "1.5.0", "1.6.0")
    assert record.fleet is not None and record.refused == () and record.problem is None
    assert record.head == fleet_repo.log("-1", "--format=%H").strip()
    assert [(f.version, f.result) for f in record.finished["billing"]] == [("1.6.0", Phase.ROLLED_BACK),
                                                                           ("1.5.0", Phase.SUCCEEDED)]
    timeline = record.timelines["billing"]
    times = [c.at for c in timeline]
    assert None not in times and times == sorted(times, reverse=True)  # type: ignore[type-var]
    actions = [c.action for c in timeline]
    assert {"batch-start", "bake", "succeed", "rollback", "rolled-back"} <= set(actions)  # each tick's last
    said = " ".join(c.why or "" for c in timeline)  # and every transition's line, in the commit of its tick
    assert "billing 1.5.0: rollout of billing (none) -> 1.5.0 begins" in said
    assert all(f"billing 1.5.0: batch {batch} passed" in said for batch in ("canary", "wave-1", "all"))
    rollback = next(c for c in timeline if c.action == "rolled-back")
    assert rollback.rollout == state.rollout_id and rollback.batch == "canary" and rollback.by == "grayops"
    assert rollback.why is not None and rollback.why.startswith("billing 1.6.0: rolled back 1 instance(s)")
    asked = next(c for c in timeline if c.action is None and c.why == "billing 1.6.0")  # the human's commit
    assert asked.by == "Alice Ops"
    failed = record.readings[("billing", state.rollout_id, "canary", "error_rate")]
    assert failed[-1].value == 0.2 and failed[-1].verdict.value == "Failed"
    report = source.report(record.finished["billing"][0].path)
    assert report is not None and report.startswith("---\nplugin: billing\n")


def test_each_change_is_read_and_told_and_a_malformed_status_is_named(source: GitRecordSource,
                                                                      fleet_repo: Human) -> None:
    told: list[Record] = []
    source.subscribe(told.append)
    before = source.record().revision
    fleet_repo.commit("a status file by hand", {"status/legacy.yaml": "phase: [Progressing\n"})
    record = wait_for(lambda: "legacy" in source.record().unreadable and source.record(), 60, "the malformed status")
    assert record.unreadable["legacy"].startswith("status/legacy.yaml: unreadable status, not valid YAML")
    assert record.states["billing"].phase is Phase.ROLLED_BACK  # the others as usual
    assert record.revision != before and told and told[-1] is record
    assert source.refresh() is record  # nothing moved: the same record, nobody told
    assert told[-1] is record


def test_a_refused_head_keeps_the_last_valid_fleet(source: GitRecordSource, fleet_repo: Human) -> None:
    valid = source.record().fleet
    fleet_repo.commit("a typo", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0").replace("policy", "polcy")})
    record = wait_for(lambda: r if (r := source.record()).refused else None, 60, "the refusal")
    assert record.fleet is valid
    assert any(error.startswith("plugins/billing.yaml:") and "polcy" in error for error in record.refused)


def test_a_remote_that_cannot_be_fetched_is_said_and_the_record_stays(source: GitRecordSource,
                                                                      fleet_repo: Human, tmp_path: Path) -> None:
    aside = tmp_path / "moved.git"
    shutil.move(fleet_repo.remote, aside)
    try:
        record = wait_for(lambda: r if (r := source.record()).problem else None, 60, "the fetch failure")
        assert record.problem is not None and record.problem.startswith("the remote cannot be fetched (")
        assert record.states["billing"].phase is Phase.ROLLED_BACK
    finally:
        shutil.move(aside, fleet_repo.remote)
    source.wake()  # a moved-back directory is not a push: no watcher event
    wait_for(lambda: source.record().problem is None, 60, "the remote to be read again")


def test_the_view_s_workdir_is_its_own(fleet_repo: Human, tmp_path: Path) -> None:
    fleet_repo.commit("fleet", {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": FAST_POLICY,
                                "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    first = GitRecordSource(str(fleet_repo.remote), tmp_path / "view", full_registry().models)
    first.start()
    try:
        with pytest.raises(WorkdirBusy):
            GitRecordSource(str(fleet_repo.remote), tmp_path / "view", full_registry().models).start()
        assert first.record().states == {} and first.record().fleet is not None
    finally:
        first.close()
    with pytest.raises(RemoteUnavailable):
        GitRecordSource(str(tmp_path / "nowhere.git"), tmp_path / "other", full_registry().models).start()


def test_an_empty_repository_is_shown_empty_until_its_first_push(fleet_repo: Human, tmp_path: Path) -> None:
    source = GitRecordSource(str(fleet_repo.remote), tmp_path / "view", full_registry().models, poll=0.2)
    source.start()
    try:
        assert source.record().head is None and source.record().plugins() == []
        fleet_repo.commit("fleet", {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": FAST_POLICY,
                                    "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
        record = wait_for(lambda: r if (r := source.record()).head else None, 60, "the first push")
        assert record.plugins() == ["billing"] and record.refused == ()
    finally:
        source.close()
