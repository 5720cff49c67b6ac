"""The CI templates in deploy/ci/ (README "Merge requests"): valid for GitHub Actions and GitLab CI by their
published schemas (check-jsonschema's built-in copies), and every grayops command in them is one the CLI takes."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.cli.main import build_parser

CI = Path(__file__).resolve().parents[2] / "deploy" / "ci"


@pytest.mark.parametrize(("name", "schema"), [("github-actions.yaml", "vendor.github-workflows"),
                                              ("gitlab-ci.yml", "vendor.gitlab-ci")])
def test_the_template_is_valid_for_its_ci(name: str, schema: str) -> None:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run([str(checker), "--builtin-schema", schema, str(CI / name)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["github-actions.yaml", "gitlab-ci.yml"])
def test_every_grayops_command_in_the_template_parses(name: str) -> None:
    text = re.sub(r"\$\{\{[^}]*\}\}|\$\w+", "x", (CI / name).read_text())  # CI variables, as any value
    commands = re.findall(r"\bgrayops (?:validate|plan)[^\n|>]*", text)
    assert {c.split()[1] for c in commands} == {"validate", "plan"}
    for command in commands:
        words = shlex.split(command)
        build_parser().parse_args(words[1:])  # a usage error would exit 2
