"""`dashboard.url` in grayops.yaml: where the web view is served, for the links from Slack (README "Web view")."""

from __future__ import annotations

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import FleetInvalid, load_fleet
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml


def load(extra: str) -> list[str] | str | None:
    files = {"grayops.yaml": settings_yaml({"prod": 1}, extra), "policies/fast.yaml": FAST_POLICY,
             "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}
    try:
        return load_fleet(files, builtin_policies(), adapters=full_registry().models).settings.dashboard.url
    except FleetInvalid as err:
        return [str(e) for e in err.errors]


@pytest.mark.parametrize(("extra", "expected"), [
    ("", None),
    ("dashboard: {url: \"https://grayops.example.com\"}\n", "https://grayops.example.com"),
    ("dashboard: {url: \"http://10.0.0.5:8080/grayops/\"}\n", "http://10.0.0.5:8080/grayops"),
    ("dashboard: {url: \"ftp://grayops.example.com\"}\n",
     ["grayops.yaml:6: dashboard.url: 'ftp://grayops.example.com' is not an http:// or https:// URL (without spaces, "
      "<, > or |)"]),
    ("dashboard: {url: \"https://x.example.com|<!channel>\"}\n",
     ["grayops.yaml:6: dashboard.url: 'https://x.example.com|<!channel>' is not an http:// or https:// URL "
      "(without spaces, <, > or |)"]),
    ("dashboard: {ulr: \"https://grayops.example.com\"}\n",
     ["grayops.yaml:6: dashboard.ulr: unknown field; did you mean 'url'?"]),
])
def test_dashboard_url(extra: str, expected: list[str] | str | None) -> None:
    assert load(extra) == expected
