"""The vulnerability report of an image digest: found in the registry or at a URL, read, never assumed.

Owns where a Trivy JSON report (`trivy image --format json`) is read from (README "Supply chain"):

- from the registry, as an OCI 1.1 referrer of the digest whose artifactType is `REPORT_ARTIFACT_TYPE` (the
  referrers API, or its `sha256-<hex>` tag index fallback), pushed for example with
  `oras attach --artifact-type application/vnd.grayops.trivy.report.v1+json IMAGE@DIGEST report.json:application/json`;
  the report manifest must name the digest as its `subject` and have one layer, the report. With several reports
  the newest by `org.opencontainers.image.created` counts (a rescan with a newer vulnerability database);
- or from `scan.reportUrl`, a URL template with `{image}`, `{repository}`, `{version}` and `{digest}`; such a report
  must name the digest in `Metadata.RepoDigests`, as `trivy image` writes it for an image from a registry.

A report that is missing, unreadable, of another digest or not Trivy JSON is a `ReportError` naming where it was
looked for: the gate blocks on it. A registry that does not answer is a `RegistryFailure` (transient).
"""

from __future__ import annotations

from urllib.parse import quote

from reconciler.adapters.trust.oci import Descriptor, RegistryClient, RegistryFailure, Repository, tag_for
from reconciler.core.spec import ScanSpec
from reconciler.core.trust import ReportError, ScanReport, parse_trivy_report

REPORT_ARTIFACT_TYPE = "application/vnd.grayops.trivy.report.v1+json"
CREATED = "org.opencontainers.image.created"


def read_scan_report(client: RegistryClient, repo: Repository, digest: str, spec: ScanSpec, image: str,
                     version: str) -> ScanReport | ReportError | RegistryFailure:
    """The report of `digest` that `spec` says where to find."""
    if spec.report_url:
        return _from_url(client, spec.report_url, repo, digest, image, version)
    return _from_registry(client, repo, digest)


def _from_registry(client: RegistryClient, repo: Repository, digest: str
                   ) -> ScanReport | ReportError | RegistryFailure:
    ref = f"{repo}@{digest}"
    found = client.referrers(repo, digest, REPORT_ARTIFACT_TYPE)
    if isinstance(found, RegistryFailure):
        return found if found.kind == "unreachable" else ReportError(f"no vulnerability report: {found.message}")
    if not found:
        return ReportError(f"no vulnerability report for {ref}: no referrer of artifactType {REPORT_ARTIFACT_TYPE} "
                           f"(referrers API or tag {tag_for(digest)})")
    newest = max(found, key=_age)
    source = f"{repo}@{newest.digest}"
    manifest = client.manifest(repo, newest.digest)
    if isinstance(manifest, RegistryFailure):
        return manifest if manifest.kind == "unreachable" else ReportError(f"report {manifest.message}")
    if manifest.subject != digest:
        return ReportError(f"report {source} refers to {manifest.subject or 'nothing'}, not {digest}")
    layers = manifest.layers
    if len(layers) != 1:
        return ReportError(f"report {source}: {len(layers)} layers; a report manifest has one, the report")
    data = client.blob(repo, layers[0].digest)
    if isinstance(data, RegistryFailure):
        return data if data.kind == "unreachable" else ReportError(f"report {data.message}")
    report = parse_trivy_report(data, f"report {source}")
    if isinstance(report, ScanReport) and report.names_digest(digest) is False:
        return ReportError(f"report {source} is of {', '.join(report.repo_digests)}, not {digest}")
    return report


def _age(descriptor: Descriptor) -> tuple[str, str]:
    return descriptor.annotations.get(CREATED, ""), descriptor.digest


def report_url(template: str, repo: Repository, digest: str, image: str, version: str) -> str:
    values = {"image": image, "repository": repo.name, "version": version, "digest": digest}
    url = template
    for name, value in values.items():
        url = url.replace("{" + name + "}", quote(value, safe="/:@"))
    return url


def _from_url(client: RegistryClient, template: str, repo: Repository, digest: str, image: str, version: str
              ) -> ScanReport | ReportError | RegistryFailure:
    url = report_url(template, repo, digest, image, version)
    data = client.fetch(url)
    if isinstance(data, RegistryFailure):
        return data if data.kind == "unreachable" else ReportError(f"no vulnerability report: {data.message}")
    report = parse_trivy_report(data, f"report {url}")
    if isinstance(report, ReportError):
        return report
    if not report.names_digest(digest):
        named = ", ".join(report.repo_digests) or "no digest (Metadata.RepoDigests)"
        return ReportError(f"report {url} names {named}, not {digest}")
    return report
