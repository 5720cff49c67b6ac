"""The web view fed by a running reconciler in the same process, as `grayops run` serving it will feed it: the
states from memory after each tick (every reading, not only the committed ones), the rest from its clone
(README "Web view")."""

from __future__ import annotations

import threading
import urllib.request
from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.cli import full_registry
from reconciler.core.model import BatchPhase, MetricTrack, Phase, Step
from reconciler.shell import Reconciler
from reconciler.web.app import create_app
from reconciler.web.gitsource import RepoReader
from reconciler.web.inprocess import ReconcilerRecordSource
from reconciler.web.record import ReadingLog, Record
from tests.conftest import FAST_POLICY, Human, plugin_yaml, settings_yaml, wait_for
from tests.web.records import batch, reading, rollout, serving

TIERS = {"canary": 1, "staging": 2, "prod": 5}
# A longer canary bake, read every 100 ms: several readings, of which the status commits keep one.
POLICY = FAST_POLICY.replace("{name: canary, size: 1, bake: 300ms}", "{name: canary, size: 1, bake: 1s}")


def test_a_running_reconciler_feeds_the_view_every_reading(fleet_repo: Human, tmp_path: Path) -> None:
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    repo = GitRepo(str(fleet_repo.remote), tmp_path / "work")
    reconciler = Reconciler(repo, tmp_path / "work", builtin_policies(), poll_interval=0.2, registry=full_registry())
    reconciler.start()
    source = ReconcilerRecordSource(repo, full_registry().models)
    source.start()
    told: list[Record] = []
    source.subscribe(told.append)
    stop = threading.Event()

    def run() -> None:  # the reconciler's loop, with the one line that feeds the view
        while not stop.is_set():
            report = reconciler.tick()
            source.update(reconciler.fleet, reconciler.states, report.invalid)
            reconciler.wake.wait(0.05)

    def succeeded() -> Record | None:
        record = source.record()
        state = record.states.get("billing")
        done = state is not None and state.phase is Phase.SUCCEEDED and record.finished.get("billing")
        return record if done else None

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        with serving(create_app(source)) as base:
            record = wait_for(succeeded, 120, "the rollout to succeed in the view")
            with urllib.request.urlopen(base + "/rollouts/billing", timeout=30) as response:
                page = response.read().decode()
        state = record.states["billing"]
        assert "billing 1.5.0: Succeeded" in page and "Batch 3: all" in page
        assert {c.action for c in record.timelines["billing"]} >= {"batch-start", "succeed"}  # each tick's last
        said = " ".join(c.why or "" for c in record.timelines["billing"])  # with every transition's line
        assert "billing 1.5.0: rollout of billing (none) -> 1.5.0 begins" in said and "batch canary passed" in said
        seen = record.readings[("billing", state.rollout_id, "canary", "error_rate")]
        assert len(seen) >= 3 and len(seen) == state.batches[0].metrics[0].readings  # every reading of the bake
        committed = RepoReader(repo, full_registry().models, ReadingLog())
        committed.read()
        from_git = committed.readings.snapshot()[("billing", state.rollout_id, "canary", "error_rate")]
        assert len(from_git) < len(seen)  # the status commits kept fewer: what a standalone view can show
        assert len({r.revision for r in told}) == len(told) >= 3
    finally:
        stop.set()
        thread.join(timeout=30)
        source.close()


def test_a_view_slower_than_the_ticks_still_keeps_every_reading(fleet_repo: Human, tmp_path: Path) -> None:
    """On a busy machine several ticks can pass while the view reads the clone: their records are published as one,
    but each tick's reading still reaches the chart."""
    fleet_repo.commit("fleet: billing 1.5.0", {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": POLICY,
                                               "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    repo = GitRepo(str(fleet_repo.remote), tmp_path / "work")
    Reconciler(repo, tmp_path / "work", builtin_policies(), registry=full_registry()).start()  # the clone
    source = ReconcilerRecordSource(repo, full_registry().models)
    canary = ["canary-1/plugins"]
    ticks = [rollout(steps={canary[0]: ("1.6.0", Step.DONE)}, batches=[batch(0, "canary", BatchPhase.BAKING, canary,
             metrics=[MetricTrack("error_rate", reading(0.01 * n, seconds=n), readings=n)])]) for n in range(1, 6)]
    for state in ticks:  # five ticks before the view's worker runs once
        source.update(None, {"billing": state})
    source.start()
    try:
        record = wait_for(lambda: "billing" in source.record().states and source.record(), 60, "the record")
    finally:
        source.close()
    seen = record.readings[("billing", ticks[0].rollout_id, "canary", "error_rate")]
    assert [p.value for p in seen] == [0.01, 0.02, 0.03, 0.04, 0.05]
