"""The artifact gate end to end against the real registry: what a pipeline pushed (image, cosign signature, Trivy
report) decides whether a rollout may start, and as which digest; every fault blocks with its alert kind."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.adapters.trust.gate import check_artifact
from reconciler.adapters.trust.keys import ArtifactKey, parse_pem_keys
from reconciler.adapters.trust.oci import RegistryClient, Repository
from reconciler.core.spec import ScanAllowance, ScanSpec
from reconciler.core.trust import ArtifactAllowed, ArtifactBlocked, ArtifactDecision
from tests.trust.conftest import client_for
from tests.trust.registry import Registry, key_id, public_pem, trivy_report

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
HIGH = ScanSpec(max_severity="HIGH")


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def keys(signer: ec.EllipticCurvePrivateKey) -> list[ArtifactKey]:
    found = parse_pem_keys(public_pem(signer), "trust/cosign.pub")
    assert isinstance(found, list)
    return found


def release(registry: Registry, repo: str, version: str, signer: ec.EllipticCurvePrivateKey | None,
            findings: Sequence[dict[str, str]] | None = (), content: str = "") -> str:
    """What a pipeline does: push the image, sign it, attach its scan report (None: no report)."""
    digest = registry.push_image(repo, version, content)
    if signer is not None:
        registry.sign(repo, digest, [signer])
    if findings is not None:
        registry.attach_report(repo, digest, trivy_report(findings))
    return digest


def gate(client: RegistryClient, keys: Sequence[ArtifactKey], image: str, version: str = "1.0.0",
         scan: ScanSpec | None = HIGH, signed: bool = True) -> ArtifactDecision:
    return check_artifact(client, keys, image, version, signature_required=signed, scan=scan, now=NOW)


def blocked(decision: ArtifactDecision) -> ArtifactBlocked:
    assert isinstance(decision, ArtifactBlocked), decision
    return decision


def test_a_signed_and_clean_version_is_allowed_as_its_digest_with_signer_and_scan_summary(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey,
        keys: list[ArtifactKey]) -> None:
    digest = release(registry, "plugins/billing", "1.0.0", signer, [{"id": "CVE-2025-1", "severity": "HIGH"},
                                                                    {"id": "CVE-2025-2", "severity": "LOW"}])
    decision = gate(client, keys, f"{registry.host}/plugins/billing")
    assert isinstance(decision, ArtifactAllowed)
    assert decision.digest == digest
    assert decision.reference == f"{registry.host}/plugins/billing@{digest}"
    assert decision.signer == key_id(signer)
    assert decision.scan is not None and decision.scan.counts_text() == "0 CRITICAL, 1 HIGH, 0 MEDIUM, 1 LOW, 0 UNKNOWN"


def test_without_required_signatures_or_a_scan_the_gate_still_pins_the_digest(
        registry: Registry, client: RegistryClient) -> None:
    digest = release(registry, "plugins/plain", "1.0.0", None, None)
    decision = gate(client, [], f"{registry.host}/plugins/plain", scan=None, signed=False)
    assert decision == ArtifactAllowed(f"{registry.host}/plugins/plain", "1.0.0", digest, None, None)


def test_a_bad_tag_fails_in_seconds_as_artifact_missing(registry: Registry, client: RegistryClient,
                                                        keys: list[ArtifactKey]) -> None:
    release(registry, "plugins/typo", "1.0.0", None, None)
    started = time.monotonic()
    found = blocked(gate(client, keys, f"{registry.host}/plugins/typo", version="1.0.O"))
    assert time.monotonic() - started < 5
    assert found.kind == "artifact_missing" and not found.transient
    assert found.reason == f"{registry.host}/plugins/typo:1.0.O: not found (MANIFEST_UNKNOWN)"


def test_an_unsigned_version_is_untrusted(registry: Registry, client: RegistryClient,
                                          keys: list[ArtifactKey]) -> None:
    digest = release(registry, "plugins/unsigned", "1.0.0", None)
    found = blocked(gate(client, keys, f"{registry.host}/plugins/unsigned"))
    assert (found.kind, found.digest) == ("artifact_untrusted", digest)
    assert found.reason.startswith("no signature: ")


def test_a_version_signed_with_an_untrusted_key_is_untrusted(registry: Registry, client: RegistryClient,
                                                             keys: list[ArtifactKey]) -> None:
    release(registry, "plugins/stranger", "1.0.0", ec.generate_private_key(ec.SECP256R1()))
    assert blocked(gate(client, keys, f"{registry.host}/plugins/stranger")).kind == "artifact_untrusted"


@pytest.mark.parametrize(("repo", "findings", "spec", "reason"), [
    ("plugins/critical", [{"id": "CVE-2025-9", "severity": "CRITICAL", "fixed": "3.0.2"}], HIGH,
     "1 finding(s) above maxSeverity HIGH: CVE-2025-9 (CRITICAL)"),
    ("plugins/expired", [{"id": "CVE-2025-9", "severity": "CRITICAL"}],
     ScanSpec(max_severity="HIGH", allow=[ScanAllowance(id="CVE-2025-9", until=date(2025, 3, 9), reason="r")]),
     "allowance expired for CVE-2025-9 (until 2025-03-09)"),
    ("plugins/no-report", None, HIGH, "no vulnerability report for "),
])
def test_a_scan_that_fails_or_is_missing_blocks_with_the_ids(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey, keys: list[ArtifactKey],
        repo: str, findings: list[dict[str, str]] | None, spec: ScanSpec, reason: str) -> None:
    release(registry, repo, "1.0.0", signer, findings)
    found = blocked(gate(client, keys, f"{registry.host}/{repo}", scan=spec))
    assert found.kind == "scan_blocked"
    assert reason in found.reason


def test_an_allowance_in_force_lets_the_finding_pass(registry: Registry, client: RegistryClient,
                                                     signer: ec.EllipticCurvePrivateKey,
                                                     keys: list[ArtifactKey]) -> None:
    release(registry, "plugins/allowed", "1.0.0", signer, [{"id": "CVE-2025-9", "severity": "CRITICAL"}])
    spec = ScanSpec(max_severity="HIGH", allow=[ScanAllowance(id="CVE-2025-9", until=date(2025, 3, 31),
                                                              reason="not reachable in our build")])
    decision = gate(client, keys, f"{registry.host}/plugins/allowed", scan=spec)
    assert isinstance(decision, ArtifactAllowed)
    assert decision.scan is not None and decision.scan.allowed == ("CVE-2025-9",)


def test_the_newest_report_counts(registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey,
                                  keys: list[ArtifactKey]) -> None:
    digest = release(registry, "plugins/rescanned", "1.0.0", signer, [])
    image = f"{registry.host}/plugins/rescanned"
    assert isinstance(gate(client, keys, image), ArtifactAllowed)
    registry.attach_report("plugins/rescanned", digest, trivy_report([{"id": "CVE-2025-7", "severity": "CRITICAL"}]),
                           created="2025-03-09T00:00:00Z")
    assert "CVE-2025-7" in blocked(gate(client, keys, image)).reason


def test_a_report_of_another_digest_blocks(registry: Registry, client: RegistryClient,
                                           signer: ec.EllipticCurvePrivateKey, keys: list[ArtifactKey]) -> None:
    digest = release(registry, "plugins/wrong-report", "1.0.0", signer, None)
    other = "sha256:" + "c" * 64
    registry.attach_report("plugins/wrong-report", digest, trivy_report([]), subject=other)
    found = blocked(gate(client, keys, f"{registry.host}/plugins/wrong-report"))
    assert found.kind == "scan_blocked" and f"refers to {other}, not {digest}" in found.reason


def test_a_malformed_report_blocks_naming_the_report(registry: Registry, client: RegistryClient,
                                                     signer: ec.EllipticCurvePrivateKey,
                                                     keys: list[ArtifactKey]) -> None:
    digest = release(registry, "plugins/garbled", "1.0.0", signer, None)
    report = registry.attach_report("plugins/garbled", digest, b"<html>scanner crashed</html>")
    found = blocked(gate(client, keys, f"{registry.host}/plugins/garbled"))
    assert found.kind == "scan_blocked"
    assert found.reason.startswith(f"report {registry.host}/plugins/garbled@{report}: not JSON")


def test_a_registry_down_blocks_as_unreachable_and_the_same_check_passes_when_it_is_back(
        own_registry: Registry, signer: ec.EllipticCurvePrivateKey, keys: list[ArtifactKey]) -> None:
    digest = release(own_registry, "plugins/billing", "1.0.0", signer, [])
    client = client_for(own_registry, timeout=3)
    own_registry.stop()
    found = blocked(gate(client, keys, f"{own_registry.host}/plugins/billing"))
    assert found.kind == "registry_unreachable" and found.transient
    own_registry.start()
    decision = gate(client, keys, f"{own_registry.host}/plugins/billing")
    assert isinstance(decision, ArtifactAllowed) and decision.digest == digest


def test_a_tag_moved_after_the_gate_does_not_change_the_pinned_digest(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey,
        keys: list[ArtifactKey]) -> None:
    image = f"{registry.host}/plugins/moved"
    pinned = release(registry, "plugins/moved", "1.0.0", signer, [])
    decision = gate(client, keys, image)
    assert isinstance(decision, ArtifactAllowed) and decision.digest == pinned
    swapped = release(registry, "plugins/moved", "1.0.0", None, None, content="swapped, unsigned")
    # the rollout keeps using image@pinned, which still names the verified content
    repo = Repository(registry.host, "plugins/moved")
    assert client.manifest(repo, pinned).digest == pinned  # type: ignore[union-attr]
    # and a new gate (a new rollout) sees the moved tag for what it is
    moved = blocked(gate(client, keys, image))
    assert (moved.kind, moved.digest) == ("artifact_untrusted", swapped)


# --- reports read from a URL --------------------------------------------------------------------------------


@pytest.fixture
def report_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain web server on loopback serving files from a directory, as a scan store would."""
    root = tmp_path / "reports"
    root.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *_: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_a_report_url_serves_the_report_which_must_name_the_digest(
        registry: Registry, client: RegistryClient, signer: ec.EllipticCurvePrivateKey, keys: list[ArtifactKey],
        report_server: tuple[str, Path]) -> None:
    url, root = report_server
    digest = release(registry, "plugins/url", "1.0.0", signer, None)
    spec = ScanSpec(max_severity="HIGH", report_url=url + "/{repository}/{version}.json")
    (root / "plugins" / "url").mkdir(parents=True)
    image = f"{registry.host}/plugins/url"

    assert "not found" in blocked(gate(client, keys, image, scan=spec)).reason
    (root / "plugins/url/1.0.0.json").write_bytes(trivy_report([], repo_digests=["x/url@sha256:" + "d" * 64]))
    assert f"names x/url@sha256:{'d' * 64}, not {digest}" in blocked(gate(client, keys, image, scan=spec)).reason
    (root / "plugins/url/1.0.0.json").write_bytes(trivy_report([{"id": "CVE-1", "severity": "MEDIUM"}],
                                                               repo_digests=[f"{image}@{digest}"]))
    decision = gate(client, keys, image, scan=spec)
    assert isinstance(decision, ArtifactAllowed)
    assert decision.scan is not None and decision.scan.source == f"report {url}/plugins/url/1.0.0.json"
