"""A tag moved between two rollouts of the same version (README "Supply chain"): each rollout start resolves the
tag again and judges the signature of what it names now, so an answer given for an earlier rollout (the content
the tag named then) never lets a later one start."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from policies import builtin_policies
from reconciler.adapters.registry import default_registry
from reconciler.core.fleet import load_fleet
from reconciler.core.trust import ArtifactAllowed, ArtifactBlocked, ArtifactDecision
from reconciler.shell.artifacts import ArtifactGate
from reconciler.shell.trust import SupplyChain
from tests.conftest import FAST_POLICY, grayops, make_fleet_repo, plugin_yaml, remote_status, settings_yaml, wait_for
from tests.core.test_engine import desired
from tests.trust.registry import Registry, key_id, public_pem
from tests.trust.test_run_gate import sim_versions, status_is
from tests.trust.test_run_preflight import grayops_run

REPO = "plugins/billing"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_version_rolled_out_again_after_its_tag_moved_to_unsigned_content_is_refused(
        tmp_path: Path, own_registry: Registry) -> None:
    """2.0.0 rolls out as image A, is rolled back; 2.0.0 is pushed again as B, unsigned; rolled out again (after
    3.0.0: a rolled-back version is not retried until a new one is committed), it is refused for B."""
    signer = ec.generate_private_key(ec.SECP256R1())
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "cosign.pub").write_bytes(public_pem(signer))
    registry, image = own_registry, f"{own_registry.host}/{REPO}"

    def release(version: str, content: str = "", signed: bool = True) -> str:
        digest = registry.push_image(REPO, version, content)
        if signed:
            registry.sign(REPO, digest, [signer])
        return digest

    def plugin(version: str) -> dict[str, str]:
        return {"plugins/billing.yaml": plugin_yaml("billing", version, extra=f"  image: {image}\n")}

    human = make_fleet_repo(tmp_path)
    settings = settings_yaml({"canary": 1, "prod": 2}, "trust: {artifacts: {required: true}}\n"
                             f"registries:\n  - {{host: '{registry.host}', insecure: true}}\n")
    release("1.0.0")
    human.commit("fleet", {"grayops.yaml": settings, "policies/fast.yaml": FAST_POLICY, **plugin("1.0.0")})
    workdir = tmp_path / "work"
    with grayops_run(tmp_path, human.remote, "--trust", str(trust)) as said:
        wait_for(status_is(human, "1.0.0", "Succeeded"), timeout=120, what="1.0.0 rolled out")
        first = release("2.0.0", "A")
        human.commit("2.0.0", plugin("2.0.0"))
        wait_for(status_is(human, "2.0.0", "Succeeded"), timeout=120, what="2.0.0 rolled out as A")
        assert (remote_status(human, "billing") or {})["artifact"]["digest"] == first
        back = grayops("rollback", "billing", "--repo", str(human.remote), "--reason", "bad", "--as", "alice")
        assert back.returncode == 0, back.stderr
        wait_for(status_is(human, "2.0.0", "RolledBack"), timeout=120, what="2.0.0 rolled back")

        moved = release("2.0.0", "B", signed=False)  # the tag now names other content, which nobody signed
        assert moved != first
        release("3.0.0")
        human.pull()
        human.commit("3.0.0", plugin("3.0.0"))
        wait_for(status_is(human, "3.0.0", "Succeeded"), timeout=120, what="3.0.0 rolled out")
        human.pull()
        human.commit("2.0.0 again", plugin("2.0.0"))
        signature = f"{image}:sha256-{moved.removeprefix('sha256:')}.sig"  # where B's signature would be
        wait_for(said(f"ALERT artifact_untrusted (critical): billing 2.0.0: no instance touched: {image}:2.0.0: "
                      f"no signature: {signature} is not in the registry"), what="2.0.0 refused for its new content")
        status = wait_for(lambda: (s := remote_status(human, "billing") or {}).get("targetVersion") == "2.0.0" and s,
                          what="the held rollout's status pushed")  # the alert is logged before the push
        assert status["phase"] == "Pending" and not status.get("artifact")
        assert sim_versions(workdir) == {"3.0.0"}


def test_an_answer_for_one_rollout_is_not_given_to_a_later_rollout_of_the_same_version(
        tmp_path: Path, registry: Registry) -> None:
    """The gate's answers are kept per rollout start (the commit that asked for the version): while another
    version is asked about, an answer for 2.0.0 that no rollout took stays behind; a later rollout of 2.0.0 asks
    the registry again, as the tag may have moved, or a key been removed, since."""
    signer = ec.generate_private_key(ec.SECP256R1())
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "cosign.pub").write_bytes(public_pem(signer))
    repo = "plugins/gate-cache"
    image = f"{registry.host}/{repo}"
    settings = settings_yaml({"prod": 1}, "trust: {artifacts: {required: true}}\n"
                             f"registries:\n  - {{host: '{registry.host}', insecure: true}}\n")
    fleet = load_fleet({"grayops.yaml": settings,
                        "policies/fast.yaml": FAST_POLICY,
                        "plugins/billing.yaml": plugin_yaml("billing", "2.0.0", extra=f"  image: {image}\n")},
                       builtin_policies(), adapters=default_registry().models)
    signed = registry.push_image(repo, "2.0.0", "A")
    registry.sign(repo, signed, [signer])
    registry.push_image(repo, "2.0.1")  # unsigned: the gate keeps asking about it
    gate = ArtifactGate(SupplyChain.open(str(trust), None))

    def answer(version: str, commit: str) -> ArtifactDecision:
        want = replace(desired(version, commit=commit), artifact_gate=True)
        found: list[ArtifactDecision] = []

        def answered() -> bool:
            decision = gate.observe(fleet, want, None, NOW)
            found.extend([decision] if decision else [])
            return bool(found)

        wait_for(answered, timeout=60, what=f"the gate's answer for {version}")
        return found[0]

    try:
        assert answer("2.0.0", "c1") == ArtifactAllowed(image, "2.0.0", signed, key_id(signer), None)
        assert isinstance(answer("2.0.1", "c2"), ArtifactBlocked)  # the 2.0.0 answer no rollout took stays
        moved = registry.push_image(repo, "2.0.0", "B")  # not signed
        again = answer("2.0.0", "c3")
        assert isinstance(again, ArtifactBlocked) and again.kind == "artifact_untrusted", again
        assert again.digest == moved
    finally:
        gate.close()
