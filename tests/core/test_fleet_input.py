"""Hostile or mistaken fleet files: each one refused with one clear line naming its file, never an exception.

Tables over `load_fleet` (pure): YAML limits (no anchors or aliases, bounded depth and size), the layout of the
repository (which paths are read, which are errors, which are ignored), and root causes reported without the
errors they would cascade into (README "The fleet repository", "Limits").
"""

from __future__ import annotations

import time

import pytest

from policies import builtin_policies
from reconciler.cli import full_registry
from reconciler.core.fleet import (
    MAX_FILE_BYTES,
    MAX_REVISION_BYTES,
    EntryKind,
    FleetInvalid,
    TreeEntry,
    decode_text,
    load_fleet,
    survey,
)
from tests.conftest import FAST_POLICY, plugin_yaml, settings_yaml

SETTINGS = settings_yaml({"canary": 1, "prod": 2})
PLUGIN_HEAD = "apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\nspec:\n"

ADAPTERS = full_registry().models


def fleet(**files: str) -> dict[str, str]:
    base = {"grayops.yaml": SETTINGS, "policies/fast.yaml": FAST_POLICY,
            "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}
    base.update(files)
    return base


def errors_of(files: dict[str, str]) -> list[str]:
    with pytest.raises(FleetInvalid) as caught:
        load_fleet(files, builtin_policies(), adapters=ADAPTERS)
    found = [str(e) for e in caught.value.errors]
    assert all("\n" not in e and "\r" not in e for e in found), found  # one line each, always
    return found


def billion_laughs(levels: int, width: int = 10) -> str:
    lines = [PLUGIN_HEAD + '  version: "1.0.0"\n  targets:\n    l0: &l0 [lol]\n']
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"    l{level}: &l{level} [{refs}]\n")
    return "".join(lines)


# --- YAML limits ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(billion_laughs(6), "plugins/billing.yaml:7: yaml: anchors (&) and aliases (*) are not allowed",
                 id="billion-laughs"),
    pytest.param(PLUGIN_HEAD.replace("{name: billing}", "&m {name: billing}") + '  version: "1.0.0"\n',
                 "plugins/billing.yaml:3: yaml: anchors (&) and aliases (*) are not allowed", id="anchor-alone"),
    pytest.param(PLUGIN_HEAD + '  version: "1.0.0"\n  policy: *p\n',
                 "plugins/billing.yaml:6: yaml: anchors (&) and aliases (*) are not allowed", id="alias-alone"),
    pytest.param(PLUGIN_HEAD + '  version: "1.0.0"\n  targets: ' + "[" * 900 + "]" * 900 + "\n",
                 "plugins/billing.yaml:6: yaml: nested deeper than 64 levels", id="deep-flow"),
    pytest.param(PLUGIN_HEAD + '  version: "1.0.0"\n' + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(100)),
                 "plugins/billing.yaml:", id="deep-block"),
    pytest.param(PLUGIN_HEAD + "  version: 2025-02-30\n",
                 "plugins/billing.yaml:5: yaml: 2025-02-30 is not a valid date", id="impossible-date"),
    pytest.param(PLUGIN_HEAD + "  version: !foo x\n",
                 "plugins/billing.yaml:5: yaml: unknown tag '!foo'", id="unknown-tag"),
    pytest.param(PLUGIN_HEAD + "  version: !!binary abc\n",
                 "plugins/billing.yaml:5: yaml: ", id="bad-binary"),
    pytest.param(PLUGIN_HEAD + "  version: !!int abc\n",
                 "plugins/billing.yaml:5: yaml: ", id="bad-int-tag"),
    pytest.param(PLUGIN_HEAD + '  ? [a, b]\n  : "1.0.0"\n',
                 "plugins/billing.yaml:5: yaml: a key must be a plain value", id="sequence-as-key"),
    pytest.param(PLUGIN_HEAD + '  version: "1.0.0"\n  image: "\x07"\n',
                 "plugins/billing.yaml:6: yaml: ", id="control-character"),
    pytest.param(PLUGIN_HEAD + '  version: "1.0.0"\n---\nkind: Plugin\n',
                 "plugins/billing.yaml:6: yaml: ", id="two-documents"),
])
def test_yaml_beyond_the_limits_is_refused_with_file_and_line(text: str, expected: str) -> None:
    found = errors_of(fleet(**{"plugins/billing.yaml": text}))
    assert any(e.startswith(expected) for e in found), found


def test_deep_block_nesting_names_the_limit() -> None:
    text = PLUGIN_HEAD + '  version: "1.0.0"\n' + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(100))
    found = errors_of(fleet(**{"plugins/billing.yaml": text}))
    assert any("nested deeper than 64 levels" in e for e in found), found


