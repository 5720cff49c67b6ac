"""Image signatures in cosign's classic layout, verified with the trusted artifact keys.

Owns (README "Supply chain"): finding the signature of a digest where cosign stores it, the manifest at tag
`sha256-<hex>.sig` in the image's repository; reading each of its layers of media type
`application/vnd.dev.cosign.simplesigning.v1+json` (the payload, fetched by digest and checked) with its
`dev.cosignproject.cosign/signature` annotation (the base64 signature over the payload's bytes); and deciding.
The digest is verified when one layer's payload names exactly that digest as a cosign container image signature
(`reconciler.core.trust.payload_problem`) and its signature verifies with one of the trusted keys. Anything else
is refused with the reason: no signature, a malformed one, a payload naming another digest, or no trusted key
verifying it (forged, or made with a key not in the trust roots). Never raises.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.adapters.trust.keys import ArtifactKey
from reconciler.adapters.trust.oci import RegistryClient, RegistryFailure, Repository, tag_for
from reconciler.core.trust import payload_problem

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
MAX_PAYLOAD_BYTES = 64 << 10
MAX_LAYERS = 32  # signatures read from one .sig manifest


@dataclass(frozen=True)
class SignatureVerified:
    digest: str
    key: ArtifactKey  # the trusted key that verified it

    @property
    def key_id(self) -> str:
        return self.key.key_id


RefusalKind = Literal["missing", "untrusted", "malformed", "unreachable"]


@dataclass(frozen=True)
class SignatureRefused:
    digest: str
    kind: RefusalKind  # unreachable: the registry did not answer, the same check may pass later
    reason: str


def verify_image_signature(client: RegistryClient, repo: Repository, digest: str, keys: Sequence[ArtifactKey]
                           ) -> SignatureVerified | SignatureRefused:
    """Whether a trusted key signed `digest` in `repo`, as cosign signs."""
    ref = f"{repo}:{tag_for(digest, '.sig')}"
    if not keys:
        return SignatureRefused(digest, "untrusted", "no artifact keys in the trust roots (*.pem): nothing can verify")
    manifest = client.resolve(repo, tag_for(digest, ".sig"))
    if isinstance(manifest, RegistryFailure):
        return _refused_by_registry(digest, manifest, f"no signature: {ref} is not in the registry")
    layers = [layer for layer in manifest.layers if layer.media_type == SIMPLE_SIGNING][:MAX_LAYERS]
    if not layers:
        return SignatureRefused(digest, "malformed", f"{ref}: no layer of media type {SIMPLE_SIGNING}")
    problems: dict[str, None] = {}
    for layer in layers:
        signature = layer.annotations.get(SIGNATURE_ANNOTATION)
        if not signature:
            problems[f"layer {layer.digest[:19]} has no {SIGNATURE_ANNOTATION} annotation"] = None
            continue
        payload = client.blob(repo, layer.digest, limit=MAX_PAYLOAD_BYTES)
        if isinstance(payload, RegistryFailure):
            if payload.kind == "unreachable":
                return SignatureRefused(digest, "unreachable", payload.message)
            problems[payload.message] = None
            continue
        found = check_signed_payload(payload, signature, digest, keys)
        if isinstance(found, ArtifactKey):
            return SignatureVerified(digest, found)
        problems[found] = None
    kind: RefusalKind = "untrusted" if any("no trusted key" in p for p in problems) else "malformed"
    return SignatureRefused(digest, kind, f"{ref}: " + "; ".join(problems))


def check_signed_payload(payload: bytes, signature: str, digest: str, keys: Sequence[ArtifactKey]
                         ) -> ArtifactKey | str:
    """The trusted key whose signature `signature` (base64) is over `payload`, a payload that signs `digest`; or
    why not. Pure."""
    problem = payload_problem(payload, digest)
    if problem:
        return problem
    try:
        raw = base64.b64decode("".join(signature.split()), validate=True)
    except (binascii.Error, ValueError):
        return "the signature annotation is not base64"
    for key in keys:
        if key.verify(raw, payload):
            return key
    return f"no trusted key verifies the signature (forged, or made with a key not in the trust roots; tried " \
           f"{', '.join(k.key_id for k in keys)})"


def _refused_by_registry(digest: str, failure: RegistryFailure, missing: str) -> SignatureRefused:
    if failure.kind == "unreachable":
        return SignatureRefused(digest, "unreachable", failure.message)
    if failure.kind == "not_found":
        return SignatureRefused(digest, "missing", missing)
    return SignatureRefused(digest, "malformed", failure.message)
