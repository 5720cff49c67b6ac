"""Validation of the fleet repository: every error names its file, line and field; the revision is refused whole."""

from __future__ import annotations

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import FleetInvalid, Parsed, load_fleet
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml

ADAPTERS = full_registry().models

SETTINGS = settings_yaml({"canary": 1, "prod": 2})


def fleet(**files: str) -> dict[str, str]:
    base = {"grayops.yaml": SETTINGS, "policies/fast.yaml": FAST_POLICY,
            "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}
    base.update({path.replace("__", "/").replace("_yaml", ".yaml"): text for path, text in files.items()})
    return base


def errors_of(files: dict[str, str]) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet(files, builtin_policies(), adapters=ADAPTERS)
    return [str(e) for e in caught.value.errors]


def test_a_valid_fleet_loads_with_builtins_and_its_own_policies() -> None:
    loaded = load_fleet(fleet(), builtin_policies(), adapters=ADAPTERS)
    assert set(loaded.plugins) == {"billing"}
    assert {"fast", "canary-waves", "rolling", "all-at-once"} <= set(loaded.policies)
    assert loaded.plugins["billing"].spec.namespaces == ["plugins"]


@pytest.mark.parametrize(
    ("path", "text", "expected"),
    [
        pytest.param("plugins/billing.yaml", plugin_yaml("billing", "1.5.0", extra="  polcy: x\n"),
                     "plugins/billing.yaml:7: spec.polcy: unknown field; did you mean 'policy'?", id="unknown-field"),
        pytest.param("plugins/billing.yaml",
                     "apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\nspec:\n  version: 1.5\n",
                     "plugins/billing.yaml:5: spec.version: version 1.5 must be quoted", id="version-as-number"),
        pytest.param("plugins/billing.yaml", plugin_yaml("billing", "1.5.0", policy="nope"),
                     "plugins/billing.yaml:6: spec.policy: no policy named 'nope'", id="missing-policy"),
        pytest.param("plugins/billing.yaml", "apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing\n",
                     "plugins/billing.yaml:4: yaml:", id="malformed-yaml"),
        pytest.param("plugins/billing.yaml", "apiVersion: grayops.dev/v1\nkind: Plugin\nkind: Plugin\n",
                     "plugins/billing.yaml:3: yaml: duplicate key 'kind'", id="duplicate-key"),
        pytest.param("plugins/billing.yaml", plugin_yaml("other", "1.0"),
                     "plugins/billing.yaml:1: metadata.name: 'other' must match the file name 'billing'",
                     id="name-mismatch"),
        pytest.param("plugins/billing.yaml", plugin_yaml("billing", "1.0").replace("Plugin", "Policy"),
                     "plugins/billing.yaml:2: kind: expected 'Plugin' in this file, found 'Policy'", id="wrong-kind"),
        pytest.param("policies/fast.yaml", FAST_POLICY.replace("size: 50%", "size: 100%"),
                     "policies/fast.yaml:4: spec: batch 'all': sizes are cumulative and must grow",
                     id="sizes-not-growing"),
        pytest.param("policies/fast.yaml", FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}",
                                                               "{name: all, size: 90%}"),
                     "policies/fast.yaml:4: spec: the last batch ('all') must have size \"100%\"", id="not-to-100"),
        pytest.param("policies/fast.yaml", FAST_POLICY.replace("size: 50%", "size: lots"),
                     "policies/fast.yaml:8: spec.batches[1].size: 'lots' is not a batch size", id="bad-size"),
        pytest.param("policies/fast.yaml", FAST_POLICY.replace("bake: 300ms}", "bake: soon}", 1),
                     "policies/fast.yaml:7: spec.batches[0].bake: 'soon' is not a duration", id="bad-duration"),
        pytest.param("policies/fast.yaml", FAST_POLICY.replace("max: 0.05}", "maxx: 0.05}"),
                     "policies/fast.yaml:15: spec.analysis.metrics[0].maxx: unknown field; did you mean 'max'?",
                     id="metric-typo"),
        pytest.param("policies/fast.yaml", FAST_POLICY + "  verify:\n    - {type: exec, command: [redis-cli, ping], "
                                                         "expectt: PONG}\n",
                     "policies/fast.yaml:18: spec.verify[0].expectt: unknown field; did you mean 'expect'?",
                     id="check-typo-inside-union"),
        pytest.param("grayops.yaml", SETTINGS.replace("driver: sim", "driver: nomad", 1),
                     "grayops.yaml:4: clusters[0].driver: Input should be 'sim' or 'kubernetes'", id="bad-driver"),
        pytest.param("grayops.yaml", SETTINGS + "signing: {}\n",
                     "grayops.yaml:8: signing: unknown field", id="settings-unknown-field"),
    ],
)
def test_each_error_names_file_line_and_field(path: str, text: str, expected: str) -> None:
    found = errors_of({**fleet(), path: text})
    assert any(e.startswith(expected) for e in found), found


