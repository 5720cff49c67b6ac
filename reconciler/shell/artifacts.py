"""The artifact gate, gathered for the engine (README "Supply chain"): for a rollout that has not started its first
batch, the shell asks the registry (adapters/trust/gate.py) whether the version's image may be rolled out and as
which digest; the engine takes the answer as an observation and touches no instance until it passes.

A block is asked again after `RETRY_SECONDS` (a registry back up, a signature or report pushed later); an answer is
not asked again once the engine pinned its digest in the rollout. The registry client is rebuilt when grayops.yaml's
`registries:` change.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime

from reconciler.adapters.trust.gate import check_artifact
from reconciler.adapters.trust.keys import ArtifactKey
from reconciler.adapters.trust.oci import RegistryClient
from reconciler.core.effects import Desired
from reconciler.core.fleet import Fleet
from reconciler.core.model import RolloutState
from reconciler.core.spec import RegistrySettings
from reconciler.core.trust import ArtifactBlocked, ArtifactDecision
from reconciler.shell.trust import SupplyChain

RETRY_SECONDS = 5.0  # a blocked gate is asked again this often
REGISTRY_TIMEOUT = 10.0


def gate_applies(fleet: Fleet, plugin: str) -> bool:
    """A plugin's versions pass the gate when signed artifacts are required or its policy has a scan gate."""
    spec = fleet.plugins[plugin].spec
    return fleet.settings.trust.artifacts.required or fleet.policies[spec.policy].scan is not None


class ArtifactGate:
    def __init__(self, supply: SupplyChain | None) -> None:
        self._supply = supply
        self._client: tuple[tuple[RegistrySettings, ...], RegistryClient] | None = None
        self._asked: dict[tuple[str, str, str], tuple[float, ArtifactDecision]] = {}

    def observe(self, fleet: Fleet, want: Desired, state: RolloutState | None,
                now: datetime) -> ArtifactDecision | None:
        """The gate's answer for `want`'s version, when the engine needs one (None: it does not)."""
        if not want.artifact_gate or _pinned(state, want):
            return None
        image = fleet.plugins[want.plugin].spec.image
        if image is None:
            return ArtifactBlocked(want.plugin, want.version, "artifact_untrusted",
                                   "the plugin names no image (spec.image) to verify")
        key = (want.plugin, image, want.version)
        asked = self._asked.get(key)
        if asked is not None and time.monotonic() < asked[0]:
            return asked[1]
        decision = check_artifact(self._registry(fleet), self._keys(), image, want.version,
                                  signature_required=fleet.settings.trust.artifacts.required,
                                  scan=want.policy.scan, now=now)
        retry = RETRY_SECONDS if isinstance(decision, ArtifactBlocked) else float("inf")
        self._asked[key] = (time.monotonic() + retry, decision)
        return decision

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


def _pinned(state: RolloutState | None, want: Desired) -> bool:
    return state is not None and state.target_version == want.version and bool(state.artifact)
