"""The upgrade success rate survives a restart: it is derived from reports/ (README "grayops' own metrics"), and
counts instances as well as rollouts."""

from __future__ import annotations

from reconciler.adapters.telemetry import Telemetry
from reconciler.core.model import Phase, RolloutState
from reconciler.core.report import render_report, report_path
from tests.adapters.test_telemetry import feed, sample
from tests.core.test_engine import Run, desired, installed, run


def two_rollouts() -> tuple[Run, Run]:
    """1.6.0 succeeds on all 8 instances; 1.7.0 fails its canary and is rolled back."""
    state, world, now = installed("1.5.0")
    good = run(desired("1.6.0"), world, state, now)
    world.error_rate["1.7.0"] = 0.3
    bad = run(desired("1.7.0"), world, good.state, good.now)
    assert good.state is not None and good.state.phase is Phase.SUCCEEDED
    assert bad.state is not None and bad.state.phase is Phase.ROLLED_BACK
    return good, bad


def reports(*states: RolloutState | None) -> dict[str, str]:
    return {report_path(s): render_report(s) for s in states if s is not None}


def expect_two_rollouts(telemetry: Telemetry) -> None:
    assert sample(telemetry, "version_upgrade_success_rate", plugin="billing") == 0.5
    assert sample(telemetry, "version_upgrade_rollouts_total", plugin="billing", result="succeeded") == 1
    assert sample(telemetry, "version_upgrade_rollouts_total", plugin="billing", result="rolled_back") == 1
    assert sample(telemetry, "version_upgrade_instances_total", plugin="billing", result="succeeded") == 8
    assert sample(telemetry, "version_upgrade_instances_total", plugin="billing", result="rolled_back") == 1
    assert sample(telemetry, "version_upgrade_instance_success_rate", plugin="billing") == 8 / 9


def test_a_restarted_reconciler_counts_the_finished_rollouts_from_their_reports() -> None:
    good, bad = two_rollouts()
    restarted = Telemetry()
    restarted.count_reports(reports(good.state, bad.state))
    expect_two_rollouts(restarted)


def test_a_rollout_seen_finishing_and_then_in_its_report_counts_once() -> None:
    good, bad = two_rollouts()
    telemetry = Telemetry()
    feed(telemetry, good)
    feed(telemetry, bad)
    telemetry.count_reports(reports(good.state, bad.state))  # e.g. the next scan of reports/
    expect_two_rollouts(telemetry)


def test_reports_written_before_the_front_matter_are_read_from_their_tables() -> None:
    good, bad = two_rollouts()
    old = {path: text.split("\n---\n", 1)[1] if text.startswith("---\n") else text
           for path, text in reports(good.state, bad.state).items()}
    assert all(text.startswith("# billing ") for text in old.values())
    telemetry = Telemetry()
    telemetry.count_reports({**old, "reports/billing/notes.md": "# not a report\n"})
    expect_two_rollouts(telemetry)
