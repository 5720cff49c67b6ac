"""`grayops demo`: the whole loop on a simulated fleet, with nothing but this package.

In a new temporary directory (kept, and printed at the end): a bare remote, a human's clone with a fleet of
24 sim clusters in three tiers,
and the reconciler's own clone. `billing` is installed at 1.4.0, upgraded to 1.5.0 (good), then to 1.6.0,
which the sim makes fail its error-rate threshold on the canary: the reconciler rolls it back by itself and
commits the revert. It ends by printing `git log --oneline` of the remote and where the reports are.
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.progress import LiveDisplay, configure_logging

if TYPE_CHECKING:
    from reconciler.shell import Reconciler

log = logging.getLogger("grayops.demo")

TIERS = (("canary", 2), ("staging", 6), ("prod", 16))

SETTINGS = """\
apiVersion: grayops.dev/v1
kind: Settings
clusters:
{clusters}
metrics: {{provider: sim}}
sim:
  upgradeSeconds: 0.05
  faults:
    - {{version: "1.6.0", errorRate: 0.2}}     # 1.6.0 is bad: 20% errors, against a 5% threshold
git: {{pollInterval: 1s}}
"""

POLICY = """\
# Like the built-in canary-waves, with bakes of a second so the demo is quick.
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: demo-waves}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 1s}
    - {name: wave-1, size: 25%, bake: 1s}
    - {name: wave-2, size: 50%, bake: 1s}
    - {name: all, size: 100%, bake: 1s}
  maxParallel: 8
  instanceTimeout: 30s
  analysis:
    interval: 250ms
    metrics:
      - {name: error_rate, max: 0.05}
      - {name: latency_p99_ms, max: 500}
  rollback: {onFailure: true, limit: 3}
"""

PLUGIN = """\
apiVersion: grayops.dev/v1
kind: Plugin
metadata: {{name: billing}}
spec:
  version: "{version}"      # change this line in a merge request to roll out a new version
  policy: demo-waves
  targets: {{tier: [canary, staging, prod]}}
"""


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _human_commit(clone: Path, version: str, message: str, plugin_extra: str = "") -> None:
    (clone / "plugins" / "billing.yaml").write_text(PLUGIN.format(version=version) + plugin_extra)
    _git(clone, "add", "-A")
    _git(clone, "commit", "-q", "-m", message)
    _git(clone, "push", "-q", "origin", "HEAD:main")


def build_fleet(root: Path, signing_key: Path | None = None, extra_settings: str = "",
                policy: str = POLICY, plugin_extra: str = "") -> tuple[Path, Path]:
    """The bare remote and the human's clone, with the fleet at billing 1.4.0 (the human's commits signed with
    `signing_key`, an SSH private key, when given; `plugin_extra` added to billing's spec)."""
    remote, human = root / "fleet.git", root / "human"
    _git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    _git(root, "clone", "-q", str(remote), str(human))
    _git(human, "config", "user.name", "Alice Ops")
    _git(human, "config", "user.email", "alice@example.com")
    if signing_key is not None:
        for key, value in (("gpg.format", "ssh"), ("user.signingkey", str(signing_key)), ("commit.gpgsign", "true")):
            _git(human, "config", key, value)
    _git(human, "checkout", "-q", "-b", "main")
    clusters = [f"  - {{name: {tier}-{i}, labels: {{tier: {tier}}}, driver: sim}}"
                for tier, count in TIERS for i in range(1, count + 1)]
    (human / "grayops.yaml").write_text(SETTINGS.format(clusters="\n".join(clusters)) + extra_settings)
    (human / "policies").mkdir()
    (human / "policies" / "demo-waves.yaml").write_text(policy)
    (human / "plugins").mkdir()
    _human_commit(human, "1.4.0", "billing: install 1.4.0", plugin_extra)
    return remote, human


def settle_fleet(reconciler: Reconciler, display: LiveDisplay | None, step: str) -> None:
    """Say `step`, fetch at once, and tick (showing progress) until nothing moves."""
    log.info("--- %s", step)
    reconciler.wake.set()
    while True:
        report = reconciler.tick()
        if display is not None:
            display.show(report.states, reconciler.batch_totals())
        if reconciler.idle():
            return
        time.sleep(0.05)


def run_demo(keep: Path | None = None, live: bool = True) -> int:
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.shell import Reconciler

    display = configure_logging("info", live)
    root = keep or Path(tempfile.mkdtemp(prefix="grayops-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    remote, human = build_fleet(root)
    workdir = root / "reconciler"
    repo = GitRepo(str(remote), workdir)
    reconciler = Reconciler(repo, workdir, builtin_policies(), poll_interval=0.2)
    reconciler.start()

    def settle(step: str) -> None:
        settle_fleet(reconciler, display, step)

    settle("install billing 1.4.0 on 24 clusters (canary 2, staging 6, prod 16)")
    _git(human, "pull", "-q", "--rebase", "origin", "main")
    _human_commit(human, "1.5.0", "billing: upgrade to 1.5.0")
    settle("billing 1.4.0 -> 1.5.0: a good version, batch by batch")
    _git(human, "pull", "-q", "--rebase", "origin", "main")
    _human_commit(human, "1.6.0", "billing: upgrade to 1.6.0")
    settle("billing 1.5.0 -> 1.6.0: the sim makes it fail on the canary")
    if display is not None:
        display.close()
        logging.getLogger().removeHandler(display)

    state = reconciler.states["billing"]
    _git(human, "pull", "-q", "--rebase", "origin", "main")
    version_line = next(line for line in (human / "plugins" / "billing.yaml").read_text().splitlines()
                        if "version:" in line)
    versions = sorted(set((reconciler.runtime.sim.versions("billing") if reconciler.runtime and
                           reconciler.runtime.sim else {}).values()), key=str)
    print()
    print(f"billing is {state.phase.value}: {state.reason}")
    print(f"the fleet runs: {', '.join(str(v) for v in versions)}; git says:{version_line.split('#')[0].rstrip()}")
    print("\ngit log --oneline of the fleet repository (newest first):")
    print(_git(remote, "log", "--oneline", "main"), end="")
    reports = sorted((human / "reports").rglob("*.md"))
    print("\nreports:")
    for path in reports:
        print(f"  {path}")
    print(f"\ndone in {time.monotonic() - started:.1f}s; everything is kept in {root} "
          f"(the remote fleet.git, the human clone, the reconciler's workdir)")
    ok = state.phase.value == "RolledBack" and versions == ["1.5.0"] and "1.5.0" in version_line
    return 0 if ok else 1
