"""Owners and escalation, pure (README "Owners and escalation"): which level is due when, the ids of alerts, and
the errors in owners and escalation levels, by tables."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.effects import Event
from reconciler.core.escalation import OpenAlert, alert_id, due, escalation_only, plugin_of_alert, raised
from reconciler.core.fleet import FleetInvalid, load_fleet
from reconciler.core.model import Phase, Severity
from reconciler.core.spec import EscalationLevel
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEVELS = [EscalationLevel(notify="oncall"), EscalationLevel(notify="team-lead", after=600),
          EscalationLevel(notify="director", after=1800, mention=["S0DIR"])]


def alert(plugin: str = "billing", at: datetime = T0, kind: str = "batch_failed") -> Event:
    event = Event(plugin, "0123456789", "1.6.0", kind, Severity.CRITICAL, "batch canary failed", Phase.ROLLING_BACK,
                  at)
    return replace(event, alert_id=alert_id(event))


@pytest.mark.parametrize(("reached", "minutes", "acked", "sent", "open_after"), [
    pytest.param(0, 0, False, [], 0, id="just-raised"),
    pytest.param(0, 9.9, False, [], 0, id="before-the-second-level"),
    pytest.param(0, 10, False, [1], 1, id="second-level-at-its-after"),
    pytest.param(1, 20, False, [], 1, id="second-level-sent-once"),
    pytest.param(1, 30, False, [2], None, id="last-level-closes-it"),
    pytest.param(0, 45, False, [1, 2], None, id="a-late-check-sends-each-level-once-in-order"),
    pytest.param(0, 45, True, [], None, id="acknowledged-escalates-no-further"),
])
def test_a_level_is_due_once_its_after_has_passed_unless_acknowledged(
        reached: int, minutes: float, acked: bool, sent: list[int], open_after: int | None) -> None:
    opened = OpenAlert(alert(), reached)
    still, sends = due([opened], {opened.id} if acked else set(), LEVELS, T0 + timedelta(minutes=minutes))
    assert [s.level for s in sends] == sent
    assert [s.notify for s in sends] == [LEVELS[i].notify for i in sent]
    assert [a.reached for a in still] == ([] if open_after is None else [open_after])
    for send in sends:
        assert send.event.alert_id == opened.id
        assert send.event.escalated is not None and LEVELS[send.level].notify in send.event.escalated
        assert send.event.mentions == tuple(LEVELS[send.level].mention)


def test_a_new_alert_has_reached_the_levels_that_hear_at_once() -> None:
    assert raised(alert(), LEVELS).reached == 0
    assert raised(alert(), [EscalationLevel(notify="lead", after=60)]).reached == -1
    assert escalation_only(LEVELS) == {"team-lead", "director"}
    both = [EscalationLevel(notify="pd"), EscalationLevel(notify="pd", after=60)]
    assert escalation_only(both) == frozenset(), "a notifier heard at once is not held back for a later level"


@pytest.mark.parametrize(("text", "plugin"), [
    ("billing-0123456789", "billing"),
    ("billing-api-abcdef0123", "billing-api"),
    ("billing-0123", None),
    ("Billing-0123456789", None),
    ("-0123456789", None),
    ("billing", None),
])
def test_an_alert_id_names_its_plugin(text: str, plugin: str | None) -> None:
    assert plugin_of_alert(text) == plugin


def test_alert_ids_differ_by_plugin_kind_and_time_and_are_stable() -> None:
    first = alert()
    assert first.alert_id == alert().alert_id
    assert plugin_of_alert(first.alert_id or "") == "billing"
    assert len({first.alert_id, alert(kind="rollback_failed").alert_id, alert(at=T0 + timedelta(seconds=1)).alert_id,
                alert(plugin="auth").alert_id}) == 4


ACCESS = """\
apiVersion: grayops.dev/v1
kind: Access
people:
  - {name: alice, slack: U0OPS1}
  - {name: rita}
"""


def errors(settings_extra: str = "", owners: str = "", access: str = ACCESS) -> list[str]:
    files = {"grayops.yaml": settings_yaml({"canary": 1, "prod": 1}, settings_extra),
             "policies/fast.yaml": FAST_POLICY,
             "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", extra=owners),
             "access.yaml": access}
    try:
        load_fleet(files, builtin_policies(), adapters=full_registry().models)
    except FleetInvalid as err:
        return [str(e) for e in err.errors]
    return []


@pytest.mark.parametrize(("settings_extra", "owners", "expected"), [
    pytest.param("", "  owners: [alice, Rita]\n", [], id="owners-are-people"),
    pytest.param("", "  owners: [alice, bob]\n",
                 ["plugins/billing.yaml:7: spec.owners[1]: 'bob' is not a name of access.yaml's people: (listed: "
                  "alice, rita)"], id="unknown-owner"),
    pytest.param("notifiers: [{type: log}, {type: webhook, name: lead, url: 'http://127.0.0.1:9/'}]\n"
                 "escalation: [{notify: log}, {after: 10m, notify: lead}]\n", "", [], id="levels-name-notifiers"),
    pytest.param("notifiers: [{type: log}]\nescalation: [{notify: log}, {after: 10m, notify: team-lead}]\n", "",
                 ["grayops.yaml:8: escalation[1].notify: no notifier named 'team-lead' (notifiers: log; a notifier's "
                  "name is its `name`, else its type)"], id="unknown-target"),
    pytest.param("notifiers: [{type: log}]\nescalation: [{after: 10m, notify: log}, {after: 5m, notify: log}]\n", "",
                 ["grayops.yaml:8: escalation[1].after: levels come in the order they are reached: after must not "
                  "be shorter than the level before"], id="levels-out-of-order"),
])
def test_owners_and_escalation_levels_are_checked_with_a_line_each(settings_extra: str, owners: str,
                                                                    expected: list[str]) -> None:
    assert errors(settings_extra, owners) == expected


def test_owners_without_an_access_file_are_an_error_naming_the_owner() -> None:
    files = {"grayops.yaml": settings_yaml({"canary": 1}), "policies/fast.yaml": FAST_POLICY,
             "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", extra="  owners: [alice]\n")}
    with pytest.raises(FleetInvalid) as refused:
        load_fleet(files, builtin_policies(), adapters=full_registry().models)
    assert [str(e) for e in refused.value.errors] == [
        "plugins/billing.yaml:7: spec.owners[0]: 'alice' is not a name of access.yaml's people: (listed: none)"]
