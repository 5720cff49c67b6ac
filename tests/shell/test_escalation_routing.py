"""The shell's side of owners and escalation (README "Owners and escalation"): what each notifier hears of an
alert, and when, driven by a FakeClock; acknowledgements read from the revision in force."""

from __future__ import annotations

from policies import builtin_policies
from reconciler.adapters.notify.fanout import FanOut
from reconciler.adapters.ports import Notifier
from reconciler.adapters.registry import Runtime
from reconciler.adapters.unavailable import UnavailableMetrics
from reconciler.cli import full_registry
from reconciler.core.effects import Event
from reconciler.core.escalation import alert_id
from reconciler.core.fleet import Fleet, load_fleet
from reconciler.core.model import Phase, Severity
from reconciler.shell.escalation import Escalation
from tests.conftest import FAST_POLICY, FakeClock, plugin_yaml, settings_yaml
from tests.shell.fakes import Heard


class Told:
    """A notifier that is not a rollout watcher (PagerDuty, a webhook): the events it was given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def notify(self, event: Event) -> None:
        self.events.append(event)

SETTINGS = settings_yaml({"canary": 1, "prod": 1}, """\
notifiers:
  - {type: webhook, name: oncall, url: "http://127.0.0.1:9/oncall"}
  - {type: webhook, name: team-lead, url: "http://127.0.0.1:9/lead"}
  - {type: log}
  - {type: slack, channel: "#rollouts"}
escalation:
  - {notify: oncall}
  - {after: 10m, notify: team-lead, mention: [S0LEAD]}
  - {after: 30m, notify: slack, mention: [S0DIRECTORS]}
""")
ACCESS = """\
apiVersion: grayops.dev/v1
kind: Access
people:
  - {name: alice, slack: U0OPS1}
  - {name: rita}
"""


def fleet(acks: str = "") -> Fleet:
    files = {"grayops.yaml": SETTINGS, "policies/fast.yaml": FAST_POLICY, "access.yaml": ACCESS,
             "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", extra="  owners: [alice, rita]\n")}
    if acks:
        files["approvals/billing.yaml"] = ("apiVersion: grayops.dev/v1\nkind: Approvals\nmetadata: {name: billing}\n"
                                           + acks)
    return load_fleet(files, builtin_policies(), adapters=full_registry().models)


class World:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.oncall, self.lead, self.log, self.slack = Told(), Told(), Told(), Heard()
        named: dict[str, Notifier] = {"oncall": self.oncall, "team-lead": self.lead, "log": self.log,
                                      "slack": self.slack}
        self.runtime = Runtime({}, UnavailableMetrics("none"), FanOut(list(named.values())),
                               notifiers=list(named.values()), named=named)
        self.escalation = Escalation()

    def event(self, kind: str, severity: Severity) -> Event:
        return Event("billing", "0123456789", "1.6.0", kind, severity, f"{kind} happened", Phase.PROGRESSING,
                     self.clock.now())

    def send(self, event: Event, in_force: Fleet) -> None:
        self.escalation.notifier(in_force, self.runtime).notify(event)

    def tick(self, in_force: Fleet) -> None:
        self.escalation.check(in_force, self.runtime, self.clock.now())


def test_a_critical_alert_mentions_the_owners_goes_to_level_one_at_once_and_to_level_two_after_its_time() -> None:
    world, in_force = World(), fleet()
    world.send(world.event("batch_failed", Severity.CRITICAL), in_force)
    [heard] = world.oncall.events
    assert heard.mentions == ("U0OPS1", "rita"), "owners by Slack ID, else by name"
    assert heard.alert_id == alert_id(world.event("batch_failed", Severity.CRITICAL))
    assert [e.kind for e in world.log.events] == ["batch_failed"]
    assert world.lead.events == [], "level 2 hears only when the alert escalates"
    assert [e.alert_id for e in world.slack.events] == [heard.alert_id], "Slack hears of every alert at once"
    world.clock.advance(599)
    world.tick(in_force)
    assert world.lead.events == []
    world.clock.advance(1)
    world.tick(in_force)
    [escalated] = world.lead.events
    assert escalated.alert_id == heard.alert_id and escalated.mentions == ("S0LEAD",)
    assert escalated.escalated == "not acknowledged after 10m: level 2, team-lead"
    assert len(world.escalation.open_alerts()) == 1
    world.clock.advance(1200)
    world.tick(in_force)
    assert world.slack.events[-1].escalated == "not acknowledged after 30m: level 3, slack"
    assert world.slack.events[-1].mentions == ("S0DIRECTORS",)
    world.clock.advance(3600)
    world.tick(in_force)
    assert len(world.lead.events) == 1 and len(world.slack.events) == 2, "each level once"
    assert world.escalation.open_alerts() == [], "closed once past its last level"


def test_an_acknowledged_alert_escalates_no_further() -> None:
    world = World()
    world.send(world.event("rollback_failed", Severity.CRITICAL), fleet())
    [open_alert] = world.escalation.open_alerts()
    acked = fleet(f"acks:\n  - {{alert: {open_alert.id}, by: U0OPS1 (alice), at: '2025-03-01T12:05:00Z'}}\n")
    world.clock.advance(300)
    world.tick(acked)
    assert world.escalation.open_alerts() == []
    world.clock.advance(3600)
    world.tick(acked)
    assert world.lead.events == []


def test_warnings_and_transitions_the_later_levels_hear_as_before() -> None:
    world, in_force = World(), fleet()
    world.send(world.event("drift", Severity.WARNING), in_force)
    world.send(world.event("transition", Severity.INFO), in_force)
    assert [e.kind for e in world.oncall.events] == ["drift", "transition"]
    assert world.oncall.events[0].alert_id is None, "only critical alerts are acknowledged"
    assert world.oncall.events[0].mentions == ("U0OPS1", "rita")
    assert [e.kind for e in world.lead.events] == ["transition"], "a rollout settling still reaches every notifier"
    assert world.escalation.open_alerts() == []
