"""The artifact gate, gathered for the engine (README "Supply chain"): for a rollout that has not started its first
batch, the shell asks the registry (adapters/trust/gate.py) whether the version's image exists (preflight, for every
plugin with an `image`), may be rolled out and as which digest; the engine takes the answer as an observation and
touches no instance until it passes.

The registry is asked in a worker thread, never in the tick: a registry that hangs cannot delay a pause or a
rollback. A tick takes the last answer there is (none yet: the rollout waits for the gate), and a check with no
answer after `CHECK_DEADLINE` is reported `registry_unreachable`. A block is asked again after `RETRY_SECONDS` (a
registry back up, a signature or report pushed later); an answer is not asked again once the engine pinned its digest
in the rollout, and answers are forgotten while the rollout does not need one (a failed one), so a later need asks
afresh. Answers are kept per rollout start (the commit that asked for the version): a later rollout of the same
version never takes an earlier one's answer, as its tag may name other content by then, or a key be removed. The
registry client is rebuilt when grayops.yaml's `registries:` change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from reconciler.adapters.trust.gate import check_artifact
from reconciler.adapters.trust.keys import ArtifactKey
from reconciler.adapters.trust.oci import RegistryClient
from reconciler.core.effects import Desired
from reconciler.core.fleet import Fleet
from reconciler.core.model import Phase, RolloutState
from reconciler.core.spec import RegistrySettings
from reconciler.core.trust import ArtifactBlocked, ArtifactDecision
from reconciler.shell.trust import SupplyChain

log = logging.getLogger("grayops")
RETRY_SECONDS = 5.0  # a blocked gate is asked again this often
REGISTRY_TIMEOUT = 10.0  # per request: connect, and between bytes of an answer
CHECK_DEADLINE = 60.0  # a whole check (resolve, signature, report) with no answer by then counts as unreachable


def gate_applies(fleet: Fleet, plugin: str) -> bool:
    """A plugin's versions pass the gate when it names an image (preflight), signed artifacts are required, or its
    policy has a scan gate."""
    spec = fleet.plugins[plugin].spec
    return (spec.image is not None or fleet.settings.trust.artifacts.required
            or fleet.policies[spec.policy].scan is not None)


Key = tuple[str, str, str, str]  # plugin, image, version, the commit that asked for the version


@dataclass
class _Asked:
    decision: ArtifactDecision | None = None  # the last answer; None: none yet
    again: float = 0.0  # when (monotonic) to ask again
    started: float | None = None  # a check in flight since then (monotonic)
    fresh: bool = False  # an answer the engine has not been given yet


class ArtifactGate:
    def __init__(self, supply: SupplyChain | None) -> None:
        self._supply = supply
        self._client: tuple[tuple[RegistrySettings, ...], RegistryClient] | None = None
        self._asked: dict[Key, _Asked] = {}
        self._lock = threading.Lock()

    def observe(self, fleet: Fleet, want: Desired, state: RolloutState | None,
                now: datetime) -> ArtifactDecision | None:
        """The gate's last answer for `want`'s version, when the engine needs one (None: it does not, or none came
        yet); starts a check in the background when one is due."""
        if not want.artifact_gate or not _needs_answer(state, want):
            self._forget(want.plugin)
            return None
        image = fleet.plugins[want.plugin].spec.image
        if image is None:
            return ArtifactBlocked(want.plugin, want.version, "artifact_untrusted",
                                   "the plugin names no image (spec.image) to verify")
        key = (want.plugin, image, want.version, want.desired_commit)
        clock = time.monotonic()
        with self._lock:
            self._drop(want.plugin, keep=key)  # the answers for the plugin's earlier rollout starts
            asked = self._asked.setdefault(key, _Asked())
            late = asked.started is not None and clock - asked.started > CHECK_DEADLINE
            if late:
                asked.decision = ArtifactBlocked(image, want.version, "registry_unreachable",
                                                 f"{image}:{want.version}: the registry has not answered within "
                                                 f"{CHECK_DEADLINE:g}s")
                asked.again, asked.started = clock + RETRY_SECONDS, None  # the stuck check's answer is dropped
            if asked.started is None and clock >= asked.again:
                asked.started = clock
                self._start(key, asked.started, self._check(fleet, want, image, now))
            asked.fresh = False
            return asked.decision

    @property
    def pending(self) -> bool:
        """A check is in flight (and not past its deadline), or its answer has not reached the engine yet: it may
        move a rollout."""
        clock = time.monotonic()
        with self._lock:
            return any(a.fresh or (a.started is not None and clock - a.started <= CHECK_DEADLINE)
                       for a in self._asked.values())

    def _check(self, fleet: Fleet, want: Desired, image: str, now: datetime) -> Callable[[], ArtifactDecision]:
        client, keys = self._registry(fleet), self._keys()
        signature_required, scan = fleet.settings.trust.artifacts.required, want.policy.scan
        return lambda: check_artifact(client, keys, image, want.version, signature_required=signature_required,
                                      scan=scan, now=now)

    def _start(self, key: Key, started: float, check: Callable[[], ArtifactDecision]) -> None:
        def work() -> None:
            try:
                decision = check()
            except Exception as err:  # check_artifact never raises; a bug must not kill the gate silently
                log.exception("the artifact gate failed for %s:%s", key[1], key[2])
                decision = ArtifactBlocked(key[1], key[2], "registry_unreachable", f"the check failed: {err}")
            with self._lock:
                asked = self._asked.get(key)
                if asked is None or asked.started != started:
                    return  # forgotten, or past its deadline and asked again meanwhile
                retry = RETRY_SECONDS if isinstance(decision, ArtifactBlocked) else float("inf")
                asked.decision, asked.again, asked.started = decision, time.monotonic() + retry, None
                asked.fresh = True

        threading.Thread(target=work, name=f"artifact-gate {key[0]}", daemon=True).start()

    def _forget(self, plugin: str) -> None:
        with self._lock:
            self._drop(plugin)

    def _drop(self, plugin: str, keep: Key | None = None) -> None:
        """Forget the plugin's answers but `keep`'s (checks in flight finish first); called with the lock held."""
        for key in [k for k, a in self._asked.items() if k[0] == plugin and k != keep and a.started is None]:
            del self._asked[key]

    def _keys(self) -> Sequence[ArtifactKey]:
        return self._supply.roots.artifact_keys if self._supply else ()

    def _registry(self, fleet: Fleet) -> RegistryClient:
        settings = tuple(fleet.settings.registries)
        if self._client is None or self._client[0] != settings:
            if self._client is not None:
                self._client[1].close()
            self._client = (settings, RegistryClient(settings, timeout=REGISTRY_TIMEOUT))
        return self._client[1]

    def close(self) -> None:
        if self._client is not None:
            self._client[1].close()


def _needs_answer(state: RolloutState | None, want: Desired) -> bool:
    """The engine will look at the gate's answer: a rollout of `want.version` begins, or one that has not started a
    batch (nor pinned a digest) goes on; not a failed, paused or finished one."""
    if state is None:
        return True
    if state.target_version != want.version:  # a new rollout, unless this set-back is a rollback's (not gated)
        return not (want.version == state.from_version and state.phase in (Phase.ROLLING_BACK, Phase.ROLLED_BACK))
    return not state.batches and not state.artifact and not state.phase.settled
