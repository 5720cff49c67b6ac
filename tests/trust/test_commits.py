"""Commit signatures verified by git against the trust roots: SSH (ssh-keygen through git's gpg.format ssh) and
OpenPGP (gnupg), good, missing, tampered, unknown and expired; the revision rule; grayops signing its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.adapters.trust.commits import CommitVerifier, SigningKeyError, signing_config
from reconciler.adapters.trust.roots import TrustRoots, load_trust_roots
from tests.trust.signers import GpgSigner, SshSigner, commit, gpg_signer, new_repo, run, ssh_signer


@dataclass(frozen=True)
class People:
    alice: SshSigner  # allowed
    mallory: SshSigner  # not allowed
    grayops: SshSigner  # grayops' own key, allowed
    carol: SshSigner  # allowed until 2020 only
    bob: GpgSigner  # allowed (OpenPGP)
    eve: GpgSigner  # not in the roots (OpenPGP)
    old: GpgSigner  # in the roots, but its key expired in 2021


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    root = Path(tmp_path_factory.mktemp("people"))
    made = People(ssh_signer(root, "alice"), ssh_signer(root, "mallory"), ssh_signer(root, "grayops"),
                  ssh_signer(root, "carol"), gpg_signer(root, "bob"), gpg_signer(root, "eve"),
                  gpg_signer(root, "old", faked_time="20200101T000000", expires="1y"))
    yield made
    for signer in (made.bob, made.eve, made.old):
        signer.stop()


@pytest.fixture(scope="module")
def roots(people: People, tmp_path_factory: pytest.TempPathFactory) -> TrustRoots:
    trust = Path(tmp_path_factory.mktemp("trust"))
    (trust / "allowed_signers").write_text(people.alice.line() + people.grayops.line() +
                                           people.carol.line('valid-before="20200101"'))
    people.bob.export(trust / "bob.asc")
    people.old.export(trust / "old.asc")
    return load_trust_roots(trust)


@pytest.fixture(scope="module")
def verifier(roots: TrustRoots) -> Iterator[CommitVerifier]:
    with CommitVerifier(roots) as made:
        yield made


def test_an_ssh_signed_commit_of_an_allowed_signer_verifies(tmp_path: Path, people: People,
                                                            verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    sha = commit(repo, "billing 1.5.0", options=people.alice.options())
    found = verifier.verify(repo, sha)
    assert found.status == "verified"
    assert (found.signer, found.key, found.author) == ("alice@example.com", people.alice.key_id,
                                                       "Alice Ops <alice@example.com>")


def test_an_openpgp_signed_commit_of_a_trusted_key_verifies(tmp_path: Path, people: People,
                                                            verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    sha = commit(repo, "billing 1.5.0", options=people.bob.options(), env=people.bob.env())
    found = verifier.verify(repo, sha)
    assert found.status == "verified"
    assert (found.signer, found.key) == ("Bob <bob@example.com>", people.bob.fingerprint)


@pytest.mark.parametrize(("who", "status", "reason"), [
    ("nobody", "unsigned", "unsigned"),
    ("mallory", "unknown_signer", "signed by a key that is not an allowed signer"),
    ("carol", "expired", "signed outside the signer's validity in allowed_signers"),
    ("eve", "unknown_signer", "signed by a key that is not among the trusted keys"),
    ("old", "expired", "signed by an expired key"),
])
def test_a_commit_not_signed_by_an_allowed_signer_in_force_is_refused_with_the_reason(
        tmp_path: Path, people: People, verifier: CommitVerifier, who: str, status: str, reason: str) -> None:
    repo = new_repo(tmp_path / "repo")
    signer = getattr(people, who, None)
    sha = commit(repo, "billing 1.5.0", options=signer.options() if signer else None,
                 env=signer.env() if isinstance(signer, GpgSigner) else None)
    found = verifier.verify(repo, sha)
    assert found.status == status
    assert (found.reason or "").startswith(reason)
    assert found.line().startswith(f"commit {sha[:12]} by Alice Ops <alice@example.com>: {reason}")


def test_a_tampered_commit_is_a_bad_signature(tmp_path: Path, people: People, verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    sha = commit(repo, "billing 1.5.0", options=people.alice.options())
    altered = tmp_path / "altered"
    altered.write_text(run("git", "cat-file", "commit", sha, cwd=repo).replace("billing 1.5.0", "billing 6.6.6"))
    forged = run("git", "hash-object", "-t", "commit", "-w", str(altered), cwd=repo).strip()
    found = verifier.verify(repo, forged)
    assert found.status == "bad_signature"
    assert not found.verified


def test_a_commit_that_does_not_exist_is_refused_not_raised(tmp_path: Path, verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(repo, "first")
    found = verifier.verify(repo, "0" * 40)
    assert found.status == "error" and "git cannot show it" in (found.reason or "")


# --- the revision rule ------------------------------------------------------------------------------------


def test_a_signed_head_vouches_for_the_unsigned_commits_below_it(tmp_path: Path, people: People,
                                                                 verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(repo, "unsigned work")
    commit(repo, "more unsigned work")
    head = commit(repo, "reviewed and signed", options=people.alice.options())
    found = verifier.verify_revision(repo, head, own_keys=[people.grayops.key_id])
    assert found.verified and found.decided_by == head and found.signer == "alice@example.com"


def test_grayops_own_commits_vouch_for_nothing_below_them(tmp_path: Path, people: People,
                                                          verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    commit(repo, "signed base", options=people.alice.options())
    pushed = commit(repo, "billing 6.6.6", author="Mallory <mallory@example.com>")  # unsigned push
    commit(repo, "status: billing", options=people.grayops.options(), author="grayops <grayops@localhost>")
    head = commit(repo, "status: billing", options=people.grayops.options(), author="grayops <grayops@localhost>")

    found = verifier.verify_revision(repo, head, own_keys=[people.grayops.key_id])

    assert found.status == "unsigned"
    assert (found.commit, found.decided_by, found.author) == (head, pushed, "Mallory <mallory@example.com>")
    # without its key named as its own, grayops' signature would vouch (so part of the rule is knowing it)
    assert verifier.verify_revision(repo, head).verified


def test_grayops_commits_over_a_signed_commit_or_a_verified_revision_pass(tmp_path: Path, people: People,
                                                                          verifier: CommitVerifier) -> None:
    repo = new_repo(tmp_path / "repo")
    signed = commit(repo, "billing 1.5.0", options=people.bob.options(), env=people.bob.env())
    head = commit(repo, "status: billing", options=people.grayops.options())
    found = verifier.verify_revision(repo, head, own_keys=[people.grayops.key_id])
    assert found.verified and found.decided_by == signed and found.signer == "Bob <bob@example.com>"

    later = commit(repo, "status: billing", options=people.grayops.options())
    walked = verifier.verify_revision(repo, later, own_keys=[people.grayops.key_id], known_good=[head])
    assert walked.verified and walked.decided_by == head


# --- signing grayops' own commits ---------------------------------------------------------------------------


def test_grayops_signs_with_an_ssh_key_and_its_commits_are_its_own(tmp_path: Path, people: People,
                                                                   verifier: CommitVerifier) -> None:
    config = signing_config(str(people.grayops.key))
    assert config.format == "ssh" and config.key_id == people.grayops.key_id
    repo = new_repo(tmp_path / "repo")
    sha = commit(repo, "status: billing", options=config.options())
    found = verifier.verify(repo, sha)
    assert found.verified and found.key == config.key_id


def test_grayops_signs_with_an_openpgp_key_id(tmp_path: Path, people: People, verifier: CommitVerifier) -> None:
    config = signing_config("bob@example.com", env={**os.environ, **people.bob.env()})
    assert config.format == "openpgp" and config.key_id == people.bob.fingerprint
    repo = new_repo(tmp_path / "repo")
    sha = commit(repo, "status: billing", options=config.options(), env=people.bob.env())
    assert verifier.verify(repo, sha).key == people.bob.fingerprint


def test_a_signing_key_that_cannot_sign_unattended_is_refused_with_what_to_do(tmp_path: Path,
                                                                              people: People) -> None:
    open_key = tmp_path / "open.key"
    open_key.write_bytes(people.alice.key.read_bytes())
    open_key.chmod(0o644)
    with pytest.raises(SigningKeyError, match=r"readable by others \(mode 0644\).*make it 0600"):
        signing_config(str(open_key))
    locked = tmp_path / "locked.key"
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "a passphrase", "-f", str(locked))
    with pytest.raises(SigningKeyError, match="the key must have no passphrase"):
        signing_config(str(locked))
    with pytest.raises(SigningKeyError, match="cannot be read"):
        signing_config(str(tmp_path / "missing.key"))
    with pytest.raises(SigningKeyError, match="neither an SSH key file nor an OpenPGP secret key"):
        signing_config("nobody@example.com", env={**os.environ, **people.bob.env()})
