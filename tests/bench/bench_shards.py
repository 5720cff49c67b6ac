"""Benchmark of sharding (README "Sharding"): one fleet split into shards, one replica process per shard.

    python tests/bench/bench_shards.py [--clusters 10000] [--plugins 100] [--shards 10]

A process group of `--shards` replica processes over one fleet repository (a bare remote) and the sim fleet, each
a `Reconciler` acting for the plugins of one shard (held for good here: the Lease loop runs in a thread of its own
and costs API requests, not tick time; see the README's sizing note). Each replica starts its rollouts and reaches
the bakes (two ticks, one replica at a time so that they do not share the 2 cores), then each in turn runs ticks
with nothing to record: the per-shard idle tick, printed with its target (<= 200 ms) and each replica's peak RSS.

The tick is timed twice: wall time, and CPU time (the process's and its git children's), which is what the tick
costs a replica with a core to itself. On a machine shared with other work (the load average is printed) the wall
time is inflated by waiting for a core; the CPU time is not.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_core import fleet_repo
from tests.bench.figures import Figure, load, table

TARGET_MS = 200.0


class OneShard:
    """The shard a replica holds, for good (the `Scope` the tick takes)."""

    def __init__(self, shard: int, shards: int) -> None:
        self.shard, self.shards = shard, shards

    def snapshot(self) -> frozenset[int]:
        return frozenset({self.shard})

    def shard_of(self, plugin: str) -> int:
        from reconciler.core.shards import shard_of

        return shard_of(plugin, self.shards)

    def holds(self, shard: int) -> bool:
        return shard == self.shard


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (the git commands a tick runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def replica(remote: str, workdir: str, shard: int, shards: int, pipe: Connection) -> None:
    """One replica process: starts, then does what the parent asks ("warm", "idle", "stop") and answers."""
    from policies import builtin_policies
    from reconciler.adapters.gitrepo import GitRepo
    from reconciler.shell import Reconciler

    reconciler = Reconciler(GitRepo(remote, Path(workdir)), Path(workdir), builtin_policies(), poll_interval=3600,
                            scope=OneShard(shard, shards))
    reconciler.start()
    head = Path(workdir) / "repo"

    def commits() -> int:
        return int(subprocess.run(["git", "rev-list", "--count", "HEAD"], cwd=head, capture_output=True, text=True,
                                  check=True).stdout)

    pipe.send("started")
    while True:
        order = pipe.recv()
        if order == "warm":  # every rollout of the shard starts, then its canaries bake
            started = time.perf_counter()
            reconciler.tick()
            reconciler.tick()
            fleet = reconciler.fleet
            assert fleet is not None
            acting = [name for name in fleet.plugins if reconciler.scope and reconciler.scope.shard_of(name) == shard]
            instances = sum(len(reconciler.desired.instances(fleet, name)) for name in acting)
            pipe.send((len(acting), instances, time.perf_counter() - started))
        elif order == "idle":
            quiet = []
            for _ in range(7):
                before = commits()
                began, cpu = time.perf_counter(), cpu_seconds()
                reconciler.tick()
                if commits() == before:
                    quiet.append((time.perf_counter() - began, cpu_seconds() - cpu))
            pipe.send((quiet, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        else:
            pipe.send("stopped")
            return


def bench_shards(clusters: int, plugins: int, shards: int) -> list[Figure]:
    total = clusters * plugins
    print(f"sharding: {clusters} clusters x {plugins} plugins = {total:,} instances in {shards} shards, "
          f"one replica process each; {load()}")
    spawn = multiprocessing.get_context("spawn")  # clean processes: each one's RSS is its own
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = time.perf_counter()
        remote, _ = fleet_repo(root, clusters, plugins)
        print(f"  fleet repository written                 {time.perf_counter() - made:8.1f} s")
        pipes, processes = [], []
        for shard in range(shards):
            ours, theirs = spawn.Pipe()
            process = spawn.Process(target=replica, args=(str(remote), str(root / f"replica-{shard}"), shard,
                                                          shards, theirs), daemon=True)
            process.start()
            pipes.append(ours)
            processes.append(process)
        for pipe in pipes:
            assert pipe.recv() == "started"
        rows = []
        for shard, pipe in enumerate(pipes):  # one at a time: a replica has its cores to itself, as in production
            pipe.send("warm")
            acting, instances, warm = pipe.recv()
            pipe.send("idle")
            quiet, rss = pipe.recv()
            rows.append((shard, acting, instances, warm, quiet, rss))
            wall = f"{1000 * statistics.median(w for w, _ in quiet):7.1f}" if quiet else "    n/a"
            cpu = f"{1000 * statistics.median(c for _, c in quiet):7.1f}" if quiet else "    n/a"
            print(f"  shard {shard:2d}: {acting:3d} plugins {instances:8,} instances  start + bake {warm:6.1f} s  "
                  f"idle tick median wall {wall} ms, CPU {cpu} ms  peak RSS {rss:6.0f} MB  "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        for pipe in pipes:
            pipe.send("stop")
            pipe.recv()
        for process in processes:
            process.join(timeout=60)
    walls = [statistics.median(w for w, _ in quiet) for *_, quiet, _ in rows if quiet]
    cpus = [statistics.median(c for _, c in quiet) for *_, quiet, _ in rows if quiet]
    instances = sum(row[2] for row in rows)
    figures = [
        Figure(f"per-shard idle tick, {shards} shards, wall", 1000 * max(walls, default=float("nan")), "ms",
               TARGET_MS, note=f"worst shard's median; {instances:,} instances acted for"),
        Figure("  the same, CPU (the tick's process and git children)", 1000 * max(cpus, default=float("nan")),
               "ms", TARGET_MS, note="what it costs a replica with a core to itself"),
        Figure("  peak RSS of the largest replica", max(row[5] for row in rows), "MB",
               note=f"all {shards} replicas: {sum(row[5] for row in rows):.0f} MB"),
    ]
    table(f"sharding: {total:,} instances", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--shards", type=int, default=10)
    args = parser.parse_args()
    bench_shards(args.clusters, args.plugins, args.shards)


if __name__ == "__main__":
    main()
