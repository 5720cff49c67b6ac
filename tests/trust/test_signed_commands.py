"""Commands committed for people are signed (README "Supply chain", "Who signs what"): by `grayops bot
--signing-key`, by `grayops <command> --signing-key`, by a person's own git configuration, and in the reconciler's
clone (`--workdir`) by the reconciler's key. With `trust.commits.required`, the real `grayops run` obeys a signed
command and refuses an unsigned one (`untrusted_revision`)."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bot.fake_slack import FakeSlack
from tests.bot.harness import fake_slack, seed, wait_phase
from tests.bot.slack_requests import SECRET, post, slash
from tests.conftest import Human, free_port, git, make_fleet_repo, remote_status, stop_process, wait_for
from tests.trust.signers import SshSigner, ssh_signer
from tests.trust.test_signed_revisions import REQUIRED, sign_as

__all__ = ["fake_slack"]  # fixture


@dataclass
class SignedFleet:
    """A fleet whose commits must be signed, rolling billing out (wave-1 bakes for 600 s) under the real
    `grayops run --trust --signing-key`."""

    human: Human
    alice: SshSigner  # an allowed signer
    own: SshSigner  # grayops' key, an allowed signer
    trust: Path
    workdir: Path
    log: Path

    def signatures(self) -> list[tuple[str, str, str]]:
        """(subject, %G?, key) of every commit on the remote's main, newest first, as git verifies them."""
        shown = git(self.human.remote, "-c", f"gpg.ssh.allowedSignersFile={self.trust / 'allowed_signers'}",
                    "log", "--format=%G?%x09%GK%x09%s", "main")
        return [(subject, status, key) for status, key, subject in
                (line.split("\t", 2) for line in shown.splitlines())]

    def commit_of(self, subject_start: str) -> tuple[str, str, str]:
        return next(entry for entry in self.signatures() if entry[0].startswith(subject_start))

    def tail(self) -> str:
        return self.log.read_text()[-3000:]


@pytest.fixture
def signed_fleet(tmp_path: Path) -> Iterator[SignedFleet]:
    people = tmp_path / "people"
    people.mkdir()
    alice, own = ssh_signer(people, "alice"), ssh_signer(people, "grayops")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(alice.line() + own.line())
    human = make_fleet_repo(tmp_path)
    sign_as(human, alice)
    seed(human, "1.5.0", extra_settings=REQUIRED)
    fleet = SignedFleet(human, alice, own, trust, tmp_path / "work", tmp_path / "run.log")
    with fleet.log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
             str(fleet.workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress", "--trust", str(trust),
             "--signing-key", str(own.key)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (s := remote_status(human, "billing")) and s["reason"].startswith("batch wave-1")
                 and "baking" in s["reason"], timeout=120, what="billing baking in wave-1")
        yield fleet
        assert daemon.poll() is None, fleet.tail()
    finally:
        assert stop_process(daemon) == 0


def _git_config(path: Path, signer: SshSigner) -> dict[str, str]:
    """An environment whose global git configuration signs every commit with `signer`'s SSH key, as a person's
    ~/.gitconfig does."""
    path.write_text(f"[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = {signer.key}\n[commit]\n\tgpgsign = true\n")
    return {**os.environ, "GIT_CONFIG_GLOBAL": str(path)}


def _grayops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)


def test_a_command_in_the_reconcilers_clone_is_signed_with_its_key_and_obeyed(signed_fleet: SignedFleet) -> None:
    fleet = signed_fleet
    done = _grayops("pause", "billing", "--repo", str(fleet.human.remote), "--workdir", str(fleet.workdir),
                    "--reason", "incident 42", "--as", "alice")
    assert done.returncode == 0, done.stderr
    wait_phase(fleet.human, "Paused", timeout=60)
    _, status, key = fleet.commit_of("pause billing")
    assert (status, key) == ("G", fleet.own.key_id)
    assert "untrusted_revision" not in fleet.log.read_text()
    # the reconciler's own commits made after the command are still signed with its key
    wait_for(lambda: fleet.signatures()[0][0] != fleet.commit_of("pause billing")[0], what="a status commit")
    own = [entry for entry in fleet.signatures() if not entry[0].startswith("fleet:")]
    assert own and all(entry[1:] == ("G", fleet.own.key_id) for entry in own), own


def test_a_persons_command_is_signed_by_their_own_git_configuration(signed_fleet: SignedFleet,
                                                                     tmp_path: Path) -> None:
    fleet = signed_fleet
    env = _git_config(tmp_path / "gitconfig", fleet.alice)
    done = _grayops("pause", "billing", "--repo", str(fleet.human.remote), "--reason", "incident 43", "--as", "alice",
                    env=env)
    assert done.returncode == 0, done.stderr
    assert wait_phase(fleet.human, "Paused", timeout=60)["desiredSigner"] == (
        f"alice@example.com ({fleet.alice.key_id})")
    _, status, key = fleet.commit_of("pause billing")
    assert (status, key) == ("G", fleet.alice.key_id)


def test_a_command_given_a_signing_key_is_signed_with_it(signed_fleet: SignedFleet) -> None:
    fleet = signed_fleet
    done = _grayops("pause", "billing", "--repo", str(fleet.human.remote), "--reason", "incident 44", "--as", "alice",
                    "--signing-key", str(fleet.own.key))
    assert done.returncode == 0, done.stderr
    wait_phase(fleet.human, "Paused", timeout=60)
    _, status, key = fleet.commit_of("pause billing")
    assert (status, key) == ("G", fleet.own.key_id)


