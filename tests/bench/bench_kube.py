"""Benchmark of the Kubernetes driver through emulated API servers on loopback; prints figures, asserts nothing.

    python tests/bench/bench_kube.py [--clusters 100] [--instances 20]

For clusters x instances (one Deployment per namespace, one emulated API server per cluster), it measures:
1. API requests per reconcile tick while observing every instance: the first tick (one LIST and one WATCH per
   cluster and kind) and the steady ticks after it (served from the list+watch caches), and the time of each;
2. the same for a quarter of the instances per cluster, to show the count follows clusters, not instances;
3. one apply tick that upgrades 10% of the instances (one GET and one PATCH per changed instance);
4. the Lease requests of sharding (README "Sharding"): `--shards` replicas of `grayops run --shards N` in steady
   state against one emulated API server, the requests of each renewal round by verb, and per second at the
   default lease duration (a round every 15 s / 3).
"""

from __future__ import annotations

import argparse
import socketserver
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube.client import connect_default
from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.lease import ShardLeases
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Plugin
from tests.bench.figures import Figure, table
from tests.kube.emulator import Emulator, kubeconfig

IMAGE = "registry.example.com/plugins/billing"


def plugin() -> Plugin:
    return Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"},
                                  "spec": {"version": "1.1.0", "image": IMAGE,
                                           "workload": {"kind": "Deployment", "name": "billing"}}})


def requests(emulators: list[Emulator]) -> int:
    return sum(sum(e.requests.values()) for e in emulators)


def measure(clusters: int, instances: int, ticks: int = 5) -> dict[str, float]:
    emulators = [Emulator(f"c{i:03d}", controller=False).start() for i in range(clusters)]
    try:
        for emulator in emulators:
            for n in range(instances):
                emulator.add_deployment(f"ns-{n:02d}", "billing", f"{IMAGE}:1.0.0", replicas=1)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig(emulators)))
            specs = [KubernetesCluster(name=e.name, driver="kubernetes", kube_context=e.name, kubeconfig=str(path))
                     for e in emulators]
            driver = KubernetesDriver(specs)
            refs = [InstanceRef(e.name, f"ns-{n:02d}") for e in emulators for n in range(instances)]
            before, started = requests(emulators), time.perf_counter()
            seen = driver.observe(plugin(), refs)
            first_time, first_requests = time.perf_counter() - started, requests(emulators) - before
            assert all(o.ready for o in seen.values()), "not every instance was observed ready"
            steady_times, steady_requests = [], []
            for _ in range(ticks):
                before, started = requests(emulators), time.perf_counter()
                driver.observe(plugin(), refs)
                steady_times.append(time.perf_counter() - started)
                steady_requests.append(requests(emulators) - before)
            changes = [SetVersion("billing", r.id, "1.1.0", "bench", "1.0.0") for r in refs[::10]]
            before, started = requests(emulators), time.perf_counter()
            errors = driver.apply(plugin(), changes)
            apply_time, apply_requests = time.perf_counter() - started, requests(emulators) - before
            assert not errors, next(iter(errors.values()))
            driver.close()
    finally:
        for emulator in emulators:
            emulator.stop()
    return {"clusters": clusters, "instances": clusters * instances, "first_requests": first_requests,
            "first_s": first_time, "steady_requests": max(steady_requests),
            "steady_ms": statistics.median(steady_times) * 1000, "changes": len(changes),
            "apply_requests": apply_requests, "apply_s": apply_time}


def quiet(server: socketserver.BaseServer, request: object, address: object) -> None:
    """A server's handling of a request that failed: said nothing."""


def lease_requests(shards: int, replicas: int, duration: float = 15.0, rounds: int = 5) -> list[Figure]:
    """Requests per renewal round once the shards are shared out (every replica has its fair share)."""
    # The Lease calls leave answers unread (_preload_content=False), so their connections are reset when closed,
    # and the emulator's server would print a traceback for each: not news here.
    socketserver.BaseServer.handle_error = quiet  # type: ignore[method-assign, assignment]
    emulator = Emulator("home", controller=False).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig([emulator])))
            group = [ShardLeases(connect_default(str(path)), "grayops", "grayops", f"replica-{n}", shards,
                                 duration=duration) for n in range(replicas)]
            for _ in range(4):  # seen, handed over, released, taken: settled
                for one in group:
                    one.step()
            held = sorted(len(one.snapshot()) for one in group)
            assert sum(held) == shards, held
            before = emulator.requests.copy()
            for _ in range(rounds):
                for one in group:
                    one.step()
            per_round = {verb: (count - before[verb]) / rounds for verb, count in emulator.requests.items()
                         if count > before[verb]}
    finally:
        emulator.stop()
    every = max(0.2, duration / 3)
    total = sum(per_round.values())
    verbs = ", ".join(f"{verb} {count:g}" for verb, count in sorted(per_round.items()))
    return [Figure(f"Lease requests, {shards} shards / {replicas} replicas, a round", total, "req",
                   note=f"the group; {verbs}; shards held per replica {held[0]}-{held[-1]}"),
            Figure("  the same per second, --lease-duration 15 s", total / every, "/s",
                   note=f"a round every {every:g} s")]


def bench_kube(clusters: int, per_cluster: int) -> list[Figure]:
    print(f"{'clusters':>8} {'instances':>9} | {'1st tick req':>12} {'1st tick s':>10} | {'steady req':>10} "
          f"{'steady ms':>9} | {'changes':>7} {'apply req':>9} {'apply s':>7}")
    rows = []
    for count, per in [(clusters, per_cluster), (clusters, max(1, per_cluster // 4)),
                       (max(1, clusters // 4), per_cluster)]:
        r = measure(count, per)
        rows.append(r)
        print(f"{r['clusters']:>8} {r['instances']:>9} | {r['first_requests']:>12} {r['first_s']:>10.2f} | "
              f"{r['steady_requests']:>10} {r['steady_ms']:>9.1f} | {r['changes']:>7} {r['apply_requests']:>9} "
              f"{r['apply_s']:>7.2f}")
    r = rows[0]
    figures = [Figure(f"API requests, first tick, {r['instances']:,.0f} instances", r["first_requests"], "req",
                      note=f"{r['clusters']:.0f} clusters: a LIST and a WATCH per cluster and kind"),
               Figure("  a tick after it (list+watch caches)", r["steady_requests"], "req",
                      note=f"observing every instance took {r['steady_ms']:.0f} ms"),
               Figure(f"  a tick upgrading {r['changes']:.0f} instances", r["apply_requests"], "req",
                      note="a GET and a PATCH per changed instance"),
               *lease_requests(10, 10), *lease_requests(10, 3)]
    table("Kubernetes API load", figures)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--instances", type=int, default=20, help="instances (namespaces) per cluster")
    args = parser.parse_args()
    bench_kube(args.clusters, args.instances)


if __name__ == "__main__":
    main()
