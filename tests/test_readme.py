"""README.md opens with the two commands a new user runs, and CI runs exactly the second one."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def commands() -> list[str]:
    return [line.strip() for line in (ROOT / "README.md").read_text().splitlines()[:12] if line.startswith("    ")]


def test_readme_opens_with_setup_and_demo_then_tests() -> None:
    setup, tests = commands()[:2]
    assert setup.endswith("grayops demo") and "pip install" in setup
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands()[1] in [line.strip() for line in ci if not line.startswith("#")]
