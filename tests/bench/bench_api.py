"""Benchmark of the HTTP API under 50 concurrent clients; prints figures (no pass/fail). README "HTTP API".

    python tests/bench/bench_api.py [--clients 50] [--gets 20] [--posts 2]

A real `grayops run --listen` on the sim fleet, billing mid-rollout (1.0.0 -> 1.0.1, its canary baking). Each
client has its own token (access.yaml's per-token rate, a burst of 50 then 5 a second, is meant for one caller,
not for a benchmark of many) and a keep-alive connection, and all start together:
1. `GET /api/v1/rollouts/billing`, `--gets` per client;
2. `POST /internal/version/upgrade/rollback`, `--posts` per client: the first is the rollback commit (202), the
   others find billing already rolled back (200, no commit); each fetches and takes the clone's lock, as a command
   from the CLI or Slack does, so they queue behind one another and behind the reconciler's ticks.
Latency is from sending a request to its whole answer.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import (
    FAST_POLICY,
    free_port,
    make_fleet_repo,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)

BAKING = FAST_POLICY.replace("{name: canary, size: 1, bake: 300ms}", "{name: canary, size: 1, bake: 1h}")


def token(n: int) -> str:
    return f"gro_bench_{n:04d}_0123456789abcdef"


def access(clients: int) -> str:
    lines = [f'  - {{name: bench-{n}, sha256: "{hashlib.sha256(token(n).encode()).hexdigest()}", '
             f"scopes: [read, rollback], person: bench}}" for n in range(clients)]
    return "apiVersion: grayops.dev/v1\nkind: Access\npeople:\n  - {name: bench}\ntokens:\n" + "\n".join(lines) + "\n"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def together(clients: int, work: Callable[[int, requests.Session], list[tuple[float, int]]]
             ) -> tuple[list[float], Counter[int], float]:
    """Run `work` on `clients` threads started at once; (latencies, status counts, wall time)."""
    start = threading.Barrier(clients + 1)
    results: list[list[tuple[float, int]]] = [[] for _ in range(clients)]

    def client(n: int) -> None:
        with requests.Session() as session:
            start.wait()
            results[n] = work(n, session)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    wall = time.monotonic() - began
    flat = [r for result in results for r in result]
    return [t for t, _ in flat], Counter(s for _, s in flat), wall


def timed(call: Callable[[], requests.Response]) -> tuple[float, int]:
    began = time.monotonic()
    answer = call()
    return time.monotonic() - began, answer.status_code


def report(what: str, latencies: list[float], statuses: Counter[int], wall: float) -> None:
    print(f"{what}: {len(latencies)} requests in {wall:.1f} s ({len(latencies) / wall:.0f}/s), "
          f"p50 {statistics.median(latencies) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms; statuses {dict(sorted(statuses.items()))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--gets", type=int, default=20)
    parser.add_argument("--posts", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="grayops-bench-api-"))
    human = make_fleet_repo(root)
    human.commit("fleet: billing 1.0.0", {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 9}, "sim: {upgradeSeconds: 0}\n"),
        "policies/fast.yaml": FAST_POLICY, "access.yaml": access(args.clients),
        "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")})
    port = free_port()
    run = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
         str(root / "work"), "--no-progress", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=open(root / "run.log", "wb"))  # noqa: SIM115 - closed with the process
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Succeeded", 120, "1.0.0")
        human.pull()
        human.commit("billing 1.0.1", {"policies/fast.yaml": BAKING,
                                       "plugins/billing.yaml": plugin_yaml("billing", "1.0.1")})
        wait_for(lambda: (s := remote_status(human, "billing") or {}).get("targetVersion") == "1.0.1"
                 and s.get("phase") == "Progressing", 120, "1.0.1 baking on its canary")

        def gets(n: int, session: requests.Session) -> list[tuple[float, int]]:
            headers = {"Authorization": f"Bearer {token(n)}"}
            return [timed(lambda: session.get(f"{base}/api/v1/rollouts/billing", headers=headers, timeout=120))
                    for _ in range(args.gets)]

        def posts(n: int, session: requests.Session) -> list[tuple[float, int]]:
            headers = {"Authorization": f"Bearer {token(n)}"}
            body = {"plugin": "billing", "reason": f"bench client {n}"}
            return [timed(lambda: session.post(f"{base}/internal/version/upgrade/rollback", json=body,
                                               headers=headers, timeout=300)) for _ in range(args.posts)]

        print(f"{args.clients} concurrent clients, each its own token, against grayops run --listen", flush=True)
        report("GET /api/v1/rollouts/billing", *together(args.clients, gets))
        report("POST /internal/version/upgrade/rollback", *together(args.clients, posts))
    finally:
        stop_process(run)


if __name__ == "__main__":
    main()
