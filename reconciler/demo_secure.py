"""`grayops demo --secure`: signed desired state on the simulated fleet (README "Supply chain").

In a new temporary directory: the demo fleet with `trust: {commits: {required: true}}`, two SSH keys made with
ssh-keygen (Alice, who may change the fleet, and grayops' own, which signs its records), a trust directory whose
allowed_signers holds both, and the reconciler run with them as `grayops run --trust DIR --signing-key KEY` runs.
Alice installs billing 1.4.0 with a signed commit; Mallory pushes 1.6.0 unsigned and it is refused
(`untrusted_revision`, the fleet stays on 1.4.0); Alice signs 1.5.0 on top and it rolls out. It ends by printing
the remote's log with each commit's signature as git verifies it.

The artifact part, when Debian's `docker-registry` is installed: a registry on loopback holds billing's images,
1.4.0 and 1.5.0 signed with the pipeline's key (`cosign.pub` in the trust directory), and grayops.yaml requires
signed artifacts too; each rollout pins the digest it verified, and Alice's signed commit of 1.7.0, whose image
nobody signed, is held by the artifact gate (`artifact_untrusted`) before any instance is touched. Without the
binary, one line says the artifact part is skipped.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reconciler.demo import POLICY, _git, _human_commit, build_fleet, settle_fleet
from reconciler.demo_registry import DemoRegistry, registry_binary
from reconciler.progress import configure_logging

if TYPE_CHECKING:
    from reconciler.core.model import RolloutState
    from reconciler.progress import LiveDisplay
    from reconciler.shell import Reconciler

log = logging.getLogger("grayops.demo")

REQUIRED = "trust: {commits: {required: true}}     # every desired commit must be signed by an allowed signer\n"
ARTIFACTS = ("trust: {commits: {required: true}, artifacts: {required: true}}   # and every image signed by a "
             "trusted key\nregistries:\n  - {host: 'HOST', insecure: true}\n")
REPO = "plugins/billing"


def _ssh_key(keys: Path, name: str) -> Path:
    key = keys / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@example.com", "-f", str(key)],
                   check=True, capture_output=True, stdin=subprocess.DEVNULL)
    return key


def _trust_dir(root: Path, *keys: Path) -> Path:
    """The trust roots, outside the fleet repository: allowed_signers naming each key's owner."""
    trust = root / "trust"
    trust.mkdir()
    lines = []
    for key in keys:
        kind, blob, *_ = key.with_suffix(".pub").read_text().split()
        lines.append(f"{key.name}@example.com {kind} {blob}\n")
    (trust / "allowed_signers").write_text("".join(lines))
    return trust


def _unsigned_commit(clone: Path, version: str, message: str) -> str:
    """Mallory's push: her own name, no signature."""
    _git(clone, "pull", "-q", "--rebase", "origin", "main")
    (clone / "plugins" / "billing.yaml").write_text(
        (clone / "plugins" / "billing.yaml").read_text().replace('"1.4.0"', f'"{version}"'))
    _git(clone, "add", "-A")
    _git(clone, "-c", "commit.gpgsign=false", "-c", "user.name=Mallory", "-c", "user.email=mallory@example.com",
         "commit", "-q", "-m", message)
    _git(clone, "push", "-q", "origin", "HEAD:main")
    return _git(clone, "rev-parse", "HEAD").strip()


def run_secure_demo(keep: Path | None = None, live: bool = True) -> int:
    display = configure_logging("info", live)
    root = keep or Path(tempfile.mkdtemp(prefix="grayops-demo-secure-"))
    root.mkdir(parents=True, exist_ok=True)
    registry = _start_registry(root)
    try:
        return _run(root, display, registry)
    finally:
        if registry is not None:
            registry.stop()


def _start_registry(root: Path) -> DemoRegistry | None:
    """The registry of the artifact part; None, said in one line, when it cannot run here."""
    binary = registry_binary()
    if binary is None:
        log.warning("the artifact part is skipped: docker-registry (the CNCF distribution registry) is not installed;"
                    " apt-get install docker-registry to see an unsigned image refused too")
        return None
    try:
        return DemoRegistry(binary, root / "registry")
    except (OSError, RuntimeError) as err:
        log.warning("the artifact part is skipped: %s", err)
        return None


