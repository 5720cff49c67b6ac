"""Signed desired state in the revision source (README "Supply chain"): with `trust.commits.required`, the commit a
revision is read from must be signed by an allowed signer, under the rule in force at the last good revision; an
untrusted revision is refused once per commit and the last good one stays in force. Real git, real SSH signatures,
the real trust roots."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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
from reconciler.shell.trust import SupplyChain
from tests.conftest import FAST_POLICY, FakeClock, Human, git, make_fleet_repo, plugin_yaml, settings_yaml
from tests.shell.fakes import Heard
from tests.trust.signers import SshSigner, ssh_signer

REQUIRED = "trust: {commits: {required: true}}\n"
SIGNED_FLEET = {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, REQUIRED), "policies/fast.yaml": FAST_POLICY,
                "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}


@dataclass(frozen=True)
class People:
    alice: SshSigner  # allowed
    mallory: SshSigner  # not allowed
    grayops: SshSigner  # grayops' own key, allowed
    trust: Path  # the trust directory


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> People:
    root = Path(tmp_path_factory.mktemp("people"))
    alice, mallory, own = ssh_signer(root, "alice"), ssh_signer(root, "mallory"), ssh_signer(root, "grayops")
    trust = root / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(alice.line() + own.line())
    return People(alice, mallory, own, trust)


def sign_as(human: Human, signer: SshSigner | None, name: str = "Alice Ops") -> None:
    """The human's clone signs (or not) its next commits, as `name`."""
    git(human.clone, "config", "user.name", name)
    git(human.clone, "config", "user.email", f"{name.split()[0].lower()}@example.com")
    git(human.clone, "config", "commit.gpgsign", "true" if signer else "false")
    if signer is not None:
        git(human.clone, "config", "gpg.format", "ssh")
        git(human.clone, "config", "user.signingkey", str(signer.key))


@pytest.fixture
def human(tmp_path: Path, people: People) -> Human:
    made = make_fleet_repo(tmp_path)
    sign_as(made, people.alice)
    return made


Source = tuple[RevisionSource, Heard, GitRepo]


def source(human: Human, workdir: Path, people: People, signing: bool = True) -> Iterator[Source]:
    supply = SupplyChain.open(str(people.trust), str(people.grayops.key) if signing else None)
    repo, heard, holds = GitRepo(str(human.remote), workdir), Heard(), Holds()
    states: dict[str, RolloutState] = {}
    alerts = FleetAlerts(lambda: heard, Telemetry(), FakeClock())
    divergence = Divergence(repo, holds, alerts, Recorder(repo), states)
    remote = RemoteHealth(repo, alerts, Telemetry(), divergence)
    found = RevisionSource(repo, builtin_policies(), default_registry(), workdir, FakeClock(), alerts, remote,
                           divergence, states, poll_interval=0.0, supply=supply)
    found.open()
    try:
        yield found, heard, repo
    finally:
        supply.close()


def version(revisions: RevisionSource) -> str | None:
    return revisions.fleet.plugins["billing"].spec.version if revisions.fleet else None


def untrusted(heard: Heard) -> list[str]:
    return [e.message for e in heard.events if e.kind == "untrusted_revision"]


def test_a_revision_signed_by_an_allowed_signer_is_put_in_force(tmp_path: Path, human: Human,
                                                                people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, heard, _ in source(human, tmp_path / "work", people):
        revisions.sync()
        assert version(revisions) == "1.5.0" and revisions.refused == () and untrusted(heard) == []


def test_a_head_signed_by_an_unknown_key_is_refused_once_naming_commit_author_and_reason(
        tmp_path: Path, human: Human, people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, heard, _ in source(human, tmp_path / "work", people):
        revisions.sync()
        sign_as(human, people.mallory, "Mallory Evil")
        bad = human.commit("1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
        revisions.sync()
        revisions.sync()
        assert version(revisions) == "1.5.0"
        [alert] = untrusted(heard)
        assert f"commit {bad[:12]} by Mallory Evil <mallory@example.com>: signed by a key that is not an allowed " \
               f"signer ({people.mallory.key_id})" in alert
        assert "the last good revision stays in force" in alert
        sign_as(human, people.alice)
        human.commit("reviewed: 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.1")})
        revisions.sync()
        assert version(revisions) == "1.6.1" and revisions.refused == ()  # alice vouches for mallory's below


def test_an_unsigned_commit_cannot_switch_the_rule_off_running_or_at_a_restart(tmp_path: Path, human: Human,
                                                                               people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, heard, _ in source(human, tmp_path / "work", people):
        revisions.sync()
        sign_as(human, None, "Mallory Evil")
        off = human.commit("off", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}),
                                   "plugins/billing.yaml": plugin_yaml("billing", "6.6.6")})
        revisions.sync()
        assert version(revisions) == "1.5.0"
        [alert] = untrusted(heard)
        assert f"commit {off[:12]} by Mallory Evil <mallory@example.com>: unsigned" in alert
    for restarted, heard, _ in source(human, tmp_path / "work2", people):  # a fresh start over the same HEAD
        restarted.sync()
        assert version(restarted) == "1.5.0"
        [alert] = untrusted(heard)
        assert f"commit {off[:12]}" in alert and "unsigned" in alert


