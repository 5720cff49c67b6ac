"""`grayops demo --secure`: signed desired state on the simulated fleet (README "Supply chain").

In a new temporary directory: the demo fleet with `trust: {commits: {required: true}}`, two SSH keys made with
ssh-keygen (Alice, who may change the fleet, and grayops' own, which signs its records), a trust directory whose
allowed_signers holds both, and the reconciler run with them as `grayops run --trust DIR --signing-key KEY` runs.
Alice installs billing 1.4.0 with a signed commit; Mallory pushes 1.6.0 unsigned and it is refused
(`untrusted_revision`, the fleet stays on 1.4.0); Alice signs 1.5.0 on top and it rolls out. It ends by printing
the remote's log with each commit's signature as git verifies it.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.demo import POLICY, _git, _human_commit, build_fleet, settle_fleet
from reconciler.progress import configure_logging

if TYPE_CHECKING:
    from reconciler.shell import Reconciler

log = logging.getLogger("grayops.demo")

REQUIRED = "trust: {commits: {required: true}}     # every desired commit must be signed by an allowed signer\n"


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
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.shell import Reconciler
    from reconciler.shell.trust import SupplyChain

    display = configure_logging("info", live)
    root = keep or Path(tempfile.mkdtemp(prefix="grayops-demo-secure-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    keys = root / "keys"
    keys.mkdir()
    alice, own = _ssh_key(keys, "alice"), _ssh_key(keys, "grayops")
    trust = _trust_dir(root, alice, own)
    remote, human = build_fleet(root, signing_key=alice, extra_settings=REQUIRED,
                                policy=POLICY.replace("bake: 1s", "bake: 300ms"))
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
    _human_commit(human, "1.5.0", "billing: upgrade to 1.5.0, reviewed and signed")
    settle_fleet(reconciler, display, "Alice signs billing 1.5.0 on top: it rolls out")
    if display is not None:
        display.close()
        logging.getLogger().removeHandler(display)

    state = reconciler.states["billing"]
    versions = _fleet_versions(reconciler)
    print()
    print(f"Mallory's unsigned {bad[:12]} was {'refused' if refused else 'NOT refused'}; the fleet stayed on "
          f"{', '.join(stayed)}")
    print(f"billing is {state.phase.value} at {state.target_version}; the fleet runs: {', '.join(versions)}")
    print("\nthe fleet repository's log with each commit's signature as git verifies it (G: good, N: none):")
    print(_signed_log(remote, trust), end="")
    print(f"\ndone in {time.monotonic() - started:.1f}s; everything is kept in {root} (the remote fleet.git, the "
          f"keys, the trust directory, the reconciler's workdir)")
    ok = refused and stayed == ["1.4.0"] and state.phase.value == "Succeeded" and versions == ["1.5.0"]
    return 0 if ok else 1


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