def _publish(registry: DemoRegistry, trust: Path) -> None:
    """The build pipeline: billing 1.4.0 and 1.5.0 signed with its key (trusted as cosign.pub), 1.7.0 not."""
    pipeline = ec.generate_private_key(ec.SECP256R1())
    (trust / "cosign.pub").write_bytes(pipeline.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    for version in ("1.4.0", "1.5.0"):
        registry.sign(REPO, registry.push_image(REPO, version), pipeline)
    registry.push_image(REPO, "1.7.0")


def _run(root: Path, display: LiveDisplay | None, registry: DemoRegistry | None) -> int:
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.shell import Reconciler
    from reconciler.shell.trust import SupplyChain

    started = time.monotonic()
    keys = root / "keys"
    keys.mkdir()
    alice, own = _ssh_key(keys, "alice"), _ssh_key(keys, "grayops")
    trust = _trust_dir(root, alice, own)
    settings, image = REQUIRED, ""
    if registry is not None:
        _publish(registry, trust)
        settings, image = ARTIFACTS.replace("HOST", registry.host), f"  image: {registry.host}/{REPO}\n"
    remote, human = build_fleet(root, signing_key=alice, extra_settings=settings,
                                policy=POLICY.replace("bake: 1s", "bake: 300ms"), plugin_extra=image)
    workdir = root / "reconciler"
    supply = SupplyChain.open(str(trust), str(own))  # as `grayops run --trust DIR --signing-key KEY`
    reconciler = Reconciler(GitRepo(str(remote), workdir), workdir, builtin_policies(), poll_interval=0.2,
                            supply=supply)
    reconciler.start()

    settle_fleet(reconciler, display, "Alice installs billing 1.4.0, signed with her SSH key (an allowed signer)")
    bad = _unsigned_commit(human, "1.6.0", "billing: upgrade to 1.6.0 (pushed without review)")
    settle_fleet(reconciler, display, "Mallory pushes billing 1.6.0 unsigned: grayops refuses the revision")
    refused = any(error.startswith("untrusted:") for error in reconciler.revisions.refused)
    stayed = _fleet_versions(reconciler)
    _git(human, "pull", "-q", "--rebase", "origin", "main")
    _human_commit(human, "1.5.0", "billing: upgrade to 1.5.0, reviewed and signed", image)
    settle_fleet(reconciler, display, "Alice signs billing 1.5.0 on top: it rolls out")
    state = reconciler.states["billing"]
    versions = _fleet_versions(reconciler)
    held = None
    if registry is not None:
        _git(human, "pull", "-q", "--rebase", "origin", "main")
        _human_commit(human, "1.7.0", "billing: upgrade to 1.7.0, signed (its image is not)", image)
        settle_fleet(reconciler, display, "Alice signs billing 1.7.0, whose image the pipeline did not sign: the "
                                          "artifact gate holds it")
        held = reconciler.states["billing"]
    if display is not None:
        display.close()
        logging.getLogger().removeHandler(display)

    print()
    print(f"Mallory's unsigned {bad[:12]} was {'refused' if refused else 'NOT refused'}; the fleet stayed on "
          f"{', '.join(stayed)}")
    print(f"billing is {state.phase.value} at {state.target_version}; the fleet runs: {', '.join(versions)}")
    ok = refused and stayed == ["1.4.0"] and state.phase.value == "Succeeded" and versions == ["1.5.0"]
    if held is not None:
        ok = _show_artifacts(state, held, _fleet_versions(reconciler)) and ok
    print("\nthe fleet repository's log with each commit's signature as git verifies it (G: good, N: none):")
    print(_signed_log(remote, trust), end="")
    print(f"\ndone in {time.monotonic() - started:.1f}s; everything is kept in {root} (the remote fleet.git, the "
          f"keys, the trust directory, the reconciler's workdir{', the registry' if registry else ''})")
    return 0 if ok else 1


def _show_artifacts(passed: RolloutState, held: RolloutState, versions: list[str]) -> bool:
    """What the artifact gate pinned for 1.5.0 and why it holds 1.7.0; whether both are as they should be."""
    pinned = passed.artifact
    print(f"billing 1.5.0 runs as {pinned.get('image')}@{pinned.get('digest')}, its signature verified with "
          f"{pinned.get('signer')} (cosign.pub)")
    print(f"billing {held.target_version} is {held.phase.value}, waiting for {held.waiting_for}; no instance "
          f"touched, the fleet runs: {', '.join(versions)}")
    return (held.target_version == "1.7.0" and held.phase.value == "Pending" and not held.batches
            and "artifact_untrusted" in (held.waiting_for or "") and versions == ["1.5.0"]
            and bool(pinned.get("signer")))


def _signed_log(remote: Path, trust: Path) -> str:
    """People's commits one per line, grayops' own records (signed with its key) counted."""
    shown = _git(remote, "-c", f"gpg.ssh.allowedSignersFile={trust / 'allowed_signers'}", "log",
                 "--format=%h%x09%G?%x09%GS%x09%an%x09%s", "main")
    lines, own = [], []
    for line in shown.splitlines():
        commit, status, signer, author, subject = line.split("\t", 4)
        if author == "grayops":
            own.append(f"{status} {signer}")
        else:
            lines.append(f"{commit} {status} {signer or '(unsigned)':<20} {author:<10} {subject}\n")
    lines.append(f"and {len(own)} records by grayops, signed: {', '.join(sorted(set(own)))}\n")
    return "".join(lines)


def _fleet_versions(reconciler: Reconciler) -> list[str]:
    runtime = reconciler.runtime
    sim = runtime.sim if runtime else None
    return sorted({str(v) for v in (sim.versions("billing") if sim else {}).values()})