def test_a_signing_key_that_cannot_be_used_is_one_line(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    key = tmp_path / "key"
    key.write_text("not a key\n")
    key.chmod(0o600)
    for command in (["pause", "billing"], ["serve", "--listen", f"127.0.0.1:{free_port()}"]):
        done = _grayops(*command, "--repo", str(human.remote), "--signing-key", str(key),
                        env={**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET})
        assert done.returncode == 1, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("grayops: ") and f"--signing-key: {key}: not an SSH private key" in line, line
    done = _grayops("pause", "billing", "--repo", str(human.remote), "--workdir", str(tmp_path / "w"),
                    "--signing-key", str(key))
    assert done.returncode == 2 and done.stderr.startswith("grayops: --signing-key: not with --workdir"), done.stderr


@pytest.mark.parametrize("signed", [True, False], ids=["with-key", "without-key"])
def test_serve_signs_its_commands_with_its_key(signed_fleet: SignedFleet, fake_slack: FakeSlack,
                                                            tmp_path: Path, signed: bool) -> None:
    fleet, port = signed_fleet, free_port()
    env = {**os.environ, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
           "GRAYOPS_SLACK_API_URL": fake_slack.api_url}
    env.pop("SLACK_APP_TOKEN", None)
    key = ["--signing-key", str(fleet.own.key)] if signed else []
    bot_log = tmp_path / "bot.log"
    with bot_log.open("w") as out:
        bot = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "serve", "--repo", str(fleet.human.remote),
                                "--workdir", str(tmp_path / "bot"), "--listen", f"127.0.0.1:{port}", *key],
                               stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        url = f"http://127.0.0.1:{port}/slack/events"
        wait_for(lambda: bot.poll() is None and _listening(port), what=f"the bot to listen:\n{bot_log.read_text()}")
        warned = [line for line in bot_log.read_text().splitlines() if "trust.commits.required" in line]
        if signed:
            assert not warned, warned
        else:  # said once at start, before any command is refused
            assert len(warned) == 1 and warned[0].endswith(
                "WARNING grayops: grayops.yaml requires signed commits (trust.commits.required) and serve has no "
                "--signing-key: the commits its commands make are unsigned, and the reconciler refuses them; start "
                "it with --signing-key KEY (grayops' key)"), warned
        status, _ = post(url, slash("/pause", "billing on call says stop", trigger="t-1",
                                    response_url=fake_slack.response_url("t-1")))
        assert status == 200
        pause = wait_for(lambda: any(e[0].startswith("pause billing") for e in fleet.signatures())
                         and fleet.commit_of("pause billing"), what="the pause commit on the remote")
        if signed:
            assert pause[1:] == ("G", fleet.own.key_id)
            wait_phase(fleet.human, "Paused", timeout=60)
            assert "untrusted_revision" not in fleet.log.read_text()
        else:
            assert pause[1] == "N"
            commit = git(fleet.human.remote, "log", "-1", "--format=%H", "--grep=^pause billing", "main").strip()
            refusal = f"untrusted: commit {commit[:12]} by grayops <grayops@localhost>: unsigned"
            wait_for(lambda: any("ALERT untrusted_revision (critical)" in line and refusal in line
                                 for line in fleet.log.read_text().splitlines()),
                     what=f"the refusal of the unsigned pause:\n{fleet.tail()}")
            assert (remote_status(fleet.human, "billing") or {})["phase"] != "Paused"
    finally:
        assert stop_process(bot) == 0, bot_log.read_text()[-3000:]


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_which_configuration_signs_a_clones_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon's clone without a key never falls back on ~/.gitconfig but keeps what its clone was told (the
    reconciler's key in a shared --workdir); a command's clone follows git's configuration; a key is written."""
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.adapters.trust.commits import signing_config
    from reconciler.shell.trust import SupplyChain

    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": "x: 1\n"})
    alice, own = ssh_signer(tmp_path, "alice"), ssh_signer(tmp_path, "grayops")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", _git_config(tmp_path / "gitconfig", alice)["GIT_CONFIG_GLOBAL"])

    made = itertools.count()

    def signed(workdir: str, signing: tuple[tuple[str, str], ...] | None) -> bool:
        """Whether a commit made by a GitRepo on `workdir` with `signing` carries a signature."""
        repo = GitRepo(str(human.remote), tmp_path / workdir, signing=signing)
        repo.ensure_clone()
        assert repo.commit({f"{workdir}.txt": str(next(made))}, workdir)
        return "\ngpgsig " in git(repo.path, "cat-file", "commit", "HEAD")

    def key_of(workdir: str) -> str:
        return git(tmp_path / workdir / "repo", "config", "--get", "user.signingkey").strip()

    assert not signed("daemon", ())  # not with alice's global key
    assert signed("command", None) and key_of("command") == str(alice.key)
    assert signed("bot", signing_config(str(own.key)).config) and key_of("bot") == str(own.key.resolve())
    assert signed("bot", ()) and key_of("bot") == str(own.key.resolve())  # a clone that signs keeps it
    SupplyChain.open(None, None).sign_in(tmp_path / "bot" / "repo")
    assert not signed("bot", ())  # a reconciler started without a key signs nothing
