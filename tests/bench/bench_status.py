"""Benchmark of the status record's size: what a full rollout of a large plugin adds to the remote.

    python tests/bench/bench_status.py [--instances 10000]

A plugin runs 1.0.0 on `--instances` clusters (its status file records that rollout as succeeded) and 2.0.0 is
rolled out with the built-in policy canary-waves (a canary, 10%, 50%, the rest, 10 instances at a time): the
engine decides every tick against a fleet that does what it is asked, and the status file of each transition is
committed, as the recorder commits it (README "Git as the record"), into a bare repository. Measured once with
the per-instance form grayops wrote before and once with the grouped form it writes now:

- packed growth: size-pack (`git count-objects -v`) after `git repack -a -d -f`, as `git gc` leaves the remote,
  minus the same before the rollout;
- loose growth: the status files as loose objects (`git hash-object -w`), what a remote holds between two
  `git gc`s (a push of fewer than `receive.unpackLimit` = 100 objects is unpacked into loose objects);
- the largest status file and the bytes of all of them.

Then the rollout as grayops records it: each tick's decision through the recorder (`Recorder.record`, a commit per
plugin per tick, the report with the last) into a clone (`GitRepo`), timed, next to the same commits written by one
`git fast-import` (tests/bench/figures.py), and their packed growth.

Target: <= 1 MB of packed growth per full rollout of a 10,000-instance plugin.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.core import yamlemit
from reconciler.core.effects import (
    Change,
    Desired,
    InstanceObservation,
    MetricResult,
    Observations,
    QueryMetrics,
    SetVersion,
)
from reconciler.core.engine import Decision, decide, rollout_id
from reconciler.core.layout import status_path
from reconciler.core.model import BatchPhase, InstanceState, Measurement, Phase, RolloutState, Step, to_doc
from reconciler.core.plan import select_instances
from reconciler.core.spec import ClusterSpec, PluginSpec, PolicySpec
from reconciler.core.status import dump_status, load_status
from reconciler.shell.recorder import Recorder
from tests.bench.figures import Commit, Figure, fast_import, git, replay, snapshot, stream, table

TARGET_BYTES = 1 << 20
START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
POLICY = PolicySpec.model_validate(yaml.safe_load(builtin_policies()["canary-waves"])["spec"])


def per_instance_form(state: RolloutState) -> str:
    """The status file as grayops wrote it before the grouped form: every instance with its own fields."""
    return yamlemit.dump(to_doc(state))


def clusters(count: int) -> list[ClusterSpec]:
    tier = ("canary", "staging", "prod")
    return [ClusterSpec(name=f"c{i:05d}", labels={"tier": tier[0 if i < 10 else 1 if i < 100 else 2]})
            for i in range(count)]


def desired(version: str, fleet: list[ClusterSpec], plugin: str = "billing") -> Desired:
    return Desired(plugin, version, False, "canary-waves", POLICY,
                   tuple(select_instances(PluginSpec(version=version), fleet)), f"c0ffee{version}",
                   Change(f"c0ffee{version}", "alice"))


def installed(want: Desired) -> RolloutState:
    """The status of a succeeded rollout of `want`: every instance done, started in waves of ten."""
    ids = [ref.id for ref in want.instances]
    return RolloutState(
        plugin=want.plugin, rollout_id=rollout_id(want.plugin, want.version, want.desired_commit),
        target_version=want.version, desired_commit=want.desired_commit, policy=want.policy_name,
        phase=Phase.SUCCEEDED, reason="rollout succeeded", started=START, updated=START + timedelta(hours=1),
        finished=START + timedelta(hours=1),
        instances={iid: InstanceState(Step.DONE, want.version, None, START + timedelta(seconds=i // 10))
                   for i, iid in enumerate(ids)},
        last_good=dict.fromkeys(ids, want.version))


@dataclass
class Rollout:
    """The state recorded by each transition of one rollout, in order."""

    snapshots: list[RolloutState]
    ticks: int
    seconds: float
    decisions: list[Decision]  # the ticks with transitions: what the recorder commits


def roll_out(want: Desired, state: RolloutState, now: datetime) -> Rollout:
    """Decide ticks until the rollout ends; instances run what they are asked at once, metrics are good."""
    seen = {ref.id: InstanceObservation(state.target_version, True) for ref in want.instances}
    snapshots: list[RolloutState] = [state]
    metrics: tuple[MetricResult, ...] = ()
    decisions: list[Decision] = []
    started, ticks = time.perf_counter(), 0
    while True:
        decision = decide(state, want, Observations(dict(seen), metrics=metrics), now)
        ticks += 1
        snapshots.extend(t.state or decision.state for t in decision.transitions)
        if decision.transitions:
            decisions.append(decision)
        state, metrics = decision.state, ()
        for effect in decision.effects:
            if isinstance(effect, SetVersion):  # ready at the next tick
                seen[effect.instance] = InstanceObservation(effect.version, True)
            elif isinstance(effect, QueryMetrics):
                metrics += tuple(MetricResult(effect.rollout_id, effect.batch, m.name, Measurement(0.001))
                                 for m in effect.metrics)
        if state.phase.terminal:
            break
        upgrading = state.current_batch is not None and state.current_batch.phase is BatchPhase.UPGRADING
        now += timedelta(seconds=1 if upgrading else 15)  # a tick a second while instances move, then the bake
    assert state.phase is Phase.SUCCEEDED, state.reason
    return Rollout(snapshots, ticks, time.perf_counter() - started, decisions)


def commit_all(repo: Path, texts: list[str]) -> None:
    """One commit of status/billing.yaml per text on main, written by one `git fast-import`."""
    fast_import(repo, stream(Commit({"status/billing.yaml": text}, f"billing: transition {index}")
                             for index, text in enumerate(texts)))


def counts(repo: Path) -> dict[str, int]:
    """`git count-objects -v` in bytes (it says KiB)."""
    found = dict(line.split(": ") for line in git(repo, "count-objects", "-v").splitlines())
    return {key: int(value) * 1024 for key, value in found.items() if key in ("size", "size-pack")}


def packed_growth(root: Path, texts: list[str]) -> int:
    """What the transitions after the first (the status before the rollout) add once the remote is gc'ed."""
    repo = root / "packed.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(repo))
    commit_all(repo, texts[:1])
    git(repo, "repack", "-a", "-d", "-f", "-q")
    before = counts(repo)["size-pack"]
    commit_all(repo, texts)  # the same first commit again (the same objects), then the rollout's
    git(repo, "repack", "-a", "-d", "-f", "-q")  # deltas computed afresh, as `git gc` on the remote does
    return counts(repo)["size-pack"] - before


