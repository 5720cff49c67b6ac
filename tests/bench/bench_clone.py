"""Benchmark: `git clone` of a fleet repository holding many finished rollouts (target: 1,000 rollouts, <= 10 s).

    python tests/bench/bench_clone.py [--plugins 100] [--versions 10] [--clusters 100]

The repository holds what the humans and grayops write: per plugin and version, a human's commit of
plugins/<plugin>.yaml with the new version, then that rollout's record as grayops commits it. The engine decides
every tick against a fleet that does what it is asked (`bench_status.roll_out`, policy canary-waves) and the
recorder makes each commit (`Recorder.record`: a commit per tick with transitions, status/<plugin>.yaml in the
grouped form, the report with the last); a store that keeps the commits in memory stands for the clone, and one
`git fast-import` writes them all (the same files and messages, for speed of setup). The remote is then packed as
its maintenance leaves it (`git gc`), and `git clone` over file:// (a pack made and sent as to any client, then
the checkout) is timed, with the size of what it received.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.adapters.gitrepo import _message
from reconciler.core.fleet import RevisionFiles
from reconciler.core.layout import status_path
from reconciler.core.model import RolloutState
from reconciler.core.status import dump_status
from reconciler.shell.recorder import Recorder
from tests.bench.bench_status import START, clusters, desired, installed, roll_out
from tests.bench.figures import Commit, Figure, fast_import, git, stream, table

TARGET_S = 10.0


class Kept:
    """The recorder's store kept in memory: each commit as grayops would make it (files, message with trailers)."""

    def __init__(self) -> None:
        self.commits: list[Commit] = []

    def commit(self, files: Mapping[str, str | None], message: str | Sequence[str],
               trailers: Sequence[tuple[str, str]] = (), *, status: bool = False) -> str | None:
        self.commits.append(Commit(dict(files), _message(message, trailers)))
        return None

    def read(self, path: str, rev: str = "HEAD") -> str | None:
        return None  # only a revert or a pause of the plugin's file reads it: a rollout that succeeds has none

    def status_files(self) -> RevisionFiles:
        return RevisionFiles({})

    def report_paths(self) -> list[str]:
        return []


def plugin_file(name: str, version: str) -> str:
    return (f"apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {{name: {name}}}\nspec:\n  version: \"{version}\"\n"
            "  policy: canary-waves\n")


def history(plugins: int, versions: int, fleet_size: int) -> tuple[list[Commit], int]:
    """The fleet's history: the plugins installed at 1.0.0, then `versions` rounds of a new version of every
    plugin rolled out in full. Returns the commits and the rollouts."""
    fleet = clusters(fleet_size)
    names = [f"p{n:03d}" for n in range(plugins)]
    states: dict[str, RolloutState] = {name: installed(desired("1.0.0", fleet, name)) for name in names}
    first = {f"plugins/{name}.yaml": plugin_file(name, "1.0.0") for name in names}
    first.update({status_path(name): dump_status(state) for name, state in states.items()})
    commits = [Commit(dict(first), "fleet", "alice <alice@example.com>")]
    store = Kept()
    recorder = Recorder(store)
    now, rollouts = START + timedelta(days=1), 0
    for round_ in range(1, versions + 1):
        version = f"1.{round_}.0"
        for name in names:
            path = f"plugins/{name}.yaml"
            store.commits.append(Commit({path: plugin_file(name, version)}, f"{name} {version}",
                                        "alice <alice@example.com>"))
            want = desired(version, fleet, name)
            rollout = roll_out(want, states[name], now)
            for decision in rollout.decisions:
                recorder.record(decision, want, path, {})
            states[name] = rollout.snapshots[-1]
            rollouts += 1
        now += timedelta(days=1)
    return commits + store.commits, rollouts


def bench_clone(plugins: int, versions: int, fleet_size: int) -> list[Figure]:
    started = time.perf_counter()
    commits, rollouts = history(plugins, versions, fleet_size)
    decided = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        remote = root / "fleet.git"
        git(root, "init", "-q", "--bare", "-b", "main", str(remote))
        written = fast_import(remote, stream(commits))
        git(remote, "gc", "-q")
        print(f"fleet repository: {plugins} plugins x {versions} versions on {fleet_size} clusters = {rollouts} "
              f"finished rollouts, {len(commits):,} commits (decided and recorded in {decided:.0f} s, written by "
              f"fast-import in {written:.1f} s, then `git gc`)")
        clone = root / "clone"
        began = time.perf_counter()
        git(root, "clone", "-q", f"file://{remote}", str(clone))
        seconds = time.perf_counter() - began
        size = sum(p.stat().st_size for p in (clone / ".git" / "objects" / "pack").iterdir())
        files = sum(1 for p in clone.rglob("*") if p.is_file() and ".git" not in p.relative_to(clone).parts)
        shutil.rmtree(clone)
    target = TARGET_S if rollouts >= 1000 else None  # the target is for 1,000 rollouts
    figures = [Figure(f"git clone, {rollouts:,} finished rollouts", seconds, "s", target,
                      note=f"file://, {len(commits):,} commits, {files:,} files checked out"),
               Figure("  its pack", size / (1 << 20), "MB", note=f"{fleet_size} instances per rollout")]
    table("clone of the fleet repository", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10, help="rollouts per plugin")
    parser.add_argument("--clusters", type=int, default=100, help="instances per plugin")
    args = parser.parse_args()
    bench_clone(args.plugins, args.versions, args.clusters)


if __name__ == "__main__":
    main()