def test_a_switch_off_signed_by_an_allowed_signer_holds_at_a_restart(tmp_path: Path, human: Human,
                                                                     people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    human.commit("off, reviewed", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2})})
    sign_as(human, None)
    human.commit("1.7.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0")})
    for revisions, heard, _ in source(human, tmp_path / "work", people):
        revisions.sync()
        assert version(revisions) == "1.7.0" and untrusted(heard) == []


def test_an_untrusted_revision_asking_for_a_pause_is_not_obeyed(tmp_path: Path, human: Human,
                                                                people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, _, _ in source(human, tmp_path / "work", people):
        revisions.sync()
        sign_as(human, None, "Mallory Evil")
        human.commit("pause, with a typo", {"plugins/billing.yaml": plugin_yaml(
            "billing", "1.5.0", extra="  paused: true\n  colour: red\n")})
        revisions.sync()
        assert revisions.fleet is not None and not revisions.fleet.plugins["billing"].spec.paused


def test_grayops_own_signed_commits_over_a_signed_revision_verify_at_a_start(tmp_path: Path, human: Human,
                                                                             people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, _, repo in source(human, tmp_path / "work", people):
        revisions.sync()
        assert repo.commit({"reports/billing/note.md": "a record\n"}, "grayops: a record", status=True)
        assert repo.push().pushed
        shown = git(human.remote, "-c", f"gpg.ssh.allowedSignersFile={people.trust / 'allowed_signers'}", "log",
                    "-1", "--format=%G? %GK", "main").split()
        assert shown == ["G", people.grayops.key_id]  # signed with --signing-key
    for restarted, heard, _ in source(human, tmp_path / "work2", people):
        restarted.sync()
        assert version(restarted) == "1.5.0" and restarted.refused == () and untrusted(heard) == []


def test_an_unsigned_head_over_grayops_own_commits_is_not_laundered(tmp_path: Path, human: Human,
                                                                    people: People) -> None:
    human.commit("fleet", SIGNED_FLEET)
    for revisions, heard, repo in source(human, tmp_path / "work", people):
        revisions.sync()
        sign_as(human, None, "Mallory Evil")
        bad = human.commit("6.6.6", {"plugins/billing.yaml": plugin_yaml("billing", "6.6.6")})
        repo.fetch()
        repo.integrate()
        assert repo.commit({"reports/billing/note.md": "a record\n"}, "grayops: a record on top", status=True)
        revisions.sync()
        assert version(revisions) == "1.5.0"
        [alert] = untrusted(heard)
        assert f"commit {bad[:12]} by Mallory Evil" in alert


def test_trust_roots_changed_to_bad_ones_keep_the_last_good_and_good_ones_are_taken(tmp_path: Path,
                                                                                     people: People) -> None:
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(people.alice.line())
    supply = SupplyChain.open(str(trust), None)
    try:
        assert [s.key_id for s in supply.roots.ssh_signers] == [people.alice.key_id]
        (trust / "allowed_signers").write_text("alice@example.com ssh-ed25519 not-base64\n")
        supply.refresh()
        assert [s.key_id for s in supply.roots.ssh_signers] == [people.alice.key_id]  # the last good ones
        (trust / "allowed_signers").write_text(people.alice.line() + people.grayops.line())
        supply.refresh()
        assert {s.key_id for s in supply.roots.ssh_signers} == {people.alice.key_id, people.grayops.key_id}
    finally:
        supply.close()
