"""What a refused revision may still do (README "Pause and rollback at an invalid HEAD"), by tables."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.brakes import with_brakes
from reconciler.core.fleet import load_fleet
from reconciler.core.model import Phase, RolloutState
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml

GOOD = {"grayops.yaml": settings_yaml({"prod": 2}), "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.6.0"), "plugins/auth.yaml": plugin_yaml("auth", "1.0.0")}
AT = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ROLLOUT = RolloutState("billing", "r-1", "1.6.0", "abc1234", "fast", Phase.PROGRESSING, "", AT, AT,
                       from_version="1.5.0")

BRAKES = {
    "paused in its own valid file": (plugin_yaml("billing", "1.6.0", extra="  paused: true\n"),
                                     ("1.6.0", True), ["plugins/billing.yaml pauses billing"]),
    "set back to fromVersion": (plugin_yaml("billing", "1.5.0"), ("1.5.0", False),
                                ["plugins/billing.yaml rolls billing back to 1.5.0"]),
    "both at once": (plugin_yaml("billing", "1.5.0", extra="  paused: true\n"), ("1.5.0", True),
                     ["plugins/billing.yaml pauses billing", "plugins/billing.yaml rolls billing back to 1.5.0"]),
    "a new version is no brake": (plugin_yaml("billing", "1.7.0"), ("1.6.0", False), []),
    "the pause of a file that is itself invalid": (
        plugin_yaml("billing", "1.6.0", extra="  paused: true\n  colour: red\n"), ("1.6.0", False), []),
    "a pause with a new version: only the pause": (plugin_yaml("billing", "1.7.0", extra="  paused: true\n"),
                                                   ("1.6.0", True), ["plugins/billing.yaml pauses billing"]),
    "a file named after another plugin": (plugin_yaml("payments", "1.6.0", extra="  paused: true\n"),
                                          ("1.6.0", False), []),
    "not YAML": ("spec: [\n", ("1.6.0", False), []),
}


@pytest.mark.parametrize(("text", "expected", "taken"), BRAKES.values(), ids=BRAKES.keys())
def test_a_refused_revision_pauses_or_rolls_back_a_plugin_by_its_own_file_alone(
        text: str, expected: tuple[str, bool], taken: list[str]) -> None:
    good = load_fleet(GOOD, builtin_policies(), adapters=full_registry().models)
    refused = {**GOOD, "plugins/billing.yaml": text, "plugins/auth.yaml": "nonsense: [\n"}
    fleet, said = with_brakes(good, refused, {"billing": ROLLOUT})
    spec = fleet.plugins["billing"].spec
    assert (spec.version, spec.paused) == expected
    assert list(said) == taken
    assert fleet.plugins["auth"] == good.plugins["auth"] and fleet.settings == good.settings


def test_no_rollback_without_a_rollout_to_set_back() -> None:
    good = load_fleet(GOOD, builtin_policies(), adapters=full_registry().models)
    fleet, said = with_brakes(good, {**GOOD, "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}, {})
    assert fleet.plugins["billing"].spec.version == "1.6.0" and said == ()
