"""Benchmark: how long a rollback takes with blue-green (the Service's selector switched back) against in place (the
previous image rolled out again), on emulated API servers; prints figures, asserts nothing.

    python tests/bench/bench_strategies.py [--clusters 100] [--step 1.0]

Each cluster runs one plugin instance (a Deployment of 2 replicas and its Service) at 1.1.0 after an upgrade
from 1.0.0; for blue-green the old color still runs 1.0.0 (within scaleDownDelay). The rollback is timed from
the first request to the moment the driver observes every instance serving 1.0.0 and ready: the engine's own
criterion. The controller simulator takes one `--step` per rollout stage (a new ReplicaSet observed, its pods
updated, then available), which stands for pod start-up: an in-place rollback waits for it, a switch does not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import Plugin
from reconciler.core.strategy import Adopt, BlueGreenObservation, Operation, Stage, Switch
from tests.kube.emulator import Emulator, kubeconfig

IMAGE = "registry.example.com/plugins/billing"
NAMESPACE = "plugins"


def plugin(strategy: str) -> Plugin:
    workload = {"kind": "Deployment", "name": "billing", "container": "billing", "strategy": strategy,
                **({"service": "billing"} if strategy == "blueGreen" else {})}
    return Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"},
                                  "spec": {"version": "1.0.0", "image": IMAGE, "workload": workload}})


def until(check: Callable[[], bool], timeout: float = 600.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > timeout:
            raise SystemExit("timed out: the emulated clusters did not converge")
        time.sleep(0.02)
    return time.perf_counter() - started


def all_ok(driver: KubernetesDriver, bg: Plugin, ops: list[Operation]) -> bool:
    return all(r.outcome in ("done", "unchanged") for r in driver.perform_all(bg, ops))


def requests(emulators: list[Emulator]) -> int:
    return sum(sum(e.requests.values()) - e.requests["WATCH"] for e in emulators)


def serving(driver: KubernetesDriver, p: Plugin, refs: list[InstanceRef], version: str) -> bool:
    seen = driver.observe(p, refs)
    return all(o.version == version and o.ready for o in seen.values())


def measure(clusters: int, step: float) -> dict[str, float]:
    emulators = [Emulator(f"c{i:03d}", interval=step).start() for i in range(clusters)]
    try:
        for emulator in emulators:
            emulator.add_deployment(NAMESPACE, "billing", f"{IMAGE}:1.0.0", replicas=2)
            emulator.add_service(NAMESPACE, "billing", {"app": "billing"})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "kubeconfig"
            path.write_text(yaml.safe_dump(kubeconfig(emulators)))
            specs = [KubernetesCluster(name=e.name, driver="kubernetes", kube_context=e.name, kubeconfig=str(path))
                     for e in emulators]
            driver = KubernetesDriver(specs, sync_timeout=60)
            refs = [InstanceRef(e.name, NAMESPACE) for e in emulators]
            try:
                return {"clusters": clusters, "step": step, **blue_green(driver, emulators, refs),
                        **in_place(driver, emulators, refs)}
            finally:
                driver.close()
    finally:
        for emulator in emulators:
            emulator.stop()


def blue_green(driver: KubernetesDriver, emulators: list[Emulator], refs: list[InstanceRef]) -> dict[str, float]:
    bg = plugin("blueGreen")
    until(lambda: all_ok(driver, bg, [Adopt("billing", r.id, "up") for r in refs]))
    driver.perform_all(bg, [Stage("billing", r.id, "1.1.0", "up", "1.0.0") for r in refs])

    def green_ready() -> bool:
        seen = driver.observe_strategy(bg, refs).values()
        return all(isinstance(o, BlueGreenObservation) and (t := o.colors.get("green")) is not None and t.ready
                   for o in seen)

    until(green_ready)
    driver.perform_all(bg, [Switch("billing", r.id, "green") for r in refs])
    until(lambda: serving(driver, bg, refs, "1.1.0"))

    before, started = requests(emulators), time.perf_counter()
    results = driver.perform_all(bg, [Switch("billing", r.id, "blue") for r in refs])
    api = time.perf_counter() - started
    assert all(r.outcome == "done" for r in results), [r for r in results if r.outcome != "done"][:1]
    until(lambda: serving(driver, bg, refs, "1.0.0"))
    return {"bg_api_s": api, "bg_total_s": time.perf_counter() - started, "bg_requests": requests(emulators) - before}


def in_place(driver: KubernetesDriver, emulators: list[Emulator], refs: list[InstanceRef]) -> dict[str, float]:
    for emulator in emulators:  # a plugin of its own, beside the blue-green one
        emulator.add_deployment("inplace", "billing", f"{IMAGE}:1.1.0", replicas=2)
    p = plugin("inPlace")
    refs = [InstanceRef(r.cluster, "inplace") for r in refs]
    until(lambda: serving(driver, p, refs, "1.1.0"))
    before, started = requests(emulators), time.perf_counter()
    errors = driver.apply(p, [SetVersion("billing", r.id, "1.0.0", "rb", "1.1.0") for r in refs])
    api = time.perf_counter() - started
    assert not errors, next(iter(errors.values()))
    until(lambda: serving(driver, p, refs, "1.0.0"))
    return {"ip_api_s": api, "ip_total_s": time.perf_counter() - started, "ip_requests": requests(emulators) - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--step", type=float, default=1.0, help="seconds per controller step (pod start-up)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    print(f"{'clusters':>8} {'step s':>6} | {'blue-green: api s':>17} {'served s':>8} {'requests':>8} | "
          f"{'in place: api s':>15} {'served s':>8} {'requests':>8}")
    rows = [measure(args.clusters, args.step) for _ in range(args.runs)]
    for r in rows:
        print(f"{r['clusters']:>8} {r['step']:>6.2f} | {r['bg_api_s']:>17.2f} {r['bg_total_s']:>8.2f} "
              f"{r['bg_requests']:>8} | {r['ip_api_s']:>15.2f} {r['ip_total_s']:>8.2f} {r['ip_requests']:>8}")
    if len(rows) > 1:
        print(f"median served: blue-green {statistics.median(r['bg_total_s'] for r in rows):.2f}s, "
              f"in place {statistics.median(r['ip_total_s'] for r in rows):.2f}s")


if __name__ == "__main__":
    main()
