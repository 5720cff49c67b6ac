"""Records for the web view's tests and benchmark: a fleet from real fleet files, rollout states by hand, and the
real app served by uvicorn on a loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TypedDict, Unpack

import uvicorn
from starlette.types import ASGIApp

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
from tests.conftest import FAST_POLICY, free_port, plugin_yaml, settings_yaml, wait_for

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
TIERS = {"canary": 1, "staging": 2, "prod": 5}
GATED_POLICY = FAST_POLICY.replace("name: fast", "name: gated").replace(
    "{name: all, size: 100%, bake: 300ms}", "{name: all, size: 100%, bake: 300ms, approval: true}")


class StateExtras(TypedDict, total=False):
    """Fields of a RolloutState that `rollout` leaves at their defaults unless a test sets them."""

    paused_by: str
    pause_reason: str
    paused_at: datetime


def make_fleet(plugins: Mapping[str, str], tiers: Mapping[str, int] = TIERS, policy: str = "fast",
               namespaces: Sequence[str] = ()) -> Fleet:
    extra = f"  namespaces: [{', '.join(namespaces)}]\n" if namespaces else ""
    files = {"grayops.yaml": settings_yaml(tiers), "policies/fast.yaml": FAST_POLICY,
             "policies/gated.yaml": GATED_POLICY}
    files.update({f"plugins/{name}.yaml": plugin_yaml(name, version, policy, extra)
                  for name, version in plugins.items()})
    return load_fleet(files, builtin_policies(), adapters=full_registry().models)


def clusters(tiers: Mapping[str, int] = TIERS) -> list[str]:
    return [f"{tier}-{i}" for tier, count in tiers.items() for i in range(1, count + 1)]


def reading(value: float, verdict: Verdict = Verdict.SUCCESSFUL, seconds: float = 0.0, metric: str = "error_rate",
            message: str = "") -> Reading:
    return Reading(metric, verdict, value, T0 + timedelta(seconds=seconds), message or f"{metric} {value}")


def batch(index: int, name: str, phase: BatchPhase, instances: Sequence[str], *,
          metrics: Sequence[MetricTrack] = (), ended: bool | None = None, reason: str = "") -> BatchState:
    start = T0 + timedelta(seconds=10 * index)
    done = phase in (BatchPhase.PASSED, BatchPhase.FAILED) if ended is None else ended
    return BatchState(index, name, tuple(instances), phase, start, bake_started=start + timedelta(seconds=1),
                      ended=start + timedelta(seconds=5) if done else None, metrics=tuple(metrics), reason=reason)


def rollout(plugin: str = "billing", phase: Phase = Phase.PROGRESSING, *, steps: Mapping[str, tuple[str | None, Step]],
            batches: Sequence[BatchState] = (), target: str = "1.6.0", source: str | None = "1.5.0",
            reason: str = "", rollout_id: str = "a1b2c3d4e5", policy: str = "fast",
            **extra: Unpack[StateExtras]) -> RolloutState:
    finished = T0 + timedelta(minutes=5) if phase.terminal else None
    return RolloutState(
        plugin=plugin, rollout_id=rollout_id, target_version=target, desired_commit="c0ffee" + "0" * 34,
        policy=policy, phase=phase, reason=reason or f"{plugin} is {phase.value}", started=T0,
        updated=T0 + timedelta(seconds=30), from_version=source, requested_by="Alice Ops", finished=finished,
        batches=tuple(batches), instances={iid: InstanceState(step, version) for iid, (version, step) in steps.items()},
        **extra)


def ids(names: Sequence[str], namespace: str = "plugins") -> list[str]:
    return [f"{name}/{namespace}" for name in names]


def progressing(plugin: str = "billing", **extra: Unpack[StateExtras]) -> RolloutState:
    """Canary passed, wave-1 (staging-1..2, prod-1) baking, the rest pending: 8 instances, 3 batches planned."""
    canary, wave = ids(["canary-1"]), ids(["staging-1", "staging-2", "prod-1"])
    steps = {iid: ("1.6.0", Step.DONE) for iid in canary + wave}
    steps.update({iid: ("1.5.0", Step.PENDING) for iid in ids([f"prod-{i}" for i in range(2, 6)])})
    track = MetricTrack("error_rate", reading(0.01, seconds=12), readings=3, covered=2.0)
    return rollout(plugin, Phase.PROGRESSING, steps=steps, batches=[
        batch(0, "canary", BatchPhase.PASSED, canary, metrics=[MetricTrack("error_rate", reading(0.002), readings=2)]),
        batch(1, "wave-1", BatchPhase.BAKING, wave, metrics=[track])], **extra)


@contextmanager
def serving(app: ASGIApp) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           timeout_graceful_shutdown=1, lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 30, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
