"""Benchmark of the Kubernetes driver through emulated API servers on loopback; prints figures, asserts nothing.

    python tests/bench/bench_kube.py [--clusters 100] [--instances 20]

For clusters x instances (one Deployment per namespace, one emulated API server per cluster), it measures:
1. API requests per reconcile tick while observing every instance: the first tick (one LIST and one WATCH per
   cluster and kind) and the steady ticks after it (served from the list+watch caches), and the time of each;
2. the same for a quarter of the instances per cluster, to show the count follows clusters, not instances;
3. one apply tick that upgrades 10% of the instances (one GET and one PATCH per changed instance).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Plugin
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--instances", type=int, default=20, help="instances (namespaces) per cluster")
    args = parser.parse_args()
    print(f"{'clusters':>8} {'instances':>9} | {'1st tick req':>12} {'1st tick s':>10} | {'steady req':>10} "
          f"{'steady ms':>9} | {'changes':>7} {'apply req':>9} {'apply s':>7}")
    for clusters, per in [(args.clusters, args.instances), (args.clusters, max(1, args.instances // 4)),
                          (max(1, args.clusters // 4), args.instances)]:
        r = measure(clusters, per)
        print(f"{r['clusters']:>8} {r['instances']:>9} | {r['first_requests']:>12} {r['first_s']:>10.2f} | "
              f"{r['steady_requests']:>10} {r['steady_ms']:>9.1f} | {r['changes']:>7} {r['apply_requests']:>9} "
              f"{r['apply_s']:>7.2f}")


if __name__ == "__main__":
    main()
