"""The shell's side of the artifact gate (README "Supply chain"): what it answers without asking a registry."""

from __future__ import annotations

from dataclasses import replace

import pytest

from policies import builtin_policies
from reconciler.adapters.registry import default_registry
from reconciler.core.engine import decide
from reconciler.core.fleet import load_fleet
from reconciler.core.model import Phase
from reconciler.core.trust import ArtifactBlocked
from reconciler.shell.artifacts import ArtifactGate, gate_applies
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml
from tests.core.test_engine import T0, World, desired

FLEET = load_fleet({"grayops.yaml": settings_yaml({"prod": 1}, "trust: {artifacts: {required: true}}\n"),
                    "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": plugin_yaml("billing", "2.0.0")},
                   builtin_policies(), adapters=default_registry().models)


def test_a_plugin_without_an_image_is_blocked_when_artifacts_must_be_signed() -> None:
    fleet = load_fleet({"grayops.yaml": settings_yaml({"prod": 1}, "trust: {artifacts: {required: true}}\n"),
                        "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": plugin_yaml("billing", "2.0.0")},
                       builtin_policies(), adapters=default_registry().models)
    assert gate_applies(fleet, "billing")
    found = ArtifactGate(None).observe(fleet, replace(desired("2.0.0"), artifact_gate=True), None, T0)
    assert found == ArtifactBlocked("billing", "2.0.0", "artifact_untrusted",
                                    "the plugin names no image (spec.image) to verify")


@pytest.mark.parametrize(("phase", "version", "batches", "asks"), [
    (Phase.PENDING, "2.0.0", False, True),  # waiting for the gate
    (Phase.FAILED, "2.0.0", False, False),  # failed by preflight: nothing to ask until a new version
    (Phase.PAUSED, "2.0.0", False, False),
    (Phase.PROGRESSING, "2.0.0", True, False),  # started: its digest is pinned
    (Phase.SUCCEEDED, "3.0.0", True, True),  # a new version begins
    (Phase.ROLLED_BACK, "1.0.0", True, False),  # the set-back of a rollback
    (Phase.ROLLING_BACK, "1.0.0", True, False),
])
def test_the_registry_is_asked_only_when_the_engine_needs_the_answer(phase: Phase, version: str, batches: bool,
                                                                      asks: bool) -> None:
    state = decide(None, desired("2.0.0"), World().observe(), T0).state
    state = replace(state, phase=phase, from_version="1.0.0", batches=state.batches if batches else ())
    want = replace(desired(version), artifact_gate=True)
    found = ArtifactGate(None).observe(FLEET, want, state, T0)  # no image: answered at once, without a registry
    assert (found is not None) is asks
