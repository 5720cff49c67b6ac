"""Image signatures in cosign's layout, against the real registry: signatures cosign itself produced (the vectors in
tests/trust/data, see its README) and signatures made here with `cryptography`, good and forged."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from reconciler.adapters.trust.cosign import (
    SignatureRefused,
    SignatureVerified,
    check_signed_payload,
    verify_image_signature,
)
from reconciler.adapters.trust.keys import ArtifactKey, parse_pem_keys
from reconciler.adapters.trust.oci import RegistryClient, Repository
from tests.trust.registry import OCI_MANIFEST, Registry, digest_of, key_id, public_pem, simple_signing

DATA = Path(__file__).parent / "data"
V3_SUBJECT = "sha256:f20c43161d73848408ef247f0ec7111b19fe58ffebc0cbcaa0d2c8bda4967268"
V1_SUBJECT = "sha256:4c1c50d0ffc614f90b93b07d778028dc765548e823f676fb027f61d281ac380d"


def keys_of(pem: bytes, name: str = "k.pem") -> list[ArtifactKey]:
    found = parse_pem_keys(pem, name)
    assert isinstance(found, list), found
    return found


def repo_of(registry: Registry, name: str) -> Repository:
    return Repository(registry.host, name)


def push_verbatim(registry: Registry, repo: str, prefix: str, subject: str) -> None:
    """A signature exactly as cosign pushed it: its blobs, then its manifest's bytes at the `.sig` tag."""
    manifest = (DATA / f"{prefix}.sig-manifest.json").read_bytes()
    for part in ("config", "payload"):
        data = (DATA / f"{prefix}.{part}.json").read_bytes()
        named = [d for d in json.loads(manifest)["layers"] + [json.loads(manifest)["config"]]
                 if d["digest"] == digest_of(data)]
        assert named and named[0]["size"] == len(data), f"{prefix}.{part}.json is not the blob the manifest names"
        registry.push_blob(repo, data)
    registry.push_manifest(repo, subject.replace(":", "-") + ".sig", manifest, OCI_MANIFEST)


# --- cosign's own signatures --------------------------------------------------------------------------------


def test_a_signature_cosign_v3_pushed_verifies_with_its_public_key(registry: Registry,
                                                                   client: RegistryClient) -> None:
    push_verbatim(registry, "tobby/fixture", "cosign-v3", V3_SUBJECT)
    keys = keys_of((DATA / "cosign-v3.pub").read_bytes(), "cosign.pub")
    assert keys[0].fingerprint == "sha256:dc2bcfdb0402cd0845f59232655c3ab2a53d55849d4665579efe45c6cc753478"

    found = verify_image_signature(client, repo_of(registry, "tobby/fixture"), V3_SUBJECT, keys)

    assert isinstance(found, SignatureVerified)
    assert found.key_id == "sha256:dc2bcfdb0402cd08"


def test_cosigns_signature_is_refused_for_another_digest_and_by_other_keys(registry: Registry,
                                                                           client: RegistryClient) -> None:
    push_verbatim(registry, "tobby/moved", "cosign-v3", V3_SUBJECT)
    repo = repo_of(registry, "tobby/moved")
    other = keys_of(public_pem(ec.generate_private_key(ec.SECP256R1())))
    refused = verify_image_signature(client, repo, V3_SUBJECT, other)
    assert isinstance(refused, SignatureRefused) and refused.kind == "untrusted"
    assert "no trusted key verifies the signature" in refused.reason

    # the same signature copied to another digest's .sig tag: the payload still names the first digest
    another = "sha256:" + "e" * 64
    registry.push_manifest("tobby/moved", another.replace(":", "-") + ".sig",
                           (DATA / "cosign-v3.sig-manifest.json").read_bytes())
    copied = verify_image_signature(client, repo, another, keys_of((DATA / "cosign-v3.pub").read_bytes()))
    assert isinstance(copied, SignatureRefused)
    assert f"the signed payload names {V3_SUBJECT}, not {another}" in copied.reason


def test_a_real_cosign_signature_by_a_key_not_in_the_roots_is_refused(registry: Registry,
                                                                       client: RegistryClient) -> None:
    push_verbatim(registry, "chihjenhuang/cosign1", "cosign-v1.13", V1_SUBJECT)
    found = verify_image_signature(client, repo_of(registry, "chihjenhuang/cosign1"), V1_SUBJECT,
                                   keys_of((DATA / "cosign-v3.pub").read_bytes()))
    assert isinstance(found, SignatureRefused) and found.kind == "untrusted"
    assert "tried sha256:dc2bcfdb0402cd08" in found.reason


def test_our_test_signatures_use_cosigns_payload_bytes() -> None:
    assert simple_signing("localhost:15381/tobby/fixture", V3_SUBJECT) == \
        (DATA / "cosign-v3.payload.json").read_bytes()


