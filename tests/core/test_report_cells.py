"""Free text in a report's tables stays inside its cell: a `|` or a line break in a reason cannot add columns."""

from __future__ import annotations

from datetime import UTC, datetime

from reconciler.core.model import InstanceState, Phase, RolloutState, Step
from reconciler.core.report import render_report

AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _rows(report: str, first_cell: str) -> list[str]:
    return [line for line in report.splitlines() if line.startswith(f"| {first_cell} ")]


def test_a_pipe_or_a_line_break_in_free_text_stays_in_its_cell() -> None:
    state = RolloutState(
        plugin="billing", rollout_id="abc1234567", target_version="1.5.0", desired_commit="0" * 40,
        policy="fast", phase=Phase.FAILED, reason="broken | extra column\nand a second line", started=AT,
        updated=AT, finished=AT, requested_by="Mallory | Admin",
        instances={"c1/plugins": InstanceState(Step.FAILED, "1.5.0", "1.4.0", message="exit | 1")},
    )
    report = render_report(state)
    for first, cells in (("Note", 2), ("Operator", 2), ("c1/plugins", 6)):
        (row,) = _rows(report, first)
        unescaped = row.replace("\\|", "")
        assert unescaped.count("|") == cells + 1, row
    assert "and a second line |" in _rows(report, "Note")[0]
