"""What editors and hooks get (README "Editors and pre-commit"): the JSON Schema, as check-jsonschema applies it,
names the misspelt field of the file's own kind and knows the validator's bounds; the pre-commit hook runs
`grayops validate` on the files it matches."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import FAST_POLICY, grayops, plugin_yaml, settings_yaml
from tests.e2e.test_run import TIERS

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "policies" / "schema" / "fleet.schema.json"
FLEET = {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": FAST_POLICY,
         "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")}


def write(root: Path, files: dict[str, str]) -> list[str]:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    return list(files)


def check_jsonschema(root: Path, *files: str) -> subprocess.CompletedProcess[str]:
    checker = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run([str(checker), "--schemafile", str(SCHEMA), *files], cwd=root, capture_output=True,
                          text=True, timeout=120, check=False)


def test_the_shipped_schema_passes_a_valid_fleet(tmp_path: Path) -> None:
    done = check_jsonschema(tmp_path, *write(tmp_path, FLEET))
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_misspelt_field_is_named_in_its_own_kind(tmp_path: Path) -> None:
    typo = plugin_yaml("billing", "1.5.0").replace("  policy: fast", "  polcy: fast")
    done = check_jsonschema(tmp_path, *write(tmp_path, {"plugins/billing.yaml": typo}))
    assert done.returncode == 1
    assert "'polcy' was unexpected" in done.stdout, done.stdout
    assert "were unexpected" not in done.stdout  # not the best of five failed kinds


def test_the_schema_knows_the_validators_bounds(tmp_path: Path) -> None:
    over = FAST_POLICY.replace("{name: wave-1, size: 50%", "{name: wave-1, size: 150%")
    zone = FAST_POLICY + "  windows:\n    - {start: \"09:00\", end: \"17:00\", timezone: europe/berlin}\n"
    assert "windows" in yaml.safe_load(zone)["spec"]
    for policy, bad in ((over, "150%"), (zone, "europe/berlin")):
        done = check_jsonschema(tmp_path, *write(tmp_path, {"policies/fast.yaml": policy}))
        assert done.returncode == 1 and bad in done.stdout, done.stdout
        rejected = grayops("validate", cwd=write_fleet(tmp_path / bad.replace("/", "-"), policy))
        assert rejected.returncode == 1  # the validator refuses what the schema refuses


def write_fleet(root: Path, policy: str) -> Path:
    write(root, FLEET | {"policies/fast.yaml": policy})
    return root


def test_the_pre_commit_hook_validates_the_fleet_files_it_matches(tmp_path: Path) -> None:
    hook = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())[0]
    assert hook["id"] == "grayops-validate"
    files = write(tmp_path, FLEET | {"status/billing.yaml": "phase: Succeeded\n", "README.md": "# fleet\n"})
    matched = [path for path in files if re.search(hook["files"], path)]
    assert sorted(matched) == ["grayops.yaml", "plugins/billing.yaml", "policies/fast.yaml"]
    entry = [str(Path(sys.executable).parent / word) if i == 0 else word
             for i, word in enumerate(shlex.split(hook["entry"]))]

    def run_hook() -> subprocess.CompletedProcess[str]:  # as pre-commit runs it: the entry, then the files
        return subprocess.run([*entry, *matched], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              check=False)

    assert run_hook().returncode == 0
    write(tmp_path, {"plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="fsat")})
    failed = run_hook()
    assert failed.returncode == 1 and failed.stderr.startswith("plugins/billing.yaml:6: spec.policy:"), failed.stderr
