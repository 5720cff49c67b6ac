"""A rollback on Kubernetes runs the digest its version's own rollout pinned (README "Supply chain"), with the real
`grayops run --once --trust DIR`, three emulated API servers and a real registry on loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from tests.conftest import Human, grayops, plugin_yaml, remote_status
from tests.kube.conftest import kube  # noqa: F401  (the emulated clusters)
from tests.kube.fleet import Fleet
from tests.kube.test_run import NAMESPACES, PLUGIN, POLICY, settings
from tests.trust.registry import Registry, public_pem

REPO = "plugins/billing"


def test_grayops_run_rolls_back_to_the_digest_recorded_when_the_version_rolled_out(
        fleet_repo: Human, kube: Fleet, own_registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    """The real `grayops run --once --trust DIR` on emulated clusters and a real registry: 1.1.0 rolls out at its
    signed digest; its tag is then pushed again (other, also signed content); 2.0.0 fails and is rolled back, and
    every instance runs 1.1.0 at the digest its own rollout pinned, not at what the tag names now."""
    human, registry = fleet_repo, own_registry
    image = f"{registry.host}/{REPO}"
    signer = ec.generate_private_key(ec.SECP256R1())
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "cosign.pub").write_bytes(public_pem(signer))

    def release(version: str, content: str = "") -> str:
        digest = registry.push_image(REPO, version, content)
        registry.sign(REPO, digest, [signer])
        return digest

    def commit(version: str) -> None:
        human.commit(f"billing {version}", {"plugins/billing.yaml": plugin_yaml(
            "billing", version, "kube", PLUGIN + f"  image: {image}\n")})

    def run_once() -> dict[str, Any]:
        done = grayops("run", "--repo", str(human.remote), "--workdir", str(tmp_path / "work"), "--once",
                       "--interval", "0.05", "--poll", "0.2", "--no-progress", "--trust", str(trust), timeout=180)
        assert done.returncode == 0, done.stderr
        return remote_status(human, "billing") or {}

    for emulator in kube.emulators.values():
        for ns in NAMESPACES:
            emulator.add_deployment(ns, "billing", f"{image}:1.0.0", replicas=2)
        emulator.exec_handler = lambda pod, cmd: ("PONG\n", 0)
        emulator.bad_versions["2.0.0"] = "deadline"
    human.commit("fleet on kubernetes, signed images required", {
        "grayops.yaml": settings(kube) + "trust: {artifacts: {required: true}}\n"
                                         f"registries:\n  - {{host: '{registry.host}', insecure: true}}\n",
        "policies/kube.yaml": POLICY.replace("OFFLINE", "wait")})
    first = release("1.1.0")
    commit("1.1.0")
    status = run_once()
    assert status["phase"] == "Succeeded" and status["artifact"]["digest"] == first, status
    assert deployed(kube) == {f"{image}:1.1.0@{first}"}

    moved = release("1.1.0", "rebuilt")  # the tag now names other content, signed too
    assert moved != first
    release("2.0.0")
    human.pull()
    commit("2.0.0")
    status = run_once()
    assert status["phase"] == "RolledBack", status
    assert status["digests"] == {"1.1.0": first}
    assert deployed(kube) == {f"{image}:1.1.0@{first}"}  # not the moved tag, not the bare tag


def deployed(fleet: Fleet) -> set[str]:
    return {str(emulator.get(emulator.resource("deployments"), ns, "billing")["spec"]["template"]["spec"][
        "containers"][0]["image"]) for emulator in fleet.emulators.values() for ns in NAMESPACES}
