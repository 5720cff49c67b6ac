"""The pure supply-chain judgement, by tables: Trivy reports read and judged, cosign payloads checked."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from reconciler.core.spec import ScanAllowance, ScanSpec
from reconciler.core.trust import (
    CommitVerdict,
    ReportError,
    ScanReport,
    commits_required,
    is_own_commit,
    judge_scan,
    parse_trivy_report,
    payload_problem,
)

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64


def report(*findings: dict[str, Any], **extra: Any) -> bytes:
    return json.dumps({"SchemaVersion": 2, "ArtifactName": "billing:1.5.0", **extra,
                       "Results": [{"Target": "billing", "Vulnerabilities": list(findings)}]}).encode()


def vuln(ident: str, severity: str, fixed: str | None = "1.2.4") -> dict[str, Any]:
    found = {"VulnerabilityID": ident, "PkgName": "openssl", "InstalledVersion": "1.2.3", "Severity": severity}
    return {**found, "FixedVersion": fixed} if fixed is not None else found


def parsed(data: bytes) -> ScanReport:
    found = parse_trivy_report(data, "report r")
    assert isinstance(found, ScanReport), found
    return found


@pytest.mark.parametrize(("spec", "findings", "blocking"), [
    # maxSeverity is the highest severity allowed: HIGH passes, CRITICAL blocks
    ({"maxSeverity": "HIGH"}, [vuln("CVE-1", "HIGH"), vuln("CVE-2", "CRITICAL")], ["CVE-2"]),
    ({"maxSeverity": "CRITICAL"}, [vuln("CVE-2", "CRITICAL")], []),
    ({"maxSeverity": "LOW"}, [vuln("CVE-0", "UNKNOWN"), vuln("CVE-1", "LOW"), vuln("CVE-3", "MEDIUM")], ["CVE-3"]),
    # NONE (the default) allows no finding at all
    ({}, [vuln("CVE-0", "UNKNOWN")], ["CVE-0"]),
    ({}, [], []),
    # worst first, then by id; one id once even when several packages have it
    ({"maxSeverity": "LOW"}, [vuln("CVE-9", "MEDIUM"), vuln("CVE-5", "CRITICAL"), vuln("CVE-9", "HIGH")],
     ["CVE-5", "CVE-9"]),
    # ignoreUnfixed: a finding without a fixed version does not block
    ({"maxSeverity": "HIGH", "ignoreUnfixed": True}, [vuln("CVE-2", "CRITICAL", fixed=None),
                                                      vuln("CVE-3", "CRITICAL", fixed="")], []),
    ({"maxSeverity": "HIGH", "ignoreUnfixed": False}, [vuln("CVE-2", "CRITICAL", fixed=None)], ["CVE-2"]),
    # an allowance in force lets its finding pass; through the end of its day (UTC)
    ({"maxSeverity": "HIGH", "allow": [{"id": "CVE-2", "until": "2025-03-10", "reason": "no exploit path"}]},
     [vuln("CVE-2", "CRITICAL")], []),
    # past its day it blocks again
    ({"maxSeverity": "HIGH", "allow": [{"id": "CVE-2", "until": "2025-03-09", "reason": "no exploit path"}]},
     [vuln("CVE-2", "CRITICAL")], ["CVE-2"]),
])
def test_a_scan_blocks_on_findings_above_the_bound_that_no_allowance_in_force_covers(
        spec: dict[str, Any], findings: list[dict[str, Any]], blocking: list[str]) -> None:
    judged = judge_scan(parsed(report(*findings)), ScanSpec.model_validate(spec), NOW)
    assert list(judged.summary.blocking) == blocking
    assert judged.passed == (not blocking)
    for ident in blocking:
        assert ident in (judged.reason or "")


def test_the_reason_names_expired_allowances_and_the_summary_counts_every_finding() -> None:
    spec = ScanSpec(max_severity="MEDIUM", allow=[ScanAllowance(id="CVE-7", until=date(2025, 1, 31), reason="r"),
                                                  ScanAllowance(id="CVE-8", until=date(2025, 12, 31), reason="r")])
    judged = judge_scan(parsed(report(vuln("CVE-7", "HIGH"), vuln("CVE-8", "CRITICAL"), vuln("CVE-1", "LOW"),
                                      vuln("CVE-2", "MEDIUM"))), spec, NOW)
    assert not judged.passed
    assert judged.reason == ("1 finding(s) above maxSeverity MEDIUM: CVE-7 (HIGH); allowance expired for CVE-7 "
                             "(until 2025-01-31)")
    assert judged.summary.counts_text() == "1 CRITICAL, 1 HIGH, 1 MEDIUM, 1 LOW, 0 UNKNOWN"
    assert judged.summary.allowed == ("CVE-8",)
    assert judged.summary.expired == ("CVE-7",)
    assert judged.summary.as_record()["counts"] == {"CRITICAL": 1, "HIGH": 1, "MEDIUM": 1, "LOW": 1, "UNKNOWN": 0}


def test_a_long_list_of_blocking_ids_is_cut_in_the_reason_but_counted_whole() -> None:
    judged = judge_scan(parsed(report(*(vuln(f"CVE-{i:02}", "HIGH") for i in range(14)))), ScanSpec(), NOW)
    assert len(judged.summary.blocking) == 14
    assert (judged.reason or "").endswith("CVE-09 (HIGH) and 4 more")


@pytest.mark.parametrize(("data", "message"), [
    (b"not json", "report r: not JSON"),
    (b"[]", "report r: not a Trivy JSON report"),
    (json.dumps({"SchemaVersion": 1}).encode(), "report r: not a Trivy JSON report"),
    (json.dumps({"SchemaVersion": 2, "Results": {}}).encode(), "report r: Results: not a list"),
    (json.dumps({"SchemaVersion": 2, "Results": [{"Vulnerabilities": "x"}]}).encode(),
     "report r: Results[0].Vulnerabilities: not a list"),
    (report(vuln("CVE-1", "SEVERE")), "report r: Results[0].Vulnerabilities[0].Severity: 'SEVERE' is not a Trivy"),
    (report({"Severity": "HIGH"}), "report r: Results[0].Vulnerabilities[0].VulnerabilityID: missing"),
    (report({**vuln("CVE-1", "HIGH"), "FixedVersion": 3}), "Vulnerabilities[0].FixedVersion: not a string"),
])
def test_a_malformed_report_is_an_error_naming_where_it_came_from(data: bytes, message: str) -> None:
    found = parse_trivy_report(data, "report r")
    assert isinstance(found, ReportError)
    assert message in found.message


def test_a_report_without_results_has_no_findings_and_says_which_digest_it_is_of() -> None:
    found = parsed(json.dumps({"SchemaVersion": 2, "Metadata": {"RepoDigests": [f"reg/billing@{DIGEST}"]}}).encode())
    assert found.findings == ()
    assert found.names_digest(DIGEST) is True
    assert found.names_digest("sha256:" + "b" * 64) is False
    assert parsed(report()).names_digest(DIGEST) is None


def payload(digest: str = DIGEST, kind: str = "cosign container image signature") -> bytes:
    return json.dumps({"critical": {"identity": {"docker-reference": "reg/billing"},
                                    "image": {"docker-manifest-digest": digest}, "type": kind},
                       "optional": None}).encode()


@pytest.mark.parametrize(("data", "problem"), [
    (payload(), None),
    (payload("sha256:" + "b" * 64), f"the signed payload names sha256:{'b' * 64}, not {DIGEST}"),
    (payload(kind="cosign attestation"), "the signed payload's type is 'cosign attestation'"),
    (b"{}", "the signed payload has no `critical` section"),
    (b"\xff", "the signed payload is not JSON"),
    (json.dumps({"critical": {"type": "cosign container image signature"}}).encode(),
     "the signed payload names no docker-manifest-digest"),
])
def test_a_payload_signs_only_the_digest_it_names(data: bytes, problem: str | None) -> None:
    found = payload_problem(data, DIGEST)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def test_only_a_verified_signature_by_an_own_key_is_grayops_own() -> None:
    own = ["SHA256:own"]
    assert is_own_commit(CommitVerdict("c", "verified", key="SHA256:own"), own)
    assert not is_own_commit(CommitVerdict("c", "verified", key="SHA256:alice"), own)
    assert not is_own_commit(CommitVerdict("c", "bad_signature", key="SHA256:own"), own)


# --- the settings, read from the fleet repository ----------------------------------------------------------

SETTINGS = "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n  - {name: a}\n"
POLICY = ("apiVersion: grayops.dev/v1\nkind: Policy\nmetadata: {name: safe}\nspec:\n"
          "  batches: [{name: all, size: 100%}]\n  scan:\n")


def load(settings: str, policy: str = "") -> Any:
    from policies import builtin_policies
    from reconciler.cli import full_registry
    from reconciler.core.fleet import load_fleet

    files = {"grayops.yaml": settings, **({"policies/safe.yaml": policy} if policy else {})}
    return load_fleet(files, builtin_policies(), adapters=full_registry().models)


def test_trust_registries_and_a_scan_gate_are_read_from_the_fleet_files() -> None:
    fleet = load(SETTINGS + "trust: {commits: {required: true}, artifacts: {required: true}}\n"
                 "registries:\n  - {host: registry.example.com, username: {env: REG_USER}, "
                 "password: {file: /run/secrets/registry}}\n  - {host: '127.0.0.1:5000', insecure: true}\n",
                 POLICY + "    maxSeverity: HIGH\n    ignoreUnfixed: true\n"
                          "    allow: [{id: CVE-2025-1, until: 2025-06-30, reason: not reachable}]\n")
    assert fleet.settings.trust.commits.required and fleet.settings.trust.artifacts.required
    assert [r.host for r in fleet.settings.registries] == ["registry.example.com", "127.0.0.1:5000"]
    scan = fleet.policies["safe"].scan
    assert (scan.max_severity, scan.ignore_unfixed, scan.allow[0].until) == ("HIGH", True, date(2025, 6, 30))


@pytest.mark.parametrize(("settings", "policy", "error"), [
    (SETTINGS + "registries: [{host: registry.example.com, insecure: true}]\n", "",
     "grayops.yaml:5: registries[0]: insecure (plain http) is allowed only for a loopback registry, "
     "not registry.example.com"),
    (SETTINGS + "registries: [{host: r.example.com, password: {env: P}}]\n", "",
     "grayops.yaml:5: registries[0]: give both username and password, or neither"),
    (SETTINGS + "trust: {commits: {requird: true}}\n", "",
     "grayops.yaml:5: trust.commits.requird: unknown field; did you mean 'required'?"),
    (SETTINGS, POLICY + "    maxSeverity: SEVERE\n", "policies/safe.yaml:7: spec.scan.maxSeverity: Input should be"),
    (SETTINGS, POLICY + "    allow: [{id: CVE-1, until: 2025-06-30}]\n",
     "policies/safe.yaml:7: spec.scan.allow[0].reason: required field is missing"),
    (SETTINGS, POLICY + "    reportUrl: ftp://scans/{digest}\n",
     "policies/safe.yaml:7: spec.scan.reportUrl: reportUrl must be an https:// URL"),
])
def test_bad_supply_chain_settings_are_errors_with_their_line(settings: str, policy: str, error: str) -> None:
    from reconciler.core.fleet import FleetInvalid

    with pytest.raises(FleetInvalid) as caught:
        load(settings, policy)
    messages = [str(e) for e in caught.value.errors]
    assert any(m.startswith(error) for m in messages), messages


@pytest.mark.parametrize(("text", "required"), [
    ("trust: {commits: {required: true}}\n", True),
    ("trust: {commits: {required: false}, artifacts: {required: true}}\n", False),
    ("trust: {artifacts: {required: true}}\n", False),
    ("clusters: []\n", False),
    ("trust: [commits]\n", False),
    ("trust: {commits: {required: 'yes'}}\n", False),  # not a boolean: validation refuses it, nothing to warn of
    ("trust: {commits: {required: true\n", False),  # unreadable
    (None, False),
])
def test_whether_grayops_yaml_requires_signed_commits_as_written(text: str | None, required: bool) -> None:
    assert commits_required(text) is required