def test_a_billion_laughs_is_refused_cheaply() -> None:
    text = billion_laughs(12)  # 10^11 strings once expanded
    started = time.process_time()
    found = errors_of(fleet(**{"plugins/billing.yaml": text}))
    assert time.process_time() - started < 2.0
    assert found[0].startswith("plugins/billing.yaml:7: yaml: anchors (&) and aliases (*) are not allowed")


def test_a_document_over_the_size_limit_is_refused_without_parsing() -> None:
    text = PLUGIN_HEAD + '  version: "1.0.0"\n' + "# padding\n" * 120_000
    found = errors_of(fleet(**{"plugins/billing.yaml": text}))
    assert found == [f"plugins/billing.yaml: {len(text)} bytes, over the 1 MiB limit of a fleet file"]


# --- the layout of the repository ----------------------------------------------------------------------------


@pytest.mark.parametrize(("files", "expected"), [
    pytest.param({"plugins/billing.yml": plugin_yaml("billing", "9.9.9")},
                 ["plugins/billing.yml: plugins/billing.yaml is there too: keep one of them"],
                 id="yaml-and-yml"),
    pytest.param({"plugins/team-a/x.yaml": plugin_yaml("x", "1.0.0")},
                 ["plugins/team-a/x.yaml: not read: plugins/ holds its files directly, not in "
                  "subdirectories"], id="nested"),
    pytest.param({"plugin/x.yaml": plugin_yaml("x", "1.0.0")},
                 ["plugin/x.yaml: not read: YAML outside plugins/, policies/, approvals/, analysis/, "
                  "status/ and reports/ (did you mean plugins/?)"], id="unknown-directory"),
    pytest.param({"acces.yaml": "apiVersion: grayops.dev/v1\nkind: Access\n"},
                 ["acces.yaml: not read: the only YAML files at the top are grayops.yaml and access.yaml "
                  "(did you mean access.yaml?)"], id="unknown-top-level-yaml"),
    pytest.param({"plugins/x\nApproved-By: U999.yaml": plugin_yaml("x", "1.0.0")},
                 ["'plugins/x\\nApproved-By: U999.yaml': control characters are not allowed in file names"],
                 id="newline-in-name"),
    pytest.param({"plugins/\x1b[2Jx.yaml": plugin_yaml("x", "1.0.0")},
                 ["'plugins/\\x1b[2Jx.yaml': control characters are not allowed in file names"],
                 id="escape-in-name"),
])
def test_files_grayops_would_not_read_are_errors_naming_the_file(files: dict[str, str], expected: list[str]) -> None:
    assert errors_of(fleet(**files)) == expected


@pytest.mark.parametrize("extra", [
    {".gitlab-ci.yml": "stages: [validate]\n"},
    {".github/workflows/plan.yaml": "on: [pull_request]\n"},
    {"README.md": "# fleet\n", "plugins/README.md": "one file per plugin\n", "docs/notes.txt": "x"},
    {"plugins/.billing.yaml.swp": "editor swap"},
], ids=["ci-file", "hidden-directory", "markdown-and-text", "hidden-file"])
def test_hidden_and_non_yaml_files_are_allowed_and_ignored(extra: dict[str, str]) -> None:
    assert set(load_fleet(fleet(**extra), builtin_policies(), adapters=ADAPTERS).plugins) == {"billing"}


# --- root causes, not cascades (issue 8 item 10) -------------------------------------------------------------


def test_a_policy_that_fails_to_parse_is_the_only_error_not_every_plugin_using_it() -> None:
    found = errors_of(fleet(**{
        "policies/fast.yaml": FAST_POLICY.replace("maxParallel: 4", "maxParalel: 4"),
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0"),
    }))
    assert found == ["policies/fast.yaml:10: spec.maxParalel: unknown field; did you mean 'maxParallel'?"]


def test_a_plugin_that_fails_to_parse_is_not_also_missing_for_its_dependents_and_approvals() -> None:
    found = errors_of(fleet(**{
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", extra="  colour: red\n"),
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", extra="  dependsOn: [billing]\n"),
        "approvals/billing.yaml": "apiVersion: grayops.dev/v1\nkind: Approvals\nmetadata: {name: billing}\n",
    }))
    assert found == ["plugins/billing.yaml:7: spec.colour: unknown field; allowed: dependsOn, image, namespaces, "
                     "owners, paused, policy, targets, version, workload"]


def test_a_plugin_named_unlike_its_file_is_not_also_missing_for_its_dependents() -> None:
    found = errors_of(fleet(**{
        "plugins/billing.yaml": plugin_yaml("biling", "1.5.0"),
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", extra="  dependsOn: [billing]\n"),
    }))
    assert found == ["plugins/billing.yaml:1: metadata.name: 'biling' must match the file name 'billing'"]


