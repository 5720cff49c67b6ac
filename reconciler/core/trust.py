"""Supply chain, the pure judgement (README "Supply chain"): what a verification found, and what it means.

Owns, with no I/O, clock or environment (`now` is passed in):

- the values the verifiers return: `CommitVerdict` (a commit's signature as git judged it), `ArtifactAllowed` /
  `ArtifactBlocked` (the artifact gate's answer for one rollout start) and the alert kinds they carry;
- the cosign simple-signing payload check (`payload_problem`): the payload must be a cosign container image
  signature naming exactly the digest being verified;
- the scan gate: reading a Trivy JSON report (`parse_trivy_report`, as `trivy image --format json` writes it) and
  judging it against a policy's `scan` (`judge_scan`), with a per-severity summary for the records.

The I/O around them (git, gpg, the registry, the trust directory) is in `reconciler.adapters.trust`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

from reconciler.core import yamlpos
from reconciler.core.spec import SEVERITY_ORDER, ScanSpec, Severity

# --- alert kinds --------------------------------------------------------------------------------------------

UNTRUSTED_REVISION = "untrusted_revision"  # the desired commit is unsigned or not signed by an allowed signer
ARTIFACT_MISSING = "artifact_missing"  # preflight: image:version is not in the registry (fails in seconds)
ARTIFACT_UNTRUSTED = "artifact_untrusted"  # no valid signature of a trusted key on the digest
SCAN_BLOCKED = "scan_blocked"  # the vulnerability report is missing, malformed or shows findings above the bound
REGISTRY_UNREACHABLE = "registry_unreachable"  # the registry did not answer: blocked now, checked again later

BlockKind = Literal["artifact_missing", "artifact_untrusted", "scan_blocked", "registry_unreachable"]


# --- commits ------------------------------------------------------------------------------------------------

CommitStatus = Literal["verified", "unsigned", "bad_signature", "unknown_signer", "expired", "revoked", "error"]


@dataclass(frozen=True)
class CommitVerdict:
    """A commit's signature as `git verify-commit` judged it against the trust roots."""

    commit: str
    status: CommitStatus
    signer: str | None = None  # the allowed signer's principal (SSH) or user id (OpenPGP), when known
    key: str | None = None  # SHA256:... (SSH) or the OpenPGP fingerprint
    author: str | None = None  # "Name <email>", for the alert
    reason: str | None = None  # why it is refused; None when verified
    decided_by: str | None = None  # the commit whose signature decided a revision (see `revision`)

    @property
    def verified(self) -> bool:
        return self.status == "verified"

    def line(self) -> str:
        """One line for a log or an alert: `commit 3f2a9c1d8e7b by Alice <a@x>: unsigned`."""
        who = f" by {self.author}" if self.author else ""
        if self.verified:
            return f"commit {self.commit[:12]}{who}: signed by {self.signer or self.key}"
        return f"commit {self.commit[:12]}{who}: {self.reason or self.status}"


def is_own_commit(verdict: CommitVerdict, own_keys: Sequence[str]) -> bool:
    """Whether `verdict` is a valid signature by one of grayops' own signing keys (its records and commands)."""
    return verdict.verified and verdict.key is not None and verdict.key in own_keys


# --- cosign's simple-signing payload -----------------------------------------------------------------------

SIMPLE_SIGNING_TYPE = "cosign container image signature"


def payload_problem(payload: bytes, digest: str) -> str | None:
    """Why `payload` does not sign `digest` as a cosign container image signature, or None when it does.

    The signature covers the payload's bytes; the payload names what is signed (`critical.image.
    docker-manifest-digest`), so a valid signature over a payload naming another digest signs that one, not ours.
    """
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        return f"the signed payload is not JSON ({err})"
    critical = data.get("critical") if isinstance(data, dict) else None
    if not isinstance(critical, dict):
        return "the signed payload has no `critical` section"
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        return f"the signed payload's type is {critical.get('type')!r}, not {SIMPLE_SIGNING_TYPE!r}"
    image = critical.get("image")
    named = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    if not isinstance(named, str):
        return "the signed payload names no docker-manifest-digest"
    if named != digest:
        return f"the signed payload names {named}, not {digest}"
    return None


# --- the scan gate ------------------------------------------------------------------------------------------

TRIVY_SEVERITIES: tuple[Severity, ...] = SEVERITY_ORDER[1:]  # a finding's severity; NONE is only a bound
_LISTED = 10  # finding ids named in one reason; the summary counts them all


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    package: str
    installed: str = ""
    fixed: str = ""


