"""kill -9 at random moments: the reconciler converges, every recorded status is consistent, no batch skips its
gate and no passed batch is done again.

A kill is timed by what the process has done, not by the clock (a loaded machine makes a clock-timed kill land
before anything happened): right after its next step of a kind picked at random, a new commit in its clone
(committed, maybe not pushed), a new commit on the remote (pushed) or a change to the simulated fleet (acted on).

The record checked is the remote's history of status/billing.yaml, commit by commit, as an auditor would read it.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.model import to_doc
from reconciler.core.status import load_status
from tests.conftest import Human, git, grayops, plugin_yaml, remote_status, settings_yaml, wait_for

BAKE = 0.6
POLICY = f"""\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {{name: fast}}
spec:
  order: {{label: tier, values: [canary, staging, prod]}}
  batches:
    - {{name: canary, size: 1, bake: {BAKE}s}}
    - {{name: wave-1, size: 25%, bake: {BAKE}s}}
    - {{name: wave-2, size: 50%, bake: {BAKE}s}}
    - {{name: all, size: 100%, bake: {BAKE}s}}
  maxParallel: 3
  instanceTimeout: 300s  # wall time, kills and restarts included: it only bounds a failure
  verify: [{{type: exec, command: [redis-cli, ping], expect: PONG}}]
  analysis:
    interval: 150ms
    metrics: [{{name: error_rate, max: 0.05}}]
"""
SIM = "sim:\n  upgradeSeconds: 0.2\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.3}\n"
SETTLED = ("Succeeded", "RolledBack", "Failed")


def start(human: Human, workdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                             "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def commits(repo: Path, ref: str) -> int:
    """grayops' commits on `ref` (the human's do not count: a first clone is not work done)."""
    done = subprocess.run(["git", "rev-list", "--count", "--author=grayops", ref], cwd=repo, capture_output=True,
                          text=True, check=False)
    return int(done.stdout.strip()) if done.returncode == 0 else 0


class Work:
    """Whether the reconciler did something since this was made, seen one way: a commit in its clone (committed,
    maybe not pushed), a commit on the remote (pushed), or a change to the simulated fleet (acted on)."""

    KINDS = ("committed", "pushed", "acted")

    def __init__(self, human: Human, workdir: Path, kind: str) -> None:
        self.human, self.workdir, self.kind = human, workdir, kind
        self.before = self.look()

    def look(self) -> int | bytes:
        if self.kind == "committed":
            return commits(self.workdir / "repo", "HEAD") if (self.workdir / "repo").exists() else 0
        if self.kind == "pushed":
            return commits(self.human.remote, "main")
        path = self.workdir / "sim-fleet.json"
        return path.read_bytes() if path.exists() else b""

    def done(self) -> bool:
        return self.look() != self.before


def settled(human: Human, version: str) -> bool:
    """The rollout of `version` has ended on the remote: a restarted reconciler does nothing more."""
    status = remote_status(human, "billing") or {}
    return status.get("targetVersion") == version and status.get("phase") in SETTLED


def kill_at_random(human: Human, workdir: Path, rng: random.Random, times: int, version: str) -> list[str]:
    """Start, kill -9 right after its next step of a random kind, again; returns the phase the remote recorded
    after each kill."""
    phases = []
    for _ in range(times):
        work = Work(human, workdir, rng.choice(Work.KINDS))  # the random moment: right after its next step of a kind
        process = start(human, workdir)
        wait_for(lambda: work.done() or settled(human, version), timeout=120,  # noqa: B023 (used at once)
                 what=f"the reconciler's next step ({work.kind})", every=0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        phases.append((remote_status(human, "billing") or {}).get("phase", "none"))
    return phases


def converge(human: Human, workdir: Path) -> None:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress", timeout=180)
    assert done.returncode == 0, done.stderr


def status_history(human: Human) -> list[tuple[dict[str, str], dict[str, Any]]]:
    """(trailers, status document) for every commit that changed status/billing.yaml, oldest first."""
    shas = git(human.remote, "log", "--reverse", "--format=%H", "main", "--", "status/billing.yaml").split()
    history: list[tuple[dict[str, str], dict[str, Any]]] = []
    for sha in shas:
        body = git(human.remote, "show", "-s", "--format=%B", sha)
        trailers = dict(re.findall(r"^([A-Z][\w-]+): (.+)$", body, flags=re.M))
        history.append((trailers, to_doc(load_status(git(human.remote, "show", f"{sha}:status/billing.yaml")))))
    return history


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_record(human: Human) -> None:
    history = status_history(human)
    assert history, "no status was ever recorded"
    started: dict[tuple[str, str], int] = {}
    passed: dict[tuple[str, str], int] = {}
    for trailers, doc in history:
        rollout = doc["rolloutId"]
        assert trailers["Grayops-Rollout"] == rollout  # every status commit says which rollout it records
        key = (rollout, trailers.get("Grayops-Batch", ""))
        if trailers["Grayops-Action"] == "batch-start":
            started[key] = started.get(key, 0) + 1
        if trailers["Grayops-Action"] == "batch-pass":
            passed[key] = passed.get(key, 0) + 1
        for batch in doc["batches"]:
            if batch["phase"] == "Passed":
                # the gate: instances done and verified, then a full bake with readings, before passing
                baked = (parse(batch["end"]) - parse(batch["bakeStart"])).total_seconds()
                assert baked >= BAKE - 0.001, (batch["name"], baked)
                assert all(v["readings"] > 0 for v in batch["verdicts"].values())
                assert all(doc["instances"][i]["step"] in ("Done", "RollingBack", "RolledBack")
                           for i in batch["instances"])
    assert all(count == 1 for count in started.values()), started  # no batch started twice
    assert all(count == 1 for count in passed.values()), passed  # no passed batch done again
    # once passed, a batch stays passed in every later record of the same rollout
    seen_passed: set[tuple[str, str]] = set()
    for _, doc in history:
        now_passed = {(doc["rolloutId"], b["name"]) for b in doc["batches"] if b["phase"] == "Passed"}
        assert {k for k in seen_passed if k[0] == doc["rolloutId"]} <= now_passed
        seen_passed |= now_passed


def fleet_versions(workdir: Path) -> set[str]:
    state = json.loads((workdir / "sim-fleet.json").read_text())
    return {entry["target"] for entry in state["plugins"]["billing"].values()}


@pytest.mark.timeout(900)  # 14 kills and restarts, each wait bounded on its own: on a loaded machine it nears 300 s
def test_kill_9_at_random_moments_converges_without_skipping_or_redoing_a_gate(fleet_repo: Human,
                                                                               tmp_path: Path) -> None:
    human, workdir, rng = fleet_repo, tmp_path / "work", random.Random(20261122)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"canary": 1, "staging": 3, "prod": 8}, SIM),
                           "policies/fast.yaml": POLICY, "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    phases = kill_at_random(human, workdir, rng, times=10, version="1.5.0")
    assert sum(p not in ("none", "Succeeded") for p in phases) >= 5, phases  # killed mid-rollout, mostly
    converge(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status and status["reason"]
    assert fleet_versions(workdir) == {"1.5.0"}
    check_record(human)

    # a bad version, killed again and again while it is judged and rolled back
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    phases = kill_at_random(human, workdir, rng, times=4, version="1.6.0")
    assert phases.count("RolledBack") < 4, phases
    converge(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack", status and status["reason"]
    assert fleet_versions(workdir) == {"1.5.0"}
    human.pull()
    assert '"1.5.0"' in (human.clone / "plugins" / "billing.yaml").read_text()
    check_record(human)
