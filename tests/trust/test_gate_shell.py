"""The shell's side of the artifact gate (README "Supply chain"): what it answers without asking a registry."""

from __future__ import annotations

from dataclasses import replace

from policies import builtin_policies
from reconciler.adapters.registry import default_registry
from reconciler.core.fleet import load_fleet
from reconciler.core.trust import ArtifactBlocked
from reconciler.shell.artifacts import ArtifactGate, gate_applies
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml
from tests.core.test_engine import T0, desired


def test_a_plugin_without_an_image_is_blocked_when_artifacts_must_be_signed() -> None:
    fleet = load_fleet({"grayops.yaml": settings_yaml({"prod": 1}, "trust: {artifacts: {required: true}}\n"),
                        "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": plugin_yaml("billing", "2.0.0")},
                       builtin_policies(), adapters=default_registry().models)
    assert gate_applies(fleet, "billing")
    found = ArtifactGate(None).observe(fleet, replace(desired("2.0.0"), artifact_gate=True), None, T0)
    assert found == ArtifactBlocked("billing", "2.0.0", "artifact_untrusted",
                                    "the plugin names no image (spec.image) to verify")