def loose_growth(root: Path, texts: list[str]) -> int:
    """What the rollout's status files take as loose objects (before the remote's next `git gc`)."""
    repo = root / "loose.git"
    git(root, "init", "-q", "--bare", str(repo))
    paths = []
    for index, text in enumerate(texts[1:]):
        paths.append(root / f"status-{index}.yaml")
        paths[-1].write_text(text)
    git(repo, "hash-object", "-w", "--stdin-paths", stdin="\n".join(map(str, paths)).encode())
    return counts(repo)["size"]


def mb(size: float) -> str:
    return f"{size / (1 << 20):.2f} MB"


def measure(name: str, form: Callable[[RolloutState], str], rollout: Rollout) -> None:
    started = time.perf_counter()
    texts = [form(state) for state in rollout.snapshots]
    written = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        packed, loose = packed_growth(Path(tmp), texts), loose_growth(Path(tmp), texts)
    largest = max(len(text.encode()) for text in texts)
    total = sum(len(text.encode()) for text in texts[1:])
    started = time.perf_counter()
    load_status(texts[-1])
    read = time.perf_counter() - started
    print(f"  {name:<13}{mb(packed):>10} ({'ok' if packed <= TARGET_BYTES else 'OVER'}){mb(loose):>12}"
          f"{mb(largest):>12}{mb(total):>12}{1000 * written / len(texts):>9.0f} ms{1000 * read:>7.0f} ms")


def recorded(root: Path, want: Desired, before: RolloutState, rollout: Rollout) -> list[Figure]:
    """The rollout recorded as grayops records it, into a clone of a remote where `before` is the status: the
    time of the recorder's commits, the same commits by one fast-import, and their packed growth."""
    remote = root / "fleet.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    plugin = ("apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\nspec:\n"
              f"  version: \"{want.version}\"\n")
    fast_import(remote, stream([Commit({"plugins/billing.yaml": plugin, status_path("billing"): dump_status(before)},
                                       "fleet", "alice <alice@example.com>")]))
    repo = GitRepo(str(remote), root / "work")
    repo.ensure_clone()
    clone = root / "work" / "repo"
    limit_repo = snapshot(clone, root / "limit.git")
    git(limit_repo, "repack", "-a", "-d", "-f", "-q")
    packed_before = counts(limit_repo)["size-pack"]
    recorder = Recorder(repo)
    started = time.perf_counter()
    for decision in rollout.decisions:
        recorder.record(decision, want, "plugins/billing.yaml", {})
    seconds = time.perf_counter() - started
    limit, commits = replay(clone, limit_repo)
    git(limit_repo, "repack", "-a", "-d", "-f", "-q")
    packed = counts(limit_repo)["size-pack"] - packed_before
    return [Figure(f"status commits of a full rollout, {len(want.instances):,} inst.", 1000 * seconds, "ms",
                   limit=1000 * limit, note=f"{commits} commits (one per tick with transitions), report included"),
            Figure("  their packed growth on the remote", packed / (1 << 20), "MB", TARGET_BYTES / (1 << 20),
                   note="after `git repack -adf`")]


def bench_status(instances: int) -> list[Figure]:
    fleet = clusters(instances)
    before = installed(desired("1.0.0", fleet))
    want = desired("2.0.0", fleet)
    rollout = roll_out(want, before, START + timedelta(days=1))
    final = rollout.snapshots[-1]
    assert load_status(dump_status(final)) == load_status(per_instance_form(final))  # one record, either form
    print(f"status record of a full rollout: {instances} instances, policy canary-waves, "
          f"{len(rollout.snapshots) - 1} transitions in {len(rollout.decisions)} ticks "
          f"({rollout.ticks} ticks decided in {rollout.seconds:.0f} s); a status file per transition:")
    print(f"  {'form':<13}{'packed growth':>15}{'loose':>12}{'file':>12}{'all files':>12}{'dump':>12}{'load':>10}")
    measure("per-instance", per_instance_form, rollout)
    measure("grouped", dump_status, rollout)
    print(f"  target: packed growth <= {mb(TARGET_BYTES)} per full rollout (after `git repack -adf`); loose: the "
          "same commits before the remote's gc; file: the largest status file; dump: per status file; load: the "
          "last one")
    with tempfile.TemporaryDirectory() as tmp:
        figures = recorded(Path(tmp), want, before, rollout)
    table("as grayops records it: a commit per tick with transitions", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    bench_status(parser.parse_args().instances)


if __name__ == "__main__":
    main()
