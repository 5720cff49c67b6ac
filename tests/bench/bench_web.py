"""Benchmark of the web view at scale; prints figures (no pass/fail, no timing asserts in unit tests).

    python tests/bench/bench_web.py [--clusters 1000] [--plugins 10] [--rounds 10]

A fleet of clusters x plugins (one namespace each: 10,000 instances), every plugin with a rollout in flight or
finished, 240 readings per metric per batch in the view's history. Measured through the real app under uvicorn on
loopback, with a plain HTTP client:

1. reading the record: each status file (1,000 instances) through `load_status`;
2. each page rendered cold (a new revision of the record every round, so nothing is cached) and warm (cached);
3. the size of each page.

Target on a 2-core machine: the fleet page in under 1 s, cold.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import urllib.request
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import Fleet, load_fleet
from reconciler.core.model import (
    BatchPhase,
    BatchState,
    InstanceState,
    MetricTrack,
    Phase,
    Reading,
    RolloutState,
    Step,
    Verdict,
)
from reconciler.core.status import dump_status, load_status
from reconciler.web.app import create_app
from reconciler.web.record import MemoryRecordSource, ReadingLog
from tests.web.records import serving

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: waves}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 5m}
    - {name: wave-1, size: 10%, bake: 10m}
    - {name: wave-2, size: 50%, bake: 10m, approval: true}
    - {name: all, size: 100%}
  analysis:
    interval: 30s
    metrics:
      - {name: error_rate, max: 0.05}
      - {name: latency_p99_ms, max: 500}
"""
PHASES = [Phase.PROGRESSING, Phase.AWAITING_APPROVAL, Phase.PAUSED, Phase.SUCCEEDED, Phase.ROLLED_BACK,
          Phase.PROGRESSING, Phase.WAITING_WINDOW, Phase.FAILED, Phase.ROLLING_BACK, Phase.SUCCEEDED]


