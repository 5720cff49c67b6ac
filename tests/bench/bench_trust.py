"""Benchmark of the supply-chain checks; prints figures (no pass/fail).

    python tests/bench/bench_trust.py [--versions 100]

1. the artifact gate per rollout start (resolve image:version to a digest, fetch and verify its cosign signature,
   find, fetch and judge its Trivy report), against the real registry (Debian's docker-registry) on loopback,
   over `--versions` versions each pushed, signed and scanned as a pipeline would: p50, p99, max;
2. the commit rule per revision: `verify_revision` of an SSH-signed head (git verify-commit, ssh-keygen).

Target: the gate well under a second per rollout start, so it never shows against an upgrade's minutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.adapters.trust.commits import CommitVerifier
from reconciler.adapters.trust.gate import check_artifact
from reconciler.adapters.trust.keys import parse_pem_keys
from reconciler.adapters.trust.roots import load_trust_roots
from reconciler.core.spec import ScanSpec
from reconciler.core.trust import ArtifactAllowed
from tests.trust.conftest import client_for
from tests.trust.registry import Registry, public_pem, trivy_report
from tests.trust.signers import commit, new_repo, ssh_signer


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def show(name: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(f"{name}: n={len(ms)} p50={percentile(ms, 0.5):.1f} ms p99={percentile(ms, 0.99):.1f} ms "
          f"max={max(ms):.1f} ms mean={statistics.fmean(ms):.1f} ms")


def bench_gate(root: Path, versions: int) -> None:
    registry = Registry(root / "registry").start()
    try:
        signer = ec.generate_private_key(ec.SECP256R1())
        keys = parse_pem_keys(public_pem(signer), "cosign.pub")
        assert isinstance(keys, list)
        findings = [{"id": f"CVE-2025-{i}", "severity": s} for i, s in enumerate(["LOW", "MEDIUM", "HIGH"] * 10)]
        for n in range(versions):
            digest = registry.push_image("plugins/billing", f"1.{n}.0")
            registry.sign("plugins/billing", digest, [signer])
            registry.attach_report("plugins/billing", digest, trivy_report(findings))
        client = client_for(registry, timeout=10)
        spec = ScanSpec(max_severity="HIGH")
        image = f"{registry.host}/plugins/billing"
        now = datetime.now(UTC)
        times: list[float] = []
        for n in range(versions):
            started = time.perf_counter()
            decision = check_artifact(client, keys, image, f"1.{n}.0", signature_required=True, scan=spec, now=now)
            times.append(time.perf_counter() - started)
            assert isinstance(decision, ArtifactAllowed), decision
        show(f"artifact gate per rollout start (resolve + signature + report of 30 findings, {versions} versions)",
             times)
    finally:
        registry.stop()


def bench_commits(root: Path, count: int) -> None:
    alice = ssh_signer(root, "alice")
    trust = root / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(alice.line())
    repo = new_repo(root / "repo")
    heads = [commit(repo, f"billing 1.{n}.0", options=alice.options()) for n in range(count)]
    with CommitVerifier(load_trust_roots(trust)) as verifier:
        times: list[float] = []
        for head in heads:
            started = time.perf_counter()
            assert verifier.verify_revision(repo, head).verified
            times.append(time.perf_counter() - started)
    show(f"commit rule per revision (SSH-signed head, {count} revisions)", times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="grayops-bench-trust-") as tmp:
        bench_gate(Path(tmp), args.versions)
        bench_commits(Path(tmp), 30)


if __name__ == "__main__":
    main()
