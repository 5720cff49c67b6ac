"""What the web view's pages show, by tables over records: phases, progress, what a rollout waits for and the
command that acts, the instance grid, reports, charts and the reading history (README "Web view")."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Unpack

import pytest

from reconciler.core.model import BatchPhase, MetricTrack, Phase, RolloutState, Step, Verdict
from reconciler.core.report import render_report
from reconciler.web import views
from reconciler.web.charts import Threshold, describe, metric_chart
from reconciler.web.markdown import report_html
from reconciler.web.record import MemoryRecordSource, Point, ReadingLog, Record, finished_from_report, newest_first
from tests.web.records import (
    T0,
    StateExtras,
    batch,
    clusters,
    ids,
    make_fleet,
    progressing,
    reading,
    rollout,
)

FLEET = make_fleet({"billing": "1.6.0"})
GATED = make_fleet({"billing": "1.6.0"}, policy="gated")
ALL = ids(clusters())


class CanaryArgs(StateExtras, total=False):
    source: str | None
    reason: str


def failed_canary(phase: Phase, **extra: Unpack[CanaryArgs]) -> RolloutState:
    canary = ids(["canary-1"])
    steps = {iid: ("1.5.0", Step.PENDING) for iid in ALL}
    steps[canary[0]] = ("1.6.0", Step.FAILED)
    return rollout(phase=phase, steps=steps, batches=[batch(0, "canary", BatchPhase.FAILED, canary)], **extra)


WAITS = [
    pytest.param(progressing(), FLEET, [], id="progressing-waits-for-nothing"),
    pytest.param(replace(progressing(), phase=Phase.AWAITING_APPROVAL, reason="batch all awaits approval"), GATED,
                 [("approval", "batch all awaits approval", ("grayops approve billing --batch all",))],
                 id="approval-names-the-batch"),
    pytest.param(replace(progressing(), phase=Phase.WAITING_WINDOW,
                         reason="batch all waits for a window (next opens mon 01:00)"), FLEET,
                 [("window", "batch all waits for a window (next opens mon 01:00)", ())], id="window-needs-no-command"),
    pytest.param(replace(progressing(), waiting_for="auth 2.0.0 (batch all awaits approval)"), FLEET,
                 [("dependency", "waiting for auth 2.0.0 (batch all awaits approval)", ())], id="dependency"),
    pytest.param(replace(progressing(), phase=Phase.PAUSED, paused_by="alice", pause_reason="incident 42",
                         paused_at=T0), FLEET,
                 [("human", "paused by alice: incident 42", ("grayops resume billing", "grayops rollback billing"))],
                 id="paused-by-a-person"),
    pytest.param(failed_canary(Phase.PAUSED, paused_by="grayops", pause_reason="rollback limit reached",
                               paused_at=T0), FLEET,
                 [("human", "paused by grayops: rollback limit reached",
                   ("grayops resume billing", "grayops retry billing", "grayops rollback billing"))],
                 id="paused-after-a-failed-batch"),
    pytest.param(failed_canary(Phase.FAILED, source=None, reason="batch canary failed; no good version known"), FLEET,
                 [("human", "batch canary failed; no good version known", ("grayops retry billing",))],
                 id="failed-first-install"),
    pytest.param(rollout(phase=Phase.SUCCEEDED, steps={iid: ("1.6.0", Step.DONE) for iid in ALL}), FLEET, [],
                 id="succeeded"),
]


@pytest.mark.parametrize(("state", "fleet", "expected"), WAITS)
def test_what_a_rollout_waits_for_and_the_command_that_acts(state: object, fleet: object,
                                                             expected: list[tuple[str, str, tuple[str, ...]]]) -> None:
    found = views.waits(state, fleet)  # type: ignore[arg-type]
    assert [(w.kind, w.text, w.commands) for w in found] == expected


def test_a_dependency_wait_links_to_the_dependency_s_rollout() -> None:
    [wait] = views.waits(replace(progressing(), waiting_for="auth 2.0.0 (batch all awaits approval)"), FLEET)
    assert wait.link == "/rollouts/auth"


@pytest.mark.parametrize(("state", "batches", "instances"), [
    pytest.param(progressing(), (1, 3, "1 of 3 batches passed"), (4, 8, "4 of 8 instances done"), id="progressing"),
    pytest.param(rollout(phase=Phase.SUCCEEDED, steps={iid: ("1.6.0", Step.DONE) for iid in ALL},
                         batches=[batch(0, "canary", BatchPhase.PASSED, ALL[:1]),
                                  batch(1, "wave-1", BatchPhase.PASSED, ALL[1:4]),
                                  batch(2, "all", BatchPhase.PASSED, ALL[4:])]),
                 (3, 3, "3 of 3 batches passed"), (8, 8, "8 of 8 instances done"), id="succeeded"),
    pytest.param(rollout(phase=Phase.ROLLED_BACK, steps={ALL[0]: ("1.5.0", Step.ROLLED_BACK),
                                                          **{iid: ("1.5.0", Step.PENDING) for iid in ALL[1:]}},
                         batches=[batch(0, "canary", BatchPhase.FAILED, ALL[:1])]),
                 (0, 3, "0 of 3 batches passed"), (1, 8, "1 of 8 instances rolled back"), id="rolled-back"),
])
def test_progress_of_batches_and_instances(state: object, batches: tuple[int, int, str],
                                           instances: tuple[int, int, str]) -> None:
    row = views.fleet_row(Record("1", fleet=FLEET, states={"billing": state}), "billing")  # type: ignore[dict-item]
    assert row.batches is not None and row.instances is not None
    assert (row.batches.value, row.batches.max, row.batches.label) == batches
    assert (row.instances.value, row.instances.max, row.instances.label) == instances


def test_fleet_rows_name_every_plugin_with_an_unreadable_status_or_no_rollout_yet() -> None:
    fleet = make_fleet({"billing": "1.6.0", "auth": "2.0.0", "search": "3.0.0"})
    record = Record("1", fleet=fleet, states={"billing": progressing()},
                    unreadable={"search": "status/search.yaml: unreadable status, not valid YAML (line 1: ...)"})
    rows = {row.plugin: row for row in views.fleet_rows(record)}
    assert list(rows) == ["auth", "billing", "search"]
    assert rows["auth"].look is views.NO_ROLLOUT and rows["auth"].to_version == "2.0.0"
    assert rows["billing"].look.text == "Progressing" and rows["billing"].batch_text.startswith("batch 2 of 3: wave-1")
    assert rows["search"].error is not None and rows["search"].error.startswith("status/search.yaml: ")
    assert {look.text: count for look, count in views.phase_counts(rows.values())} == {
        "Progressing": 1, "no rollout recorded": 1, "Unreadable": 1}


def test_a_version_committed_after_a_rollout_is_shown_but_not_the_revert_of_a_rollback() -> None:
    newer = views.fleet_row(Record("1", fleet=make_fleet({"billing": "1.7.0"}), states={"billing": progressing()}),
                            "billing")
    assert newer.desired == "1.7.0"
    rolled = rollout(phase=Phase.ROLLED_BACK, steps={ALL[0]: ("1.5.0", Step.ROLLED_BACK)})
    revert = views.fleet_row(Record("1", fleet=make_fleet({"billing": "1.5.0"}), states={"billing": rolled}),
                             "billing")
    assert revert.desired is None


def test_every_phase_step_and_verdict_has_a_colour_a_symbol_and_a_text() -> None:
    for looks, kinds in ((views.PHASES, Phase), (views.STEPS, Step), (views.VERDICTS, Verdict)):
        assert set(looks) == set(kinds)
        for look in looks.values():
            assert look.css and look.symbol.strip() and look.text
    # each phase is told apart without colour: its symbol differs from every other's
    assert len({look.symbol for look in views.PHASES.values()}) == len(Phase)


def test_instance_cells_are_coloured_by_version_and_step_and_merge_namespaces() -> None:
    fleet = make_fleet({"billing": "1.6.0"}, namespaces=["tenant-a", "tenant-b"])
    steps = {"canary-1/tenant-a": ("1.6.0", Step.DONE), "canary-1/tenant-b": ("1.6.0", Step.DONE),
             "staging-1/tenant-a": ("1.6.0", Step.UPGRADING), "staging-1/tenant-b": ("1.5.0", Step.PENDING),
             "staging-2/tenant-a": ("1.6.0", Step.FAILED), "prod-1/tenant-a": ("1.4.0", Step.PENDING)}
    record = Record("1", fleet=fleet, states={"billing": rollout(steps=steps)})
    grid = views.instance_grid(record)
    rows = [row for _, group in grid.groups for row in group]
    cells = {row.cluster: cell for row in rows if (cell := row.cells[0]) is not None}
    assert len(cells) == len(rows)  # billing runs on every cluster
    assert (cells["canary-1"].css, cells["canary-1"].symbol, cells["canary-1"].text) == ("v-target", "✓", "1.6.0")
    assert (cells["staging-1"].css, cells["staging-1"].text) == ("s-moving", "mixed")
    assert "staging-1/tenant-a billing: 1.6.0 (Upgrading)" in cells["staging-1"].title
    assert cells["staging-2"].css == "s-failed"
    assert cells["prod-1"].css == "v-other"
    assert cells["prod-2"].css == "v-none"  # targeted, not in the record yet
    assert [t for t, _ in grid.groups] == ["canary", "staging", "prod"]
    prod = next(t for t in grid.tiers if t.tier == "prod")
    assert prod.clusters == 5
    assert [(s.css, s.label, s.count) for s in prod.per_plugin[0]] == [("v-other", "1.4.0", 1),
                                                                       ("v-none", "not recorded", 9)]


def test_a_large_fleet_is_summarised_per_tier_and_drilled_down_a_page_at_a_time() -> None:
    tiers = {"canary": 2, "prod": 450}
    fleet = make_fleet({"billing": "1.6.0"}, tiers=tiers)
    steps = {iid: ("1.6.0", Step.DONE) for iid in ids(clusters(tiers))[:100]}
    record = Record("1", fleet=fleet, states={"billing": rollout(steps=steps)})
    overview = views.instance_grid(record)
    assert overview.groups == ()  # too many clusters for one grid: the tiers only
    assert [(t.tier, t.clusters) for t in overview.tiers] == [("canary", 2), ("prod", 450)]
    prod = views.instance_grid(record, "prod", page=3)
    assert (prod.page, prod.pages) == (3, 3)
    [(tier, rows)] = prod.groups
    assert tier == "prod" and len(rows) == 450 - 2 * views.GRID_PAGE
    assert views.instance_grid(record, "prod", page=99).page == 3


def test_the_report_is_rendered_safely() -> None:
    state = rollout(phase=Phase.ROLLED_BACK, steps={ALL[0]: ("1.5.0", Step.ROLLED_BACK)},
                    batches=[batch(0, "canary", BatchPhase.FAILED, ALL[:1])],
                    reason="rolled back: <script>alert('x')</script> | pipes & **stars**")
    html = str(report_html(render_report(state)))
    assert "<script>" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "| pipes &amp; <strong>stars</strong>" in html  # the escaped pipe stays in its cell
    assert '<th scope="col">Batch</th>' in html and "<h2>billing 1.6.0: RolledBack</h2>" in html
    assert "rolloutId" not in html  # the front matter is for tools
    assert "<code>a1b2c3d4e5</code>" in html


def test_a_chart_draws_readings_against_the_threshold_and_says_them_in_words() -> None:
    points = [Point(T0 + timedelta(seconds=s), v, Verdict.SUCCESSFUL if v < 0.05 else Verdict.FAILED)
              for s, v in ((0, 0.01), (1, 0.02), (2, 0.2))]
    svg = str(metric_chart("c1", "error<rate>", points, [Threshold("max", 0.05)], T0, T0 + timedelta(seconds=3)))
    assert svg.startswith('<svg class="chart" id="c1"') and 'role="img"' in svg
    assert svg.count('class="threshold"') == 1 and svg.count("<circle") == 3 and "<polyline" in svg
    assert "error&lt;rate&gt;" in svg and "<rate>" not in svg
    assert svg.count("verdict-failed") == 1
    assert describe("error_rate", points, [Threshold("max", 0.05)]) == (
        "error_rate: 3 reading(s) seen from 02:00:00 to 02:00:02; last 0.2 (Failed); max 0.05")
    assert describe("latency", [], []) == "latency: no reading seen yet; no fixed threshold"


def test_a_finished_rollout_is_read_back_from_its_report() -> None:
    state = rollout(phase=Phase.SUCCEEDED, steps={iid: ("1.6.0", Step.DONE) for iid in ALL})
    path = "reports/billing/1.6.0-a1b2c3d4e5.md"
    entry = finished_from_report(path, render_report(state))
    assert entry is not None
    assert (entry.plugin, entry.version, entry.rollout_id, entry.result) == ("billing", "1.6.0", "a1b2c3d4e5",
                                                                             Phase.SUCCEEDED)
    assert entry.seconds == 300.0 and entry.instances["succeeded"] == 8
    assert finished_from_report(path, "# notes\n") is None
    older = replace(entry, path="reports/billing/1.5.0-x.md", finished=T0)
    assert [e.path for e in newest_first([older, entry])] == [path, older.path]
    row = views.history_rows(Record("1", finished={"billing": (entry,)}), "billing")[0]
    assert (row.took, row.counts) == ("5m", "8 succeeded, 0 failed, 0 rolled back, 0 skipped")


def test_the_reading_log_keeps_each_reading_once_and_stays_bounded() -> None:
    log = ReadingLog(per_series=3, rollouts_per_plugin=2)
    state = progressing()
    for second in range(5):
        track = MetricTrack("error_rate", reading(0.01 * second, seconds=second))
        wave = replace(state.batches[1], metrics=(track,))
        assert log.observe(replace(state, batches=(state.batches[0], wave)))
        assert not log.observe(replace(state, batches=(state.batches[0], wave)))  # the same reading again
    series = log.snapshot()[("billing", "a1b2c3d4e5", "wave-1", "error_rate")]
    assert [p.value for p in series] == [0.02, 0.03, 0.04]
    for rollout_id in ("r2", "r3"):
        log.observe(replace(state, rollout_id=rollout_id))
    assert {key[1] for key in log.snapshot()} == {"r2", "r3"}


def test_the_memory_source_tells_its_listeners_of_each_change_only() -> None:
    source = MemoryRecordSource()
    seen: list[Record] = []
    stop = source.subscribe(seen.append)
    first = source.publish(fleet=FLEET, states={"billing": progressing()})
    assert source.publish(fleet=FLEET, states={"billing": progressing()}) is first  # nothing changed
    moved = replace(progressing(), reason="baking")
    second = source.publish(states={"billing": moved})
    assert [r.revision for r in seen] == [first.revision, second.revision] and second.fleet is FLEET
    assert second.readings[("billing", "a1b2c3d4e5", "wave-1", "error_rate")][0].value == 0.01
    stop()
    source.publish(states={})
    assert len(seen) == 2


def test_a_long_bake_is_a_line_with_a_dot_for_each_reading_that_was_not_good_and_the_last() -> None:
    points = [Point(T0 + timedelta(seconds=s), 0.01, Verdict.SUCCESSFUL) for s in range(100)]
    points[40] = replace(points[40], value=None, verdict=Verdict.INCONCLUSIVE)
    svg = str(metric_chart("c2", "error_rate", points, [Threshold("max", 0.05)]))
    assert svg.count("<circle") == 2 and "verdict-inconclusive" in svg