def tier_of(index: int, clusters: int) -> str:
    return "canary" if index < max(1, clusters // 100) else "staging" if index < max(2, clusters // 10) else "prod"


def fleet(clusters: int, plugins: int) -> Fleet:
    lines = [f"  - {{name: c{i:04d}, labels: {{tier: {tier_of(i, clusters)}}}}}" for i in range(clusters)]
    files = {"grayops.yaml": "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n" + "\n".join(lines) +
             "\nmetrics: {provider: sim}\n", "policies/waves.yaml": POLICY}
    for p in range(plugins):
        files[f"plugins/plugin-{p}.yaml"] = ("apiVersion: grayops.dev/v1\nkind: Plugin\n"
                                             f"metadata: {{name: plugin-{p}}}\n"
                                             f"spec:\n  version: \"2.{p}.0\"\n  policy: waves\n")
    return load_fleet(files, builtin_policies(), adapters=full_registry().models)


def state(plugin: int, clusters: int) -> RolloutState:
    """A rollout of 1,000 instances: canary and wave-1 passed, wave-2 in flight (or the phase of its row)."""
    phase = PHASES[plugin % len(PHASES)]
    ids = [f"c{i:04d}/plugins" for i in range(clusters)]
    cut = [1, max(2, clusters // 10), clusters // 2, clusters]
    names = ["canary", "wave-1", "wave-2", "all"]
    done = cut[2] if phase is not Phase.SUCCEEDED else clusters
    instances = {iid: InstanceState(Step.DONE if n < done else Step.PENDING, f"2.{plugin}.0" if n < done else "1.0.0")
                 for n, iid in enumerate(ids)}
    batches = []
    for index in range(4 if phase is Phase.SUCCEEDED else 3):
        start = T0 + timedelta(minutes=20 * index)
        last = index == 2 and phase is not Phase.SUCCEEDED
        tracks = tuple(MetricTrack(name, Reading(name, Verdict.SUCCESSFUL, value, start + timedelta(minutes=10), "ok"),
                                   readings=20, covered=600.0)
                       for name, value in (("error_rate", 0.004), ("latency_p99_ms", 180.0)))
        batches.append(BatchState(index, names[index], tuple(ids[(cut[index - 1] if index else 0):cut[index]]),
                                  BatchPhase.BAKING if last else BatchPhase.PASSED, start,
                                  bake_started=start + timedelta(minutes=1),
                                  ended=None if last else start + timedelta(minutes=11), metrics=tracks))
    return RolloutState(
        plugin=f"plugin-{plugin}", rollout_id=f"{plugin:010d}", target_version=f"2.{plugin}.0",
        desired_commit="c0ffee" + "0" * 34, policy="waves", phase=phase, reason=f"plugin-{plugin}: {phase.value}",
        started=T0, updated=T0 + timedelta(hours=1), from_version="1.0.0", requested_by="Alice Ops",
        finished=T0 + timedelta(hours=2) if phase.terminal else None, batches=tuple(batches), instances=instances,
        waiting_for="plugin-0 2.0.0 (batch wave-2 awaits approval)" if plugin == 5 else None)


def read_again(track: MetricTrack, step: int, started: datetime) -> MetricTrack:
    """The track with its `step`-th reading of the bake that `started`."""
    assert track.last is not None  # every track of `state` has a reading
    value = (track.last.value or 0) * (1 + step % 7 / 10)
    return replace(track, last=Reading(track.name, Verdict.SUCCESSFUL, value, started + timedelta(seconds=30 * step),
                                       "ok"))


def history(states: list[RolloutState], points: int) -> ReadingLog:
    """`points` readings per metric per batch, as a running view would have seen them."""
    log = ReadingLog(per_series=points)
    for st in states:
        for step in range(points):
            batches = tuple(replace(b, metrics=tuple(read_again(m, step, b.started) for m in b.metrics))
                            for b in st.batches)
            log.observe(replace(st, batches=batches))
    return log


def timed_get(url: str) -> tuple[float, int]:
    began = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = response.read()
    return time.perf_counter() - began, len(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--plugins", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    the_fleet = fleet(args.clusters, args.plugins)
    states = [state(p, args.clusters) for p in range(args.plugins)]
    texts = {st.plugin: dump_status(st) for st in states}
    began = time.perf_counter()
    for plugin, text in texts.items():
        load_status(text, f"status/{plugin}.yaml")
    read = time.perf_counter() - began
    print(f"fleet: {args.clusters} clusters x {args.plugins} plugins = {args.clusters * args.plugins} instances")
    print(f"reading the record: {args.plugins} status files of {args.clusters} instances "
          f"({sum(map(len, texts.values())) / 1e6:.1f} MB) through load_status: {read * 1000:.0f} ms")

    source = MemoryRecordSource(source="benchmark", readings=history(states, 240))
    source.publish(fleet=the_fleet, states={st.plugin: st for st in states})
    pages = ["/", "/instances", "/instances?tier=prod", "/rollouts/plugin-0", "/clusters/c0500", "/history/plugin-3"]
    with serving(create_app(source)) as base:
        timed_get(base + "/")  # the first request imports and compiles templates
        print(f"\n{'page':<24} {'cold p50':>9} {'cold max':>9} {'warm p50':>9} {'size':>9}")
        for page in pages:
            cold, warm = [], []
            size = 0
            for round_ in range(args.rounds):
                moved = replace(states[0], reason=f"round {round_} of {page}")  # a new revision: nothing cached
                source.publish(states={**source.record().states, moved.plugin: moved})
                seconds, size = timed_get(base + page)
                cold.append(seconds)
                warm.append(timed_get(base + page)[0])
            print(f"{page:<24} {statistics.median(cold) * 1000:>7.0f}ms {max(cold) * 1000:>7.0f}ms "
                  f"{statistics.median(warm) * 1000:>7.1f}ms {size / 1024:>7.0f}KB")
    print("\ntarget: the fleet page (/) in under 1 s cold, for 1,000 clusters x 10 plugins")


if __name__ == "__main__":
    main()