@dataclass(frozen=True)
class ScanReport:
    """A Trivy JSON report, as far as the gate reads it."""

    source: str  # where it was read (a registry reference or a URL), for messages
    findings: tuple[Finding, ...]
    artifact: str = ""  # ArtifactName
    repo_digests: tuple[str, ...] = ()  # Metadata.RepoDigests: "repo@sha256:..."
    created: str = ""  # CreatedAt, when the scanner wrote it

    def names_digest(self, digest: str) -> bool | None:
        """Whether the report says it is of `digest` (None: it names no digest at all)."""
        if not self.repo_digests:
            return None
        return any(d.rpartition("@")[2] == digest for d in self.repo_digests)


@dataclass(frozen=True)
class ReportError:
    """A report that cannot be read: an error naming where it came from and why; it never passes the gate."""

    message: str


def parse_trivy_report(data: bytes, source: str) -> ScanReport | ReportError:
    """The findings of a `trivy image --format json` report; anything else is a ReportError naming `source`."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as err:
        return ReportError(f"{source}: not JSON ({err})")
    if not isinstance(doc, dict) or doc.get("SchemaVersion") != 2:
        return ReportError(f"{source}: not a Trivy JSON report (SchemaVersion 2, as `trivy image --format json` "
                           f"writes it)")
    findings: list[Finding] = []
    results = doc.get("Results", [])  # Trivy leaves Results out when it found nothing to scan
    results = [] if results is None else results
    if not isinstance(results, list):
        return ReportError(f"{source}: Results: not a list")
    for r, result in enumerate(results):
        if not isinstance(result, dict):
            return ReportError(f"{source}: Results[{r}]: not an object")
        vulns = result.get("Vulnerabilities", [])
        vulns = [] if vulns is None else vulns
        if not isinstance(vulns, list):
            return ReportError(f"{source}: Results[{r}].Vulnerabilities: not a list")
        for v, vuln in enumerate(vulns):
            found = _finding(vuln, f"{source}: Results[{r}].Vulnerabilities[{v}]")
            if isinstance(found, ReportError):
                return found
            findings.append(found)
    metadata = doc.get("Metadata")
    digests = metadata.get("RepoDigests") if isinstance(metadata, dict) else None
    return ScanReport(source, tuple(findings), _text(doc.get("ArtifactName")),
                      tuple(d for d in digests if isinstance(d, str)) if isinstance(digests, list) else (),
                      _text(doc.get("CreatedAt")))


def _finding(vuln: Any, where: str) -> Finding | ReportError:
    if not isinstance(vuln, dict):
        return ReportError(f"{where}: not an object")
    ident, severity = vuln.get("VulnerabilityID"), vuln.get("Severity")
    if not isinstance(ident, str) or not ident.strip():
        return ReportError(f"{where}.VulnerabilityID: missing")
    if severity not in TRIVY_SEVERITIES:
        return ReportError(f"{where}.Severity: {severity!r} is not a Trivy severity ({', '.join(TRIVY_SEVERITIES)})")
    for name in ("PkgName", "InstalledVersion", "FixedVersion"):
        if vuln.get(name) is not None and not isinstance(vuln.get(name), str):
            return ReportError(f"{where}.{name}: not a string")
    return Finding(ident.strip(), severity, _text(vuln.get("PkgName")), _text(vuln.get("InstalledVersion")),
                   _text(vuln.get("FixedVersion")))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class ScanSummary:
    """What the report showed, for status, the report and `plan`: counts per severity and the ids that decided."""

    counts: Mapping[str, int] = field(default_factory=dict)  # severity -> findings (every finding, as listed)
    blocking: tuple[str, ...] = ()  # ids above the bound, not allowed (or allowed no longer)
    allowed: tuple[str, ...] = ()  # ids above the bound that an allowance in force lets pass
    expired: tuple[str, ...] = ()  # ids whose allowance has run out (also in `blocking`)
    source: str = ""

    def counts_text(self) -> str:
        """`0 CRITICAL, 2 HIGH, 5 MEDIUM, 1 LOW, 0 UNKNOWN`."""
        return ", ".join(f"{self.counts.get(s, 0)} {s}" for s in reversed(TRIVY_SEVERITIES))

    def as_record(self) -> dict[str, Any]:
        """A plain mapping for status/<plugin>.yaml and the report."""
        record: dict[str, Any] = {"counts": {s: self.counts.get(s, 0) for s in reversed(TRIVY_SEVERITIES)},
                                  "source": self.source}
        for name in ("blocking", "allowed", "expired"):
            if getattr(self, name):
                record[name] = list(getattr(self, name))
        return record


@dataclass(frozen=True)
class ScanJudgement:
    passed: bool
    summary: ScanSummary
    reason: str | None = None  # why it blocks


def allowance_in_force(until: date, now: datetime) -> bool:
    """An allowance `until` a day holds through the end of that day, UTC."""
    end = datetime.combine(until, time.min, tzinfo=now.tzinfo) + timedelta(days=1)
    return now.astimezone(end.tzinfo) < end


def judge_scan(report: ScanReport, spec: ScanSpec, now: datetime) -> ScanJudgement:
    """Whether `report` passes `spec`: every finding above `maxSeverity` (unless unfixed and `ignoreUnfixed`) must
    have an allowance in force, or the gate blocks with the ids."""
    bound = SEVERITY_ORDER.index(spec.max_severity)
    allowances = {a.id: a for a in spec.allow}
    counts: dict[str, int] = {s: 0 for s in TRIVY_SEVERITIES}
    blocking: dict[str, Severity] = {}
    allowed: dict[str, None] = {}
    expired: dict[str, str] = {}
    for finding in report.findings:
        counts[finding.severity] += 1
        if SEVERITY_ORDER.index(finding.severity) <= bound or (spec.ignore_unfixed and not finding.fixed):
            continue
        allowance = allowances.get(finding.id)
        if allowance is not None and allowance_in_force(allowance.until, now):
            allowed[finding.id] = None
            continue
        if allowance is not None:
            expired[finding.id] = allowance.until.isoformat()
        worst = blocking.get(finding.id)
        if worst is None or SEVERITY_ORDER.index(finding.severity) > SEVERITY_ORDER.index(worst):
            blocking[finding.id] = finding.severity
    ordered = sorted(blocking, key=lambda i: (-SEVERITY_ORDER.index(blocking[i]), i))
    summary = ScanSummary(counts, tuple(ordered), tuple(sorted(allowed)), tuple(sorted(expired)), report.source)
    if not ordered:
        return ScanJudgement(True, summary)
    named = ", ".join(f"{i} ({blocking[i]})" for i in ordered[:_LISTED])
    more = f" and {len(ordered) - _LISTED} more" if len(ordered) > _LISTED else ""
    reason = f"{len(ordered)} finding(s) above maxSeverity {spec.max_severity}: {named}{more}"
    if expired:
        reason += "; allowance expired for " + ", ".join(f"{i} (until {d})" for i, d in sorted(expired.items()))
    return ScanJudgement(False, summary, reason)


# --- the artifact gate's answer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactAllowed:
    """The version's image may be rolled out, as `image@digest` on every instance."""

    image: str  # registry/repository, as the plugin names it
    version: str
    digest: str  # sha256:..., pinned for the whole rollout
    signer: str | None = None  # the trusted artifact key's id that verified the signature (None: not required)
    scan: ScanSummary | None = None  # None: the policy has no scan gate

    @property
    def reference(self) -> str:
        return f"{self.image}@{self.digest}"


@dataclass(frozen=True)
class ArtifactBlocked:
    """No instance may be touched; `kind` is the alert."""

    image: str
    version: str
    kind: BlockKind
    reason: str
    digest: str | None = None  # when it was resolved before the block

    @property
    def transient(self) -> bool:
        """The registry did not answer: the same check may pass on a later tick with nothing changed."""
        return self.kind == "registry_unreachable"

    @property
    def definite(self) -> bool:
        """The image for the version is not in the registry (it answered 404): waiting will not change that."""
        return self.kind == ARTIFACT_MISSING

    def line(self) -> str:
        return f"{self.image}:{self.version}: {self.reason}"


ArtifactDecision = ArtifactAllowed | ArtifactBlocked


def commits_required(settings_text: str | None) -> bool:
    """`trust.commits.required` of grayops.yaml as written, for a process that does not validate the revision (`grayops
    serve`); False when unset or unreadable."""
    try:
        doc = yamlpos.load(settings_text).data if settings_text else None
    except yamlpos.YamlSyntaxError:
        return False
    trust = doc.get("trust") if isinstance(doc, dict) else None
    commits = trust.get("commits") if isinstance(trust, dict) else None
    return isinstance(commits, dict) and commits.get("required") is True
