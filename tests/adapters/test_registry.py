"""The adapter registry: an adapter declared outside grayops' own modules (its tag, settings model and builder) is
validated with the same one-line errors, built into the runtime, and described by the JSON Schema; nothing in the
core knows it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import pytest

from bot.factory import SLACK
from policies import builtin_policies, schema_text
from reconciler.adapters.ports import Context, DriverAdapter, NotifierAdapter
from reconciler.adapters.registry import Registry, default_registry
from reconciler.adapters.unavailable import UnavailableDriver
from reconciler.cli import full_registry
from reconciler.core.effects import CheckResult, CheckStage, Event, InstanceObservation, SetVersion
from reconciler.core.fleet import Fleet, FleetInvalid, load_fleet
from reconciler.core.model import Phase, Severity
from reconciler.core.plan import InstanceRef
from reconciler.core.schema import fleet_schema, fleet_schema_text
from reconciler.core.spec import Check, ClusterSpec, NotifierSettings, Plugin
from tests.conftest import FakeClock, grayops

HEAD = "apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n"


# --- two adapters from outside: a notifier and a cluster driver, one declaration each ---------------------------


class EchoSettings(NotifierSettings):
    type: Literal["echo"]
    prefix: str


class Echo:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.heard: list[str] = []

    def notify(self, event: Event) -> None:
        self.heard.append(f"{self.prefix}{event.message}")


ECHO = NotifierAdapter("echo", EchoSettings, lambda settings, context: Echo(settings.prefix))


class FixedCluster(ClusterSpec):
    driver: Literal["fixed"]
    version: str


class FixedDriver:
    """Every instance of its clusters runs the version grayops.yaml gives its cluster, ready."""

    def __init__(self, clusters: Sequence[FixedCluster]) -> None:
        self.versions = {c.name: c.version for c in clusters}

    def observe(self, plugin: Plugin, instances: Sequence[InstanceRef]) -> Mapping[str, InstanceObservation]:
        return {ref.id: InstanceObservation(self.versions[ref.cluster], True) for ref in instances}

    def apply(self, plugin: Plugin, changes: Sequence[SetVersion]) -> Mapping[str, str]:
        return {}

    def check(self, plugin: Plugin, instance: InstanceRef, stage: CheckStage, version: str,
              checks: Sequence[Check]) -> CheckResult:
        return CheckResult(instance.id, stage, version, True, "")


def _fixed(clusters: Sequence[FixedCluster], context: Context) -> FixedDriver:
    return FixedDriver(clusters)


FIXED = DriverAdapter("fixed", FixedCluster, _fixed)


def load(settings: str, registry: Registry) -> Fleet:
    return load_fleet({"grayops.yaml": settings}, builtin_policies(), adapters=registry.models)


def errors_of(settings: str, registry: Registry) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load(settings, registry)
    return [str(e) for e in caught.value.errors]


def event(message: str) -> Event:
    return Event("billing", "r1", "1.6.0", "metric_threshold", Severity.CRITICAL, message, Phase.PROGRESSING,
                 FakeClock().now())


def test_a_registered_notifier_is_validated_built_and_notified(tmp_path: Path) -> None:
    registry = default_registry().with_(ECHO)
    fleet = load(HEAD + "  - {name: a}\nnotifiers:\n  - {type: log}\n  - {type: echo, prefix: '> '}\n", registry)
    assert isinstance(fleet.settings.notifiers[1], EchoSettings)
    runtime = registry.build_runtime(fleet.settings, tmp_path, FakeClock(), env={})
    runtime.notifier.notify(event("error rate 0.2 over 0.05"))
    [echo] = [n for n in runtime.notifiers if isinstance(n, Echo)]
    assert echo.heard == ["> error rate 0.2 over 0.05"]


@pytest.mark.parametrize(("entry", "expected"), [
    pytest.param("  - {type: echo, prefix: '>', prefx: x}\n", "grayops.yaml:6: notifiers[0].prefx: unknown field; "
                 "did you mean 'prefix'?", id="typo"),
    pytest.param("  - type: echo\n", "grayops.yaml:6: notifiers[0].prefix: required field is missing",
                 id="missing-field"),
    pytest.param("  - {type: echo, prefix: [a]}\n", "grayops.yaml:6: notifiers[0].prefix: Input should be a valid "
                 "string", id="wrong-type"),
    pytest.param("  - {type: echoo, prefix: x}\n", "grayops.yaml:6: notifiers[0].type: Input should be 'log', "
                 "'webhook', 'pagerduty' or 'echo'", id="unknown-tag-names-the-known-ones"),
    pytest.param("  - {prefix: x}\n", "grayops.yaml:6: notifiers[0].type: required field is missing",
                 id="no-tag"),
])
def test_a_registered_adapters_settings_errors_are_one_line_each(entry: str, expected: str) -> None:
    assert errors_of(HEAD + "  - {name: a}\nnotifiers:\n" + entry, default_registry().with_(ECHO)) == [expected]


def test_an_adapter_that_is_not_registered_is_an_unknown_tag() -> None:
    assert errors_of(HEAD + "  - {name: a}\nnotifiers: [{type: echo, prefix: x}]\n", default_registry()) == [
        "grayops.yaml:5: notifiers[0].type: Input should be 'log', 'webhook' or 'pagerduty'"]


def test_a_registered_driver_gets_its_clusters_and_others_keep_theirs(tmp_path: Path) -> None:
    registry = default_registry().with_(FIXED)
    fleet = load(HEAD + "  - {name: a, driver: fixed, version: '1.4.0'}\n  - {name: b}\n", registry)
    assert errors_of(HEAD + "  - {name: a, driver: fixed, version: '1.4.0', verison: '1.4.1'}\n", registry) == [
        "grayops.yaml:4: clusters[0].verison: unknown field; did you mean 'version'?"]
    runtime = registry.build_runtime(fleet.settings, tmp_path, FakeClock(), env={})
    assert runtime.cluster_driver == {"a": "fixed", "b": "sim"}
    assert isinstance(runtime.drivers["fixed"], FixedDriver) and runtime.drivers["sim"] is runtime.sim
    plugin = Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": "billing"},
                                    "spec": {"version": "1.5.0"}})
    ref = InstanceRef("a", "plugins")
    assert runtime.drivers["fixed"].observe(plugin, [ref])[ref.id].version == "1.4.0"


def test_settings_validated_with_more_adapters_than_the_runtime_knows_leave_those_unavailable(tmp_path: Path) -> None:
    fleet = load(HEAD + "  - {name: a, driver: fixed, version: '1'}\nnotifiers: [{type: echo, prefix: x}]\n",
                 default_registry().with_(FIXED, ECHO))
    runtime = default_registry().build_runtime(fleet.settings, tmp_path, FakeClock(), env={})
    assert isinstance(runtime.drivers["fixed"], UnavailableDriver)
    assert "no fixed cluster driver" in runtime.drivers["fixed"].reason
    assert not any(isinstance(n, Echo) for n in runtime.notifiers)


def test_a_tag_is_registered_once() -> None:
    with pytest.raises(ValueError, match="notifier type 'echo' is registered twice"):
        default_registry().with_(ECHO, ECHO)


def test_an_adapters_model_carries_its_own_tag() -> None:
    class Mismatched(NotifierSettings):
        type: Literal["other"]

    with pytest.raises(TypeError, match=r"Mismatched.*type: Literal\['echo'\]"):
        default_registry().with_(NotifierAdapter("echo", Mismatched, lambda settings, context: None))


def test_the_schema_describes_every_registered_adapter() -> None:
    schema = fleet_schema(default_registry().with_(ECHO, FIXED).models)
    assert schema["$defs"]["EchoSettings"]["properties"]["prefix"] == {"title": "Prefix", "type": "string"}
    assert "version" in schema["$defs"]["FixedCluster"]["required"]
    assert "EchoSettings" not in json.dumps(fleet_schema(default_registry().models))


def test_the_shipped_schema_is_the_full_registrys_with_slack() -> None:
    assert full_registry().models["notifiers"]["slack"] is SLACK.settings
    assert schema_text() == fleet_schema_text(full_registry().models)


@pytest.mark.parametrize(("settings", "valid"), [
    pytest.param("  - {name: a, labels: {tier: prod}}\n  - {name: b, driver: kubernetes, kubeContext: b}\n"
                 "metrics: {provider: prometheus, url: 'http://p', auth: {bearer: {env: T}}}\n"
                 "notifiers: [{type: log}, {type: slack, channel: '#r'}, {type: webhook, url: 'https://h'}]\n",
                 True, id="every-adapter"),
    pytest.param("  - {name: a}\n", True, id="defaults"),
    pytest.param("  - {name: b, driver: kubernetes, kubeContxt: b}\n", False, id="kubernetes-typo"),
    pytest.param("  - {name: a, driver: nomad}\n", False, id="unknown-driver"),
    pytest.param("  - {name: a}\nmetrics: {provider: prometheus, url: 'http://p', timout: 1s}\n", False,
                 id="prometheus-typo"),
    pytest.param("  - {name: a}\nnotifiers: [{type: email}]\n", False, id="unknown-notifier"),
])
def test_the_shipped_schema_judges_grayops_yaml_as_grayops_does(settings: str, valid: bool) -> None:
    """What editors check with (README "The fleet repository"): the same documents pass and fail."""
    import jsonschema
    import yaml

    errors = list(jsonschema.Draft202012Validator(json.loads(schema_text())).iter_errors(yaml.safe_load(
        HEAD + settings)))
    assert (not errors) == valid, [e.message for e in errors]
    try:
        load(HEAD + settings, full_registry())
    except FleetInvalid:
        assert not valid
    else:
        assert valid


def test_validate_knows_the_slack_notifier(tmp_path: Path) -> None:
    (tmp_path / "grayops.yaml").write_text(HEAD + "  - {name: a}\nnotifiers: [{type: slack, channel: '#r'}]\n")
    done = grayops("validate", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (tmp_path / "grayops.yaml").write_text(HEAD + "  - {name: a}\nnotifiers: [{type: slack, channel: '#r', "
                                           "plugin: {}}]\n")
    done = grayops("validate", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == "grayops.yaml:5: notifiers[0].plugin: unknown field; did you mean 'plugins'?"
