"""The revision source over a real git remote: a valid revision is put in force, a refused one is said with its
root errors once while the last good one stays, and a start over a refused HEAD finds the newest valid ancestor
(README "Limits", "Pause and rollback at an invalid HEAD")."""

from __future__ import annotations

from pathlib import Path

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.registry import default_registry
from reconciler.adapters.telemetry import Telemetry
from reconciler.core.model import RolloutState
from reconciler.shell.alerts import FleetAlerts, Holds
from reconciler.shell.divergence import Divergence
from reconciler.shell.recorder import Recorder
from reconciler.shell.remote import RemoteHealth
from reconciler.shell.revisions import RevisionSource
from tests.conftest import FAST_POLICY, FakeClock, Human, make_fleet_repo, plugin_yaml, settings_yaml
from tests.shell.fakes import Heard

GOOD = {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}), "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}
TYPO = {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", extra="  colour: red\n")}


def source(human: Human, workdir: Path, states: dict[str, RolloutState] | None = None
           ) -> tuple[RevisionSource, Heard]:
    repo, heard, holds = GitRepo(str(human.remote), workdir), Heard(), Holds()
    alerts = FleetAlerts(lambda: heard, Telemetry(), FakeClock())
    states = {} if states is None else states
    divergence = Divergence(repo, holds, alerts, Recorder(repo), states)
    remote = RemoteHealth(repo, alerts, Telemetry(), divergence)
    found = RevisionSource(repo, builtin_policies(), default_registry(), workdir, FakeClock(), alerts, remote,
                           divergence, states, poll_interval=0.0)
    found.open()
    return found, heard


def test_a_refused_revision_keeps_the_last_good_one_in_force_and_says_why_once(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", GOOD)
    revisions, heard = source(human, tmp_path / "work")
    revisions.sync()
    good = revisions.fleet
    assert good is not None and good.plugins["billing"].spec.version == "1.5.0" and not revisions.refused
    runtime = revisions.runtime
    human.commit("a typo", TYPO)
    revisions.sync()
    revisions.sync()
    assert revisions.fleet is good and revisions.runtime is runtime  # nothing rebuilt
    [error] = revisions.refused
    assert error.startswith("plugins/billing.yaml:7: spec.colour: unknown field")
    [alert] = [e for e in heard.events if e.kind == "invalid_revision"]
    assert "the last good revision stays in force: 1 error(s): plugins/billing.yaml:7: spec.colour" in alert.message
    human.commit("fixed", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    revisions.sync()
    assert revisions.refused == () and revisions.fleet is not None
    assert revisions.fleet.plugins["billing"].spec.version == "1.6.0"


def test_a_start_over_a_refused_head_puts_the_newest_valid_ancestor_in_force(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", GOOD)
    human.commit("1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    human.commit("a typo", TYPO)
    revisions, heard = source(human, tmp_path / "work")
    revisions.sync()
    assert revisions.fleet is not None and revisions.fleet.plugins["billing"].spec.version == "1.6.0"
    assert len(revisions.refused) == 1
    [alert] = [e for e in heard.events if e.kind == "invalid_revision"]
    assert "the last good revision (" in alert.message and ") is in force" in alert.message


def test_nothing_valid_at_all_puts_nothing_in_force(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("no settings", {"plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    revisions, heard = source(human, tmp_path / "work")
    revisions.sync()
    assert revisions.fleet is None and revisions.runtime is None
    assert any("grayops.yaml" in error for error in revisions.refused)
    [alert] = heard.events
    assert "nothing is in force yet" in alert.message
