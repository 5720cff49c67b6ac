"""Trust roots read from a directory: every kind of key, the layout of a mounted Kubernetes Secret, and each
malformed file an error naming it and why, never skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from reconciler.adapters.trust.roots import TrustRootsError, load_trust_roots
from tests.trust.registry import key_id, public_pem
from tests.trust.signers import GpgSigner, SshSigner, gpg_signer, run, ssh_signer


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> SshSigner:
    return ssh_signer(Path(tmp_path_factory.mktemp("alice")), "alice")


@pytest.fixture(scope="module")
def bob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgSigner]:
    made = gpg_signer(Path(tmp_path_factory.mktemp("bob")), "bob")
    yield made
    made.stop()


def test_every_kind_of_key_is_read_with_its_id(tmp_path: Path, alice: SshSigner, bob: GpgSigner) -> None:
    cosign, ed = ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "allowed_signers").write_text("# commit signers\n\n" + alice.line('namespaces="git"'))
    bob.export(tmp_path / "bob.asc")
    (tmp_path / "cosign.pub").write_bytes(public_pem(cosign))
    (tmp_path / "release.pem").write_bytes(public_pem(ed))

    roots = load_trust_roots(tmp_path)

    assert [(s.principals, s.key_id) for s in roots.ssh_signers] == [(("alice@example.com",), alice.key_id)]
    assert [(k.fingerprint, k.user_ids) for k in roots.openpgp_keys] == [(bob.fingerprint, ("Bob <bob@example.com>",))]
    assert [(k.key_id, k.algorithm, k.source) for k in roots.artifact_keys] == [
        (key_id(cosign), "ecdsa-p256", str(tmp_path / "cosign.pub")),
        (key_id(ed), "ed25519", str(tmp_path / "release.pem"))]
    assert roots.has_commit_key(alice.key_id) and roots.has_commit_key(bob.fingerprint.lower())
    assert roots.describe() == (f"trust roots in {tmp_path}: 1 SSH signer(s), 1 OpenPGP key(s), 2 artifact key(s) "
                                f"({key_id(cosign)}, {key_id(ed)})")


def test_a_mounted_secret_is_read_through_its_links_and_its_dot_entries_are_skipped(tmp_path: Path) -> None:
    """kubelet's layout: `..2025_03_01/cosign.pub`, `..data -> ..2025_03_01`, `cosign.pub -> ..data/cosign.pub`."""
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "..2025_03_01").mkdir()
    (tmp_path / "..2025_03_01" / "cosign.pub").write_bytes(public_pem(key))
    os.symlink("..2025_03_01", tmp_path / "..data")
    os.symlink("..data/cosign.pub", tmp_path / "cosign.pub")
    assert [k.key_id for k in load_trust_roots(tmp_path).artifact_keys] == [key_id(key)]


def errors_of(directory: Path) -> list[str]:
    with pytest.raises(TrustRootsError) as raised:
        load_trust_roots(directory)
    return list(raised.value.errors)


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, private: bool = False) -> bytes:
    if private:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def test_each_malformed_file_is_an_error_naming_it_and_why_and_all_are_reported(tmp_path: Path,
                                                                                alice: SshSigner) -> None:
    ed_key = alice.public.split()[1]
    (tmp_path / "allowed_signers").write_text(
        alice.line()
        + f"bob@example.com ssh-ed25519 {ed_key[:-4]}!!!!\n"
        + f"carol@example.com verify-after=\"20250101\" ssh-ed25519 {ed_key}\n"
        + f"dave@example.com ecdsa-sha2-nistp256 {ed_key}\n"
        + "erin@example.com ssh-dss AAAA\n"
        + f"frank@example.com valid-before=\"tomorrow\" ssh-ed25519 {ed_key}\n")
    (tmp_path / "garbage.pem").write_text("hello\n")
    (tmp_path / "rsa.pem").write_bytes(pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    (tmp_path / "p384.pem").write_bytes(pem(ec.generate_private_key(ec.SECP384R1())))
    (tmp_path / "private.pem").write_bytes(pem(ec.generate_private_key(ec.SECP256R1()), private=True))
    (tmp_path / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    (tmp_path / "garbage.asc").write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n")
    (tmp_path / "empty.gpg").write_bytes(b"")
    (tmp_path / "README.md").write_text("the keys\n")
    (tmp_path / "keys").mkdir()

    errors = errors_of(tmp_path)

    d = tmp_path
    expected = [
        f"{d}/allowed_signers:2: the ssh-ed25519 key is not base64",
        f"{d}/allowed_signers:3: unknown option 'verify-after' (one of cert-authority, namespaces, valid-after, "
        f"valid-before)",
        f"{d}/allowed_signers:4: the key is not an ecdsa-sha2-nistp256 key (it says ssh-ed25519)",
        f"{d}/allowed_signers:5: unknown key type 'ssh-dss'",
        f"{d}/allowed_signers:6: option valid-before: \"tomorrow\" is not a time (YYYYMMDD[HHMM[SS]][Z])",
        f"{d}/broken.pub: not a readable public key",
        f"{d}/empty.gpg: empty",
        f"{d}/garbage.asc: not an OpenPGP public key",
        f"{d}/garbage.pem: no PEM block (-----BEGIN PUBLIC KEY-----)",
        f"{d}/keys: not a regular file",
        f"{d}/p384.pem: an ECDSA key on secp384r1; artifact keys are ECDSA P-256 or Ed25519",
        f"{d}/private.pem: a private key; trust roots hold public keys only",
        f"{d}/README.md: not a trust root file (allowed_signers, *.asc or *.gpg for commit signers, *.pem or *.pub "
        f"for artifact signers)",
        f"{d}/rsa.pem: an RSA key; artifact keys are ECDSA P-256 or Ed25519",
    ]
    assert len(errors) == len(expected), errors
    for line in expected:
        assert any(e.startswith(line) for e in errors), (line, errors)


def test_a_secret_openpgp_key_and_a_key_listed_twice_are_refused(tmp_path: Path, bob: GpgSigner) -> None:
    (tmp_path / "bob-secret.asc").write_text(run("gpg", "--batch", "--armor", "--export-secret-keys",
                                                 bob.fingerprint, env=bob.env()))
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "a.pem").write_bytes(public_pem(key))
    (tmp_path / "b.pem").write_bytes(public_pem(key))
    assert errors_of(tmp_path) == [
        f"{tmp_path}/bob-secret.asc: holds a secret key; trust roots hold public keys only",
        f"{tmp_path}/b.pem: the same key as {tmp_path}/a.pem ({key_id(key)})"]


def test_a_missing_directory_is_an_error_and_an_empty_one_trusts_nothing(tmp_path: Path) -> None:
    assert errors_of(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: cannot be read (No such file or directory)"]
    roots = load_trust_roots(tmp_path)
    assert (roots.commit_signers, roots.artifact_keys) == (0, ())