def test_a_missing_settings_file_is_an_error() -> None:
    files = fleet()
    del files["grayops.yaml"]
    assert errors_of(files) == ["grayops.yaml:1: file: missing: every fleet repository needs grayops.yaml"]


def test_a_dependency_cycle_is_reported_once_with_its_path() -> None:
    files = fleet(**{
        "plugins/a.yaml": plugin_yaml("a", "1", extra="  dependsOn: [b]\n"),
        "plugins/b.yaml": plugin_yaml("b", "1", extra="  dependsOn: [c]\n"),
        "plugins/c.yaml": plugin_yaml("c", "1", extra="  dependsOn: [a]\n"),
    })
    assert errors_of(files) == ["plugins/a.yaml:7: spec.dependsOn: dependency cycle: a -> b -> c -> a"]


def test_unknown_dependency_and_self_dependency() -> None:
    files = fleet(**{"plugins/a.yaml": plugin_yaml("a", "1", extra="  dependsOn: [a, ghost]\n")})
    assert errors_of(files) == [
        "plugins/a.yaml:7: spec.dependsOn[0]: a plugin cannot depend on itself",
        "plugins/a.yaml:7: spec.dependsOn[1]: no plugin named 'ghost'",
    ]


def test_every_error_of_every_file_is_reported_at_once() -> None:
    files = fleet(**{"plugins/a.yaml": plugin_yaml("a", "1", policy="nope"),
                     "plugins/b.yaml": plugin_yaml("b", "1", extra="  colour: red\n")})
    found = errors_of(files)
    assert [e.split(":")[0] for e in found] == ["plugins/a.yaml", "plugins/b.yaml"]


def test_status_and_reports_are_not_desired_state() -> None:
    files = fleet(**{"status/billing.yaml": "not: [valid", "reports/billing/x.md": "# report"})
    assert set(load_fleet(files, builtin_policies(), adapters=ADAPTERS).plugins) == {"billing"}


def test_a_repository_policy_shadows_a_builtin_of_the_same_name() -> None:
    own = FAST_POLICY.replace("name: fast", "name: canary-waves")
    loaded = load_fleet(fleet(**{"policies/canary-waves.yaml": own}), builtin_policies(), adapters=ADAPTERS)
    assert [b.name for b in loaded.policies["canary-waves"].batches] == ["canary", "wave-1", "all"]


def test_builtin_policies_are_valid_and_the_default_one_alerts_above_5_percent_errors() -> None:
    loaded = load_fleet(fleet(), builtin_policies(), adapters=ADAPTERS)
    default = loaded.policies["canary-waves"]
    assert [(m.name, m.max) for m in default.analysis.metrics] == [("error_rate", 0.05), ("latency_p99_ms", 500)]
    assert default.batch_timeout == 1800 and default.analysis.no_data_timeout == 300
    assert [b.max_parallel for b in (loaded.policies["rolling"],)] == [1]


def test_a_revision_loaded_after_another_parses_only_the_files_that_changed_and_loads_the_same() -> None:
    """README "Sizing": a pause in one of 10,000 plugin files parses that file again, not the others."""
    parsed = Parsed()
    audit = plugin_yaml("audit", "2.0.0")
    first = load_fleet(fleet(plugins__audit_yaml=audit), builtin_policies(), adapters=ADAPTERS, parsed=parsed)
    paused = fleet(plugins__audit_yaml=audit, plugins__billing_yaml=plugin_yaml("billing", "1.5.0",
                                                                                extra="  paused: true\n"))
    second = load_fleet(paused, builtin_policies(), adapters=ADAPTERS, parsed=parsed)
    assert second == load_fleet(paused, builtin_policies(), adapters=ADAPTERS)
    assert second.plugins["audit"] is first.plugins["audit"]  # the same file: not parsed again
    assert second.plugins["billing"].spec.paused and not first.plugins["billing"].spec.paused
    broken = fleet(plugins__audit_yaml=audit, plugins__billing_yaml=plugin_yaml("billing", "1.5.0", policy="nope"))
    for _ in range(2):  # an error found in a file parsed before is reported the same
        with pytest.raises(FleetInvalid) as caught:
            load_fleet(broken, builtin_policies(), adapters=ADAPTERS, parsed=parsed)
        assert [str(e) for e in caught.value.errors] == errors_of(broken)
    unknown = fleet(plugins__billing_yaml=plugin_yaml("billing", "1.5.0", extra="  polcy: x\n"))
    for _ in range(2):
        with pytest.raises(FleetInvalid) as caught:
            load_fleet(unknown, builtin_policies(), adapters=ADAPTERS, parsed=parsed)
        assert [str(e) for e in caught.value.errors] == errors_of(unknown)
