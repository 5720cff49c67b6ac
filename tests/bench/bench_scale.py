"""Every figure of README "Sizing" in one run: figure / measured / target / the same commits by one `git
fast-import` / ratio, side by side at the end.

    python tests/bench/bench_scale.py [--skip shards,plugins] [--clone-clusters 100]

Each benchmark runs in a process of its own (its peak RSS is its own) and prints its own details first:
core-10k and core-100k (bench_core.py: 1,000 and 10,000 clusters x 10 plugins), plugins (bench_plugins.py: 10,000
plugins x 1 cluster, run as a command; its figures are read from its output), status (bench_status.py: a full
rollout of a 10,000-instance plugin), clone (bench_clone.py: 1,000 finished rollouts), kube (bench_kube.py: API
requests per tick and of sharding's Leases) and shards (bench_shards.py: 1,000,000 instances in 10 shards, the
longest). The load average is printed with every table: on a machine shared
with other work, wall times are inflated by waiting for a core.
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import subprocess
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench import bench_clone, bench_core, bench_kube, bench_shards, bench_status
from tests.bench.figures import Figure, table

HERE = Path(__file__).resolve().parent


def plugins() -> list[Figure]:
    """bench_plugins.py as a command (it ends its process when done), its two targeted figures read from its
    output; a figure it did not print (a wait that ran out) is NaN, printed n/a."""
    done = subprocess.run([sys.executable, str(HERE / "bench_plugins.py")], capture_output=True, text=True,
                          check=False)
    print(done.stdout, done.stderr, sep="", end="", flush=True)
    first = re.search(r"first tick\s+([\d.]+) s", done.stdout)
    pause = re.search(r"Paused there\s+([\d.]+) s.*?ticks begun meanwhile: (\d+)", done.stdout)
    nan = float("nan")
    return [Figure("10,000 plugins x 1 cluster: first tick", float(first[1]) if first else nan, "s", 5,
                   note="pushed as it goes"),
            Figure("  a pause: ticks begun until Paused on the remote", float(pause[2]) if pause else nan, "", 1,
                   note=f"{pause[1] if pause else '?'} s from the pause on the remote (target: the next tick)")]


BENCHES: dict[str, Callable[[argparse.Namespace], list[Figure]]] = {
    "core-10k": lambda args: bench_core.bench_plan_and_tick(1000, 10),
    "core-100k": lambda args: bench_core.bench_plan_and_tick(10_000, 10),
    "plugins": lambda args: plugins(),
    "status": lambda args: bench_status.bench_status(10_000),
    "clone": lambda args: bench_clone.bench_clone(100, 10, args.clone_clusters),
    "kube": lambda args: bench_kube.bench_kube(100, 20),
    "shards": lambda args: bench_shards.bench_shards(10_000, 100, 10),
}


def child(name: str, args: argparse.Namespace, pipe: Connection) -> None:
    pipe.send(BENCHES[name](args))


def isolated(name: str, args: argparse.Namespace) -> list[Figure]:
    """One benchmark in a process of its own (not a pool's daemon: bench_shards starts processes of its own)."""
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=child, args=(name, args, theirs))
    process.start()
    theirs.close()
    try:
        figures: list[Figure] = ours.recv()
    except EOFError:  # it failed, and said why on stderr
        figures = [Figure(f"{name}: failed", float("nan"), "")]
    process.join()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", default="", help=f"comma-separated, of {', '.join(BENCHES)}")
    parser.add_argument("--clone-clusters", type=int, default=100, help="instances per rollout in the clone's fleet")
    args = parser.parse_args()
    skipped = set(filter(None, args.skip.split(",")))
    if skipped - set(BENCHES):
        parser.error(f"--skip: unknown {', '.join(sorted(skipped - set(BENCHES)))}")
    figures: list[Figure] = []
    for name in BENCHES:
        if name not in skipped:
            print(f"--- {name}", flush=True)
            figures += isolated(name, args)
    print()
    table("scale: every figure", figures)


if __name__ == "__main__":
    main()
