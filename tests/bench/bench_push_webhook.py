"""Benchmark: a version commit pushed -> the first instance upgraded, with a 60 s poll and a push webhook; prints
figures (no pass/fail). README "HTTP API".

    python tests/bench/bench_push_webhook.py [--pushes 10] [--interval 1]

A real `grayops run --listen` on the sim fleet (`upgradeSeconds: 0`, so the time is grayops' own: the webhook,
the fetch, the validation, the plan, the start commit and the change asked of the instance) with
`git.pollInterval: 60s` and a webhook secret. The remote is served by `git daemon` on loopback (git://), so grayops
neither watches it as a local directory nor polls it in time: only the webhook makes it fetch. Each round pushes
a new version to the bare remote, POSTs GitHub's signed push delivery, and times until the sim fleet records the
canary instance at that version.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.conftest import free_port, make_fleet_repo, plugin_yaml, settings_yaml, stop_process, wait_for

SECRET = "bench-webhook-secret"
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: bench}
spec:
  order: {label: tier, values: [canary, prod]}
  batches:
    - {name: canary, size: 1, bake: 1h}
    - {name: all, size: 100%}
  analysis:
    interval: 1s
    metrics: [{name: error_rate, max: 0.05}]
"""


def canary_version(workdir: Path) -> str | None:
    try:
        doc = json.loads((workdir / "sim-fleet.json").read_text())
    except (OSError, ValueError):
        return None
    entries = doc.get("plugins", {}).get("billing", {})
    return next((e["target"] for iid, e in entries.items() if iid.startswith("canary-")), None)


def upgraded_to(workdir: Path, version: str) -> bool:
    return canary_version(workdir) == version


def github_push(base: str, commit: str) -> int:
    body = json.dumps({"ref": "refs/heads/main", "after": commit, "repository": {"full_name": "ops/fleet"}}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = requests.post(f"{base}/webhooks/git", data=body, timeout=30, headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": signature})
    return answer.status_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pushes", type=int, default=10)
    parser.add_argument("--interval", default="1", help="grayops run --interval: seconds between ticks (default 1)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="grayops-bench-push-"))
    human = make_fleet_repo(root)
    human.commit("fleet: billing 1.0.0", {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 9}, "sim: {upgradeSeconds: 0}\n"
                                      "git: {pollInterval: 60s, webhook: {secretEnv: GRAYOPS_WEBHOOK_SECRET}}\n"),
        "policies/bench.yaml": POLICY, "plugins/billing.yaml": plugin_yaml("billing", "1.0.0", "bench")})
    daemon_port, port, workdir = free_port(), free_port(), root / "work"
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--enable=receive-pack",
                               f"--base-path={root}", "--listen=127.0.0.1", f"--port={daemon_port}", str(root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = None
    try:
        wait_for(lambda: subprocess.run(["git", "ls-remote", f"git://127.0.0.1:{daemon_port}/fleet.git"],
                                        capture_output=True, check=False).returncode == 0, 30, "git daemon")
        run = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", f"git://127.0.0.1:{daemon_port}/fleet.git",
             "--workdir", str(workdir), "--interval", args.interval, "--no-progress", "--listen", f"127.0.0.1:{port}"],
            env={**os.environ, "GRAYOPS_WEBHOOK_SECRET": SECRET}, stdout=subprocess.DEVNULL,
            stderr=open(root / "run.log", "wb"))  # noqa: SIM115 - closed with the process
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: canary_version(workdir) == "1.0.0", 120, "the first rollout to reach the canary")
        times: list[float] = []
        answered: list[float] = []
        for n in range(1, args.pushes + 1):
            version = f"1.0.{n}"
            human.pull()
            commit = human.commit(f"billing {version}", {"plugins/billing.yaml":
                                                         plugin_yaml("billing", version, "bench")})
            started = time.monotonic()
            status = github_push(base, commit)
            assert status == 202, status
            answered.append(time.monotonic() - started)
            wait_for(partial(upgraded_to, workdir, version), 120, f"{version} on the canary", every=0.002)
            times.append(time.monotonic() - started)
            print(f"push {n}: {times[-1] * 1000:.0f} ms (the webhook answered in {answered[-1] * 1000:.0f} ms)",
                  flush=True)
        times.sort()
        print(f"\ncommit pushed -> first instance upgraded, webhook and a 60 s poll, --interval {args.interval}, "
              f"{len(times)} pushes: "
              f"p50 {statistics.median(times) * 1000:.0f} ms, min {times[0] * 1000:.0f} ms, "
              f"max {times[-1] * 1000:.0f} ms (target 500 ms); the webhook's answer: p50 "
              f"{statistics.median(answered) * 1000:.0f} ms")
    finally:
        if run is not None:
            stop_process(run)
        stop_process(daemon)


if __name__ == "__main__":
    main()
