"""`grayops run --shards 3` end to end: three replicas (the real command, in child processes) over one fleet
repository (a bare remote), sharing the plugins through the emulated API's Leases and rolling them out on three
emulated clusters. One replica is killed (SIGKILL) mid-rollout: its shard is taken over and its plugins finish on
the others, and the remote's status history records no transition twice."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from reconciler.core.shards import shard_of
from tests.conftest import Human, git, plugin_yaml, remote_status, wait_for
from tests.kube.fleet import Fleet

IMAGE = "registry.example.com/plugins"
NAMESPACES = ("tenant-a", "tenant-b")
PLUGINS = {"inventory": 0, "ledger": 0, "search": 1, "checkout": 1, "billing": 2, "auth": 2}  # name -> shard of 3
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: kube}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 1s}
    - {name: wave-1, size: 50%, bake: 1s}
    - {name: all, size: 100%, bake: 1s}
  maxParallel: 2
  instanceTimeout: 120s
"""


def settings(kube: Fleet) -> str:
    clusters = "".join(f"  - {{name: {c.name}, labels: {{tier: {c.labels['tier']}}}, driver: kubernetes, "
                       f"kubeContext: {c.kube_context}, kubeconfig: {c.kubeconfig}}}\n" for c in kube.clusters())
    return "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n" + clusters + "metrics: {provider: sim}\n"


def plugin(name: str, version: str) -> str:
    return plugin_yaml(name, version, "kube", f"  namespaces: [tenant-a, tenant-b]\n"
                       f"  workload: {{kind: Deployment, name: {name}, container: {name}}}\n")  # no image: no
    # registry to ask (README "Supply chain"); the Deployments keep their repository and change the tag


def images(kube: Fleet, name: str) -> set[str]:
    found = set()
    for emulator in kube.emulators.values():
        for ns in NAMESPACES:
            obj = emulator.get(emulator.resource("deployments"), ns, name)
            found.add(obj["spec"]["template"]["spec"]["containers"][0]["image"])
    return found


def holders(kube: Fleet) -> list[str | None]:
    """Who holds each shard's Lease (grayops-0..2) in the cluster the replicas run in (the kubeconfig's current
    context), None for a shard nobody holds yet."""
    emulator = kube["kube-canary"]
    leases = {obj["metadata"]["name"]: obj for obj in emulator.list(emulator.resource("leases", "coordination.k8s.io"),
                                                                    "grayops")[0]}
    return [(leases.get(f"grayops-{i}") or {}).get("spec", {}).get("holderIdentity") for i in range(3)]


class Replica:
    def __init__(self, name: str, human: Human, kube: Fleet, tmp_path: Path) -> None:
        self.name, self.log_path = name, tmp_path / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        env = {k: v for k, v in os.environ.items() if k != "GRAYOPS_REPO"}
        env |= {"KUBECONFIG": str(kube.kubeconfig), "POD_NAME": name}
        script = Path(sys.executable).parent / "grayops"  # the installed command, as in a pod
        self.process = subprocess.Popen(
            [str(script), "run", "--repo", str(human.remote), "--workdir", str(tmp_path / name), "--interval", "0.05",
             "--poll", "0.2", "--no-progress", "--shards", "3", "--lease-namespace", "grayops",
             "--lease-duration", "3"], env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def replicas(fleet_repo: Human, kube: Fleet, tmp_path: Path) -> Iterator[dict[str, Replica]]:
    started: dict[str, Replica] = {}
    try:
        for name in ("replica-a", "replica-b", "replica-c"):
            started[name] = Replica(name, fleet_repo, kube, tmp_path)
        yield started
    finally:
        for one in started.values():
            one.stop()


def status_history(human: Human, name: str) -> list[str]:
    """Every transition recorded in status/<name>.yaml on the remote, oldest first: a commit holds one line per
    transition of its tick (README "Git as the record")."""
    shas = git(human.remote, "log", "--reverse", "--format=%H", "main", "--", f"status/{name}.yaml").split()
    return [line for sha in shas
            for line in git(human.remote, "show", "-s", "--format=%B", sha).partition("\n\n")[0].splitlines()]


def mid_rollout(human: Human, name: str) -> bool:
    """Past its first batch and not finished, as the remote records it."""
    status = remote_status(human, name) or {}
    passed = [b for b in status.get("batches", []) if b.get("phase") == "Passed"]
    return status.get("targetVersion") == "1.1.0" and status.get("phase") == "Progressing" and bool(passed)


def test_three_replicas_share_the_plugins_and_finish_a_killed_ones_rollouts(
        fleet_repo: Human, kube: Fleet, replicas: dict[str, Replica]) -> None:
    human = fleet_repo
    assert {name: shard_of(name, 3) for name in PLUGINS} == PLUGINS
    for emulator in kube.emulators.values():
        emulator.interval = 0.3  # slowish controllers: rollouts last long enough to be killed in the middle
        for ns in NAMESPACES:
            for name in PLUGINS:
                emulator.add_deployment(ns, name, f"{IMAGE}/{name}:1.0.0", replicas=2)
    human.commit("fleet on kubernetes", {"grayops.yaml": settings(kube), "policies/kube.yaml": POLICY})
    # every replica sees the others (presence Leases) and they settle on one shard each
    wait_for(lambda: sorted(filter(None, holders(kube))) == sorted(replicas), timeout=120,
             what="one shard held by each replica")

    human.commit("six plugins to 1.1.0", {f"plugins/{name}.yaml": plugin(name, "1.1.0") for name in PLUGINS})
    victim = holders(kube)[PLUGINS["billing"]]
    assert victim is not None
    doomed = [name for name, shard in PLUGINS.items() if shard == PLUGINS["billing"]]
    wait_for(lambda: any(mid_rollout(human, name) for name in doomed), timeout=180,
             what=f"a rollout of {victim}'s shard in the middle", every=0.02)
    replicas[victim].process.send_signal(signal.SIGKILL)
    replicas[victim].process.wait()
    unfinished = [name for name in doomed if (remote_status(human, name) or {}).get("phase") != "Succeeded"]
    assert unfinished, "the killed replica's rollouts all finished before it was killed"

    def all_succeeded() -> bool:
        return all((remote_status(human, name) or {}).get("phase") == "Succeeded" for name in PLUGINS)

    wait_for(all_succeeded, timeout=240, what="every rollout succeeded on the remote")
    for name in PLUGINS:
        assert images(kube, name) == {f"{IMAGE}/{name}:1.1.0"}, name
    survivors = set(replicas) - {victim}
    assert set(holders(kube)) <= survivors, holders(kube)  # the killed replica's shard was taken over
    assert all(replicas[name].process.poll() is None for name in survivors)

    for name in PLUGINS:  # the record, as an auditor reads it: no transition recorded twice
        history = status_history(human, name)
        twice = {k: n for k, n in Counter(history).items() if n > 1}
        assert not twice, (name, twice)
        steps = Counter(found.groups() for line in history
                        if (found := re.search(r": batch (\S+) (started|passed)\b", line)))
        assert steps and all(n == 1 for n in steps.values()), (name, steps)
        assert {batch for batch, what in steps if what == "passed"} == {"canary", "wave-1", "all"}, name