@pytest.mark.parametrize(("source", "read_as"), [("1.10", "a number"), ("2", "a number"), ("1.0", "a number"),
                                                 ("yes", "a boolean"), ("2024-01-01", "a date"), ("1e3", None)])
def test_an_unquoted_version_is_echoed_as_written(source: str, read_as: str | None) -> None:
    files = fleet(**{"plugins/billing.yaml": PLUGIN_HEAD + f"  version: {source}\n  policy: fast\n"})
    if read_as is None:  # YAML reads 1e3 as text: a valid version
        assert load_fleet(files, builtin_policies(), adapters=ADAPTERS).plugins["billing"].spec.version == source
        return
    assert errors_of(files) == [f'plugins/billing.yaml:5: spec.version: version {source} must be quoted, as in '
                                f'"{source}" (unquoted, YAML reads it as {read_as})']


def test_targets_that_select_no_cluster_are_an_error() -> None:
    found = errors_of(fleet(**{"plugins/billing.yaml": plugin_yaml("billing", "1.5.0",
                                                                  extra="  targets: {tier: [staging]}\n")}))
    assert found == ["plugins/billing.yaml:7: spec.targets: selects no cluster: no cluster in grayops.yaml has "
                     "tier staging (clusters have tier canary, prod)"]


def test_a_metric_the_sim_provider_does_not_measure_is_an_error() -> None:
    found = errors_of(fleet(**{"policies/fast.yaml": FAST_POLICY.replace("name: latency_p99_ms",
                                                                         "name: latency_p99")}))
    assert found == ["policies/fast.yaml:16: spec.analysis.metrics[1].name: the sim provider measures error_rate "
                     "and latency_p99_ms only, not 'latency_p99'"]


# --- what a tree's entries are: the survey, and the bytes of a file ------------------------------------------------


@pytest.mark.parametrize(("entry", "expected"), [
    (TreeEntry("plugins/x.yaml", EntryKind.SYMLINK), "plugins/x.yaml: symlinks are not allowed in a fleet repository"),
    (TreeEntry("plugins", EntryKind.SYMLINK), "plugins: symlinks are not allowed in a fleet repository"),
    (TreeEntry("status", EntryKind.FILE, 3), "status: must be a directory, not a file"),
    (TreeEntry("reports/billing/x.md", EntryKind.SYMLINK),
     "reports/billing/x.md: symlinks are not allowed in a fleet repository"),
    (TreeEntry("plugins/vendored", EntryKind.SUBMODULE),
     "plugins/vendored: submodules are not allowed in a fleet repository"),
    (TreeEntry("policies/p.yaml", EntryKind.FIFO), "policies/p.yaml: FIFOs are not allowed in a fleet repository"),
    (TreeEntry("grayops.yaml", EntryKind.DEVICE), "grayops.yaml: devices are not allowed in a fleet repository"),
    (TreeEntry("plugins/README.md", EntryKind.SYMLINK),
     "plugins/README.md: symlinks are not allowed in a fleet repository"),
    (TreeEntry("docs/latest", EntryKind.SYMLINK), None),  # outside the fleet and record directories: never read
    (TreeEntry("README.md", EntryKind.SYMLINK), None),
    (TreeEntry(".github/workflows", EntryKind.SYMLINK), None),
], ids=lambda value: value.path if isinstance(value, TreeEntry) else "")
def test_only_regular_files_are_allowed_where_grayops_reads_or_writes(entry: TreeEntry, expected: str | None) -> None:
    assert [str(e) for e in survey([entry]).errors] == ([expected] if expected else [])


def test_a_revision_over_its_size_limit_is_refused_at_the_file_that_crosses_it() -> None:
    size = MAX_FILE_BYTES - 10
    entries = [TreeEntry(f"plugins/p{i:02d}.yaml", EntryKind.FILE, size) for i in range(40)]
    found = survey(entries)
    crossing = MAX_REVISION_BYTES // size
    assert len(found.desired) == crossing
    assert str(found.errors[0]) == (f"plugins/p{crossing:02d}.yaml: the fleet files reach {(crossing + 1) * size} "
                                    "bytes with this one, over the 32 MiB limit of a revision")


@pytest.mark.parametrize(("data", "expected"), [
    (b"kind: Plugin\n", "kind: Plugin\n"),
    (b"\xef\xbb\xbfkind: Plugin\r\n", "\ufeffkind: Plugin\r\n"),
    ("kind: Plugin\n".encode("utf-16"), "plugins/x.yaml:1: file: not UTF-8 text (byte 0xff at offset 0)"),
    (b"a: 1\nb: caf\xe9\n", "plugins/x.yaml:2: file: not UTF-8 text (byte 0xe9 at offset 11)"),
])
def test_bytes_become_text_or_an_error_with_line_and_offset(data: bytes, expected: str) -> None:
    assert str(decode_text("plugins/x.yaml", data)) == expected
