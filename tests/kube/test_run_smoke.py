"""Smoke tests as a step of an in-place rollout (README "Strategies"), end to end: the real `grayops run` against
emulated API servers runs the policy's smoke Job after each instance is upgraded and verified."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Human, plugin_yaml, remote_file, remote_status
from tests.kube.fleet import Fleet
from tests.kube.test_run import IMAGE, images, run_once, settings
from tests.kube.test_run_blue_green import POLICY

PLUGIN = ("  namespaces: [tenant-a, tenant-b]\n"  # no image: no registry to ask (README "Supply chain")
          "  workload: {kind: Deployment, name: billing, container: billing}\n")


def test_a_smoke_job_failing_after_an_upgrade_fails_the_batch_and_rolls_it_back(fleet_repo: Human, kube: Fleet,
                                                                                  tmp_path: Path) -> None:
    human = fleet_repo
    for emulator in kube.emulators.values():
        for ns in ("tenant-a", "tenant-b"):
            emulator.add_deployment(ns, "billing", f"{IMAGE}:1.0.0", replicas=2)
        emulator.job_handler = lambda job: ("fail", "smoke: checkout returned 502") \
            if "-upgrade-" in job["metadata"]["name"] else ("complete", "")
    human.commit("billing 1.1.0, in place, with a smoke Job", {
        "grayops.yaml": settings(kube),
        "policies/bg.yaml": POLICY.replace("TIMEOUT", "30s"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.1.0", "bg", PLUGIN),
    })
    run_once(human, tmp_path / "work")
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack", status
    history = "".join(h["reason"] for h in status["history"])
    assert "batch canary failed: kube-canary/tenant-a: smoke tests after upgrade to 1.1.0 failed: " in history
    assert "smoke: checkout returned 502" in history
    assert images(kube) == {f"{IMAGE}:1.0.0"}  # the canary rolled back, nothing else touched
    assert 'version: "1.0.0"' in (remote_file(human, "plugins/billing.yaml") or "")  # reverted: git says what runs
    jobs, _ = kube["kube-canary"].list(kube["kube-canary"].resource("jobs", "batch", "v1"), "tenant-a")
    assert jobs == []  # the smoke Jobs are deleted, passed or failed