@pytest.mark.parametrize("name", ["sigstore-rs-keyed", "sigstore-rs-keyless"])
def test_cosign_signatures_published_by_sigstore_rs_verify(name: str) -> None:
    payload = (DATA / f"{name}.payload.json").read_bytes()
    if name.endswith("keyless"):  # a Fulcio certificate: grayops trusts its key, as a PEM public key
        cert = x509.load_pem_x509_certificate((DATA / f"{name}.cert.pem").read_bytes())
        pem = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        pem = (DATA / f"{name}.pub").read_bytes()
    keys = keys_of(pem)
    signature = (DATA / f"{name}.sig").read_text()
    named = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]

    assert check_signed_payload(payload, signature, named, keys) is keys[0]
    assert "not" in str(check_signed_payload(payload, signature, "sha256:" + "0" * 64, keys))
    tampered = payload.replace(b"registry-testing", b"registry-testinG")
    assert "no trusted key" in str(check_signed_payload(tampered, signature, named, keys))


# --- signatures made here -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def trusted(*private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> list[ArtifactKey]:
    return [k for key in private for k in keys_of(public_pem(key))]


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ed25519"])
def test_a_digest_signed_by_a_trusted_key_verifies_with_that_keys_id(registry: Registry, client: RegistryClient,
                                                                     algorithm: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1()) if algorithm == "ecdsa-p256" else \
        ed25519.Ed25519PrivateKey.generate()
    digest = registry.push_image(f"plugins/{algorithm}", "1.0.0")
    registry.sign(f"plugins/{algorithm}", digest, [key])
    other = ec.generate_private_key(ec.SECP256R1())

    found = verify_image_signature(client, repo_of(registry, f"plugins/{algorithm}"), digest, trusted(other, key))

    assert isinstance(found, SignatureVerified)
    assert found.key_id == key_id(key)
    assert found.key.algorithm == algorithm


def refused(client: RegistryClient, registry: Registry, repo: str, digest: str,
            keys: Sequence[ArtifactKey]) -> SignatureRefused:
    found = verify_image_signature(client, repo_of(registry, repo), digest, keys)
    assert isinstance(found, SignatureRefused), found
    return found


def test_an_unsigned_digest_is_refused_as_missing(registry: Registry, client: RegistryClient,
                                                  signer: ec.EllipticCurvePrivateKey) -> None:
    digest = registry.push_image("plugins/unsigned", "1.0.0")
    found = refused(client, registry, "plugins/unsigned", digest, trusted(signer))
    assert found.kind == "missing"
    assert found.reason == (f"no signature: {registry.host}/plugins/unsigned:{digest.replace(':', '-')}.sig is not "
                            f"in the registry")


def test_a_forged_signature_is_refused(registry: Registry, client: RegistryClient,
                                       signer: ec.EllipticCurvePrivateKey) -> None:
    digest = registry.push_image("plugins/forged", "1.0.0")
    registry.sign("plugins/forged", digest, [ec.generate_private_key(ec.SECP256R1())])  # a key nobody trusts
    found = refused(client, registry, "plugins/forged", digest, trusted(signer))
    assert found.kind == "untrusted"
    assert "no trusted key verifies the signature" in found.reason


def test_a_trusted_signature_over_a_payload_naming_another_digest_is_refused(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey) -> None:
    good = registry.push_image("plugins/swap", "1.0.0", content="good")
    evil = registry.push_image("plugins/swap", "1.0.1", content="evil")
    registry.sign("plugins/swap", evil, [signer], names=good)  # the good image's signature, put on the evil one
    found = refused(client, registry, "plugins/swap", evil, trusted(signer))
    assert f"the signed payload names {good}, not {evil}" in found.reason


@pytest.mark.parametrize(("signature", "reason"), [
    ("%%% not base64 %%%", "the signature annotation is not base64"),
    ("", "has no dev.cosignproject.cosign/signature annotation"),
])
def test_a_malformed_signature_is_refused_naming_the_signature_reference(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey, signature: str,
        reason: str) -> None:
    repo = f"plugins/malformed-{len(signature)}"
    digest = registry.push_image(repo, "1.0.0")
    registry.sign(repo, digest, [signer], signature=signature)
    found = refused(client, registry, repo, digest, trusted(signer))
    assert found.kind == "malformed"
    assert found.reason.startswith(f"{registry.host}/{repo}:{digest.replace(':', '-')}.sig: ")
    assert reason in found.reason


def test_one_trusted_signature_among_others_is_enough(registry: Registry, client: RegistryClient,
                                                      signer: ec.EllipticCurvePrivateKey) -> None:
    digest = registry.push_image("plugins/cosigned", "1.0.0")
    registry.sign("plugins/cosigned", digest, [ec.generate_private_key(ec.SECP256R1()), signer])
    found = verify_image_signature(client, repo_of(registry, "plugins/cosigned"), digest, trusted(signer))
    assert isinstance(found, SignatureVerified) and found.key_id == key_id(signer)


def test_a_signature_manifest_without_simple_signing_layers_and_empty_roots_are_refused(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey) -> None:
    digest = registry.push_image("plugins/odd", "1.0.0")
    registry.push_image("plugins/odd", digest.replace(":", "-") + ".sig")  # an image where a signature belongs
    assert "no layer of media type application/vnd.dev.cosign.simplesigning.v1+json" in \
        refused(client, registry, "plugins/odd", digest, trusted(signer)).reason
    assert refused(client, registry, "plugins/odd", digest, []).reason.startswith("no artifact keys")
    assert base64  # the module is used by the helpers' signatures
