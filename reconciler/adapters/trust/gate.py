"""The artifact gate: one call per rollout start, before the first instance is touched.

Owns the order of the checks and what each failure means (README "Supply chain"):

1. preflight: `image:version` resolves in the registry to a digest (a bad tag is `artifact_missing` in seconds);
2. with `trust.artifacts.required`: a trusted key signed that digest, cosign's way (`artifact_untrusted`);
3. with the policy's `scan`: the digest's vulnerability report exists and passes (`scan_blocked`, with the ids).

A registry that does not answer at any step is `registry_unreachable` (blocked now, may pass on a later call with
nothing changed). The answer is `ArtifactAllowed` (the digest to pin for every instance, the signer's key id, the
scan summary) or `ArtifactBlocked` (the alert kind and the reason). Nothing here skips a check that was asked for,
and nothing raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from reconciler.adapters.trust.cosign import SignatureRefused, verify_image_signature
from reconciler.adapters.trust.keys import ArtifactKey
from reconciler.adapters.trust.oci import RegistryClient, RegistryFailure, parse_repository
from reconciler.adapters.trust.reports import read_scan_report
from reconciler.core.spec import ScanSpec
from reconciler.core.trust import (
    ArtifactAllowed,
    ArtifactBlocked,
    ArtifactDecision,
    BlockKind,
    ReportError,
    ScanJudgement,
    judge_scan,
)


def check_artifact(client: RegistryClient, keys: Sequence[ArtifactKey], image: str, version: str, *,
                   signature_required: bool, scan: ScanSpec | None, now: datetime) -> ArtifactDecision:
    """Whether `image:version` may be rolled out, and as which digest. `keys` are the trust roots' artifact keys."""
    repo = parse_repository(image)
    if isinstance(repo, str):
        return ArtifactBlocked(image, version, "artifact_missing", repo)
    resolved = client.resolve(repo, version)
    if isinstance(resolved, RegistryFailure):
        return _blocked_by_registry(image, version, resolved, None)
    digest = resolved.digest
    signer: str | None = None
    if signature_required:
        signature = verify_image_signature(client, repo, digest, keys)
        if isinstance(signature, SignatureRefused):
            kind: BlockKind = "registry_unreachable" if signature.kind == "unreachable" else "artifact_untrusted"
            return ArtifactBlocked(image, version, kind, signature.reason, digest)
        signer = signature.key_id
    summary = None
    if scan is not None:
        report = read_scan_report(client, repo, digest, scan, image, version)
        if isinstance(report, RegistryFailure):
            return _blocked_by_registry(image, version, report, digest)
        if isinstance(report, ReportError):
            return ArtifactBlocked(image, version, "scan_blocked", report.message, digest)
        judgement = judge_scan(report, scan, now)
        if not judgement.passed:
            return ArtifactBlocked(image, version, "scan_blocked", f"{report.source}: {judgement.reason}", digest)
        summary = judgement.summary
    return ArtifactAllowed(image, version, digest, signer, summary)


def preview_scan(client: RegistryClient, image: str, version: str, scan: ScanSpec, now: datetime
                 ) -> tuple[str, ScanJudgement] | str:
    """For `grayops plan`: the digest `image:version` names now and how its report fares against `scan`, or why
    that is not known (one line). Signatures are not looked at: the rollout's gate does that."""
    repo = parse_repository(image)
    if isinstance(repo, str):
        return repo
    resolved = client.resolve(repo, version)
    if isinstance(resolved, RegistryFailure):
        return resolved.message
    report = read_scan_report(client, repo, resolved.digest, scan, image, version)
    if isinstance(report, RegistryFailure | ReportError):
        return report.message
    return resolved.digest, judge_scan(report, scan, now)


def _blocked_by_registry(image: str, version: str, failure: RegistryFailure, digest: str | None) -> ArtifactBlocked:
    if failure.kind == "unreachable":
        return ArtifactBlocked(image, version, "registry_unreachable", failure.message, digest)
    if failure.kind == "not_found" and digest is None:
        return ArtifactBlocked(image, version, "artifact_missing", failure.message)
    return ArtifactBlocked(image, version, "artifact_untrusted", failure.message, digest)
