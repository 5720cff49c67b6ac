"""The artifact and scan gate in the real `grayops run --trust DIR` over a sim fleet whose plugin has an `image` in a
real registry (README "Supply chain"): a signed, clean version rolls out with its digest pinned in status; an
unsigned one and one whose scan shows a CRITICAL finding are blocked with their alerts and no instance touched, and
proceed once fixed; a registry that is down blocks the start, and the rollout proceeds when it is back."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import (
    FAST_POLICY,
    Human,
    git,
    make_fleet_repo,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)
from tests.trust.registry import Registry, key_id, public_pem, trivy_report

REPO = "plugins/billing"
SCAN_POLICY = FAST_POLICY.replace("spec:\n", "spec:\n  scan: {maxSeverity: HIGH}\n", 1)


def sim_versions(workdir: Path) -> set[str]:
    state = json.loads((workdir / "sim-fleet.json").read_text())
    return {entry["target"] for entry in state["plugins"]["billing"].values()}


def status_is(human: Human, version: str, phase: str) -> Callable[[], bool]:
    def check() -> bool:
        found = remote_status(human, "billing") or {}
        return found.get("targetVersion") == version and found.get("phase") == phase
    return check


def test_grayops_run_gates_each_rollout_start_on_the_signed_scanned_image(tmp_path: Path,
                                                                          own_registry: Registry) -> None:
    signer = ec.generate_private_key(ec.SECP256R1())
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "cosign.pub").write_bytes(public_pem(signer))
    registry, image = own_registry, f"{own_registry.host}/{REPO}"

    def release(version: str, signed: bool = True, severity: str = "HIGH") -> str:
        digest = registry.push_image(REPO, version)
        if signed:
            registry.sign(REPO, digest, [signer])
        registry.attach_report(REPO, digest, trivy_report([{"id": "CVE-2025-1", "severity": severity}]))
        return digest

    def plugin(version: str) -> dict[str, str]:
        return {"plugins/billing.yaml": plugin_yaml("billing", version, extra=f"  image: {image}\n")}

    human = make_fleet_repo(tmp_path)
    settings = settings_yaml({"canary": 1, "prod": 2}, "trust: {artifacts: {required: true}}\n"
                             f"registries:\n  - {{host: '{registry.host}', insecure: true}}\n")
    first = release("1.0.0")
    human.commit("fleet", {"grayops.yaml": settings, "policies/fast.yaml": SCAN_POLICY, **plugin("1.0.0")})
    workdir, log = tmp_path / "work", tmp_path / "run.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir", str(workdir),
             "--interval", "0.05", "--poll", "0.2", "--no-progress", "--trust", str(trust)],
            stdout=out, stderr=subprocess.STDOUT)

    def said(text: str) -> Callable[[], bool]:
        return lambda: text in log.read_text()

    def tail() -> str:
        return log.read_text()[-3000:]

    try:
        wait_for(status_is(human, "1.0.0", "Succeeded"), timeout=120, what=f"1.0.0 rolled out:\n{tail()}")
        pinned = (remote_status(human, "billing") or {})["artifact"]
        assert pinned == {"image": image, "digest": first, "signer": key_id(signer),
                          "scan": "0 CRITICAL, 1 HIGH, 0 MEDIUM, 0 LOW, 0 UNKNOWN"}
        trailers = git(human.remote, "log", "--format=%(trailers:key=Grayops-Digest,valueonly)", "main")
        assert first in trailers.split()
        reports = git(human.remote, "grep", "-h", "| Artifact", "main", "--", "reports/billing")
        assert f"`{image}@{first}`" in reports

        unsigned = release("2.0.0", signed=False)
        human.commit("2.0.0", plugin("2.0.0"))
        wait_for(said(f"ALERT artifact_untrusted (critical): billing 2.0.0: no instance touched: {image}:2.0.0: "),
                 what=f"the unsigned image blocked:\n{tail()}")
        wait_for(lambda: "artifact gate (artifact_untrusted" in str((remote_status(human, "billing") or {}).get(
            "waiting")), what="the blocked rollout recorded")  # after `the artifact gate`, while it was asked
        assert status_is(human, "2.0.0", "Pending")() and sim_versions(workdir) == {"1.0.0"}
        registry.sign(REPO, unsigned, [signer])  # the pipeline signs it late: the gate is asked again
        wait_for(status_is(human, "2.0.0", "Succeeded"), timeout=120, what=f"2.0.0 after signing:\n{tail()}")

        release("3.0.0", severity="CRITICAL")
        human.commit("3.0.0", plugin("3.0.0"))
        wait_for(said("ALERT scan_blocked (critical): billing 3.0.0: no instance touched: "),
                 what=f"the CRITICAL finding blocked:\n{tail()}")
        assert "CVE-2025-1 (CRITICAL)" in log.read_text() and sim_versions(workdir) == {"2.0.0"}

        release("4.0.0")
        registry.stop()
        human.commit("4.0.0", plugin("4.0.0"))
        wait_for(said("ALERT registry_unreachable (critical): billing 4.0.0: no instance touched: "),
                 what=f"the registry down blocked:\n{tail()}")
        assert sim_versions(workdir) == {"2.0.0"}
        registry.start()
        wait_for(status_is(human, "4.0.0", "Succeeded"), timeout=120, what=f"4.0.0 once back:\n{tail()}")
        assert daemon.poll() is None
    finally:
        assert stop_process(daemon) == 0
