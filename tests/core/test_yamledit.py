"""set_field: one scalar changes, everything else in the text stays byte for byte."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from reconciler.core.yamledit import set_field

PLUGIN = """\
# Owned by the platform team.
apiVersion: grayops/v1
kind: Plugin
metadata:
  name: x   # the plugin

spec:
  # bump me
  version: 1.5.0  # pinned after INC-42
  paused: false
  selector:
    env: prod
  tags:
  - a
  - b
# trailing comment about other
other: 1
"""

CASES: list[tuple[str, str, tuple[str, ...], str | bool]] = [
    ("block plain", PLUGIN, ("spec", "version"), "1.6.0"),
    ("block plain to number-like", PLUGIN, ("spec", "version"), "1.6"),
    ("block bool", PLUGIN, ("spec", "paused"), True),
    ("block missing key after nested list", PLUGIN, ("spec", "owner"), "alice"),
    ("nested missing key", PLUGIN, ("spec", "selector", "zone"), "eu-1"),
    ("root missing key", PLUGIN, ("status",), "x"),
    ("single quoted", "spec:\n  version: '1.5.0'  # c\n", ("spec", "version"), "1.6.0"),
    ("single quoted with quote", "spec:\n  version: '1.5.0'\n", ("spec", "version"), "it's"),
    ("double quoted", 'spec:\n  version: "1.5.0"\n', ("spec", "version"), "1.6"),
    ("flow existing", 'spec: {version: "1.5.0", paused: false}  # c\n', ("spec", "version"), "1.6.0"),
    ("flow missing", 'spec: {version: "1.5.0"}\n', ("spec", "paused"), True),
    ("flow empty", "spec: {}\n", ("spec", "paused"), True),
    ("flow trailing comma", "spec: {a: 1,}\n", ("spec", "version"), "1.6"),
    ("flow plain needs quotes", "spec: {a: x}\n", ("spec", "a"), "b, c"),
    ("flow multi-line", "spec: {\n  a: 1,  # c\n  b: 2\n}\n", ("spec", "c"), "3"),
    ("crlf existing", "spec:\r\n  version: 1.5.0\r\n  paused: false\r\n", ("spec", "paused"), True),
    ("crlf missing", "spec:\r\n  version: 1.5.0\r\n", ("spec", "paused"), True),
    ("no final newline", "spec:\n  version: 1.5.0", ("spec", "paused"), True),
    ("empty value", "spec:\n  version:\n  paused: false\n", ("spec", "version"), "1.6"),
    ("block scalar", "spec:\n  notes: |\n    a\n    b\n\n  version: 1\n", ("spec", "notes"), "short"),
    ("tagged", "spec:\n  version: !!str 1.5\n", ("spec", "version"), "1.6"),
    ("anchored, not aliased", "spec:\n  version: &v 1.5.0\n", ("spec", "version"), "1.6.0"),
    ("string that looks like bool", "spec:\n  mode: fast\n", ("spec", "mode"), "yes"),
    ("special characters", "spec:\n  reason: x\n", ("spec", "reason"), 'a: "b" # c\n\\ é'),
    ("empty string", "spec:\n  reason: x\n", ("spec", "reason"), ""),
    ("after a sequence of mappings", "spec:\n  steps:\n  - a: 1\n  version: 1.5.0\n", ("spec", "version"),
     "2"),
    ("document markers", "---\nspec:\n  version: 1.5.0\n...\n", ("spec", "version"), "1.6.0"),
]


def _with(data: Any, path: tuple[str, ...], value: str | bool) -> Any:
    expected = copy.deepcopy(data)
    target = expected
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return expected


@pytest.mark.parametrize(("text", "path", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_only_that_field_changes(text: str, path: tuple[str, ...], value: str | bool) -> None:
    result = set_field(text, path, value)
    assert yaml.safe_load(result) == _with(yaml.safe_load(text), path, value)
    # Every comment survives, and line endings are not mixed.
    for line in text.splitlines():
        if "#" in line and not line.lstrip().startswith(("version", "reason", "a:")):
            assert line.split("#", 1)[1] in result
    if "\r\n" in text:
        assert result.count("\n") == result.count("\r\n")


def test_exact_text_for_common_edits() -> None:
    assert set_field(PLUGIN, ("spec", "version"), "1.6.0") == PLUGIN.replace(
        "version: 1.5.0  # pinned", "version: 1.6.0  # pinned")
    assert set_field(PLUGIN, ("spec", "version"), "1.6") == PLUGIN.replace(
        "version: 1.5.0  # pinned", 'version: "1.6"  # pinned')
    assert set_field(PLUGIN, ("spec", "paused"), True) == PLUGIN.replace("paused: false", "paused: true")
    assert set_field("spec:\n  version: '1.5.0'\n", ("spec", "version"), "1.6") == "spec:\n  version: '1.6'\n"
    assert set_field('spec: {version: "1.5.0"}\n', ("spec", "paused"), True) == (
        'spec: {version: "1.5.0", paused: true}\n')
    assert set_field("spec:\r\n  version: 1.5.0\r\n", ("spec", "paused"), False) == (
        "spec:\r\n  version: 1.5.0\r\n  paused: false\r\n")


def test_missing_key_goes_after_the_parents_last_line_with_its_indent() -> None:
    result = set_field(PLUGIN, ("spec", "owner"), "alice")
    assert "  - b\n  owner: alice\n# trailing comment about other\n" in result
    assert set_field("a:\n    b: 1\n", ("a", "c"), "2") == 'a:\n    b: 1\n    c: "2"\n'


def test_same_value_is_a_no_op_for_plain_and_quoted() -> None:
    assert set_field(PLUGIN, ("spec", "version"), "1.5.0") == PLUGIN
    text = 'spec:\n  version: "1.5.0"\n'
    assert set_field(text, ("spec", "version"), "1.5.0") == text


@pytest.mark.parametrize(("text", "path", "message"), [
    ("spec:\n  version: 1\n", ("nope", "version"), "nope is missing"),
    ("spec: 3\n", ("spec", "version"), "spec is not a mapping"),
    ("spec: [1, 2]\n", ("spec", "version"), "spec is not a mapping"),
    ("- a\n", ("spec",), "root is not a mapping"),
    ("", ("spec",), "root is not a mapping"),
    ("spec:\n  selector: {a: 1}\n", ("spec", "selector"), "is a mapping, not a scalar"),
    ("spec:\n  version: &v 1\nother: *v\n", ("spec", "version"), "aliased elsewhere"),
    ("base: &b {version: 1}\nspec: *b\n", ("spec", "version"), "alias"),
    ("spec: [unclosed\n", ("spec", "version"), "not valid YAML"),
    ("spec:\n  version: 1\n", (), "empty path"),
])
def test_errors_are_value_errors(text: str, path: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        set_field(text, path, "1.6")
