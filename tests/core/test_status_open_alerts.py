"""The open alerts a rollout's status keeps (README "Owners and escalation"): written only while there are some,
read back as written, and a malformed entry makes the status unreadable in one line, like any other field."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from reconciler.core.model import OpenAlertRecord, Phase
from reconciler.core.status import StatusUnreadable, dump_status, load_status
from tests.web.records import progressing

RAISED = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
ALERTS = (OpenAlertRecord("billing-0123456789", "batch_failed", "batch canary failed: error_rate 0.2 > max 0.05",
                          RAISED, Phase.PAUSED, 0, "canary"),
          OpenAlertRecord("billing-abcdef0123", "no_good_version", "cannot roll back", RAISED, Phase.FAILED, 1))


def test_open_alerts_are_read_back_as_written() -> None:
    state = replace(progressing(), open_alerts=ALERTS)
    text = dump_status(state)
    assert "openAlerts:" in text and "level: 2" in text
    assert load_status(text).open_alerts == ALERTS


def test_a_status_without_open_alerts_has_no_such_field() -> None:
    assert "openAlerts" not in dump_status(progressing())
    assert load_status(dump_status(progressing())).open_alerts == ()


@pytest.mark.parametrize(("entry", "why"), [
    ("  - {id: billing-0123456789, kind: batch_failed, message: m, phase: Paused, level: 1}\n",
     "a field is missing: raised"),
    ("  - {id: billing-0123456789, kind: batch_failed, message: m, raised: soon, phase: Paused, level: 1}\n",
     "a field has the wrong form"),
    ("  - {id: billing-0123456789, kind: batch_failed, message: m, raised: '2025-03-01T12:00:00Z', phase: Asleep, "
     "level: 1}\n", "a field has the wrong form"),
    ("  - just a line\n", "a field has the wrong form"),
])
def test_a_malformed_open_alert_makes_the_status_unreadable(entry: str, why: str) -> None:
    text = dump_status(progressing()) + "openAlerts:\n" + entry
    with pytest.raises(StatusUnreadable, match=why):
        load_status(text, "status/billing.yaml")
