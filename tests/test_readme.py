"""README.md opens with the two commands a new user runs, and CI runs exactly the second one."""

from __future__ import annotations

import re
import subprocess
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


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / name for name in listed.decode().split("\0") if name]
    return [path for path in paths if path.is_file() and path.suffix in TEXT_SUFFIXES]


TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".json", ".html", ".js", ".css", ".txt", ""}


def test_the_project_cites_nothing_outside_the_repository() -> None:
    outside = re.compile(r"DESIGN\.md|\bseeds?[ /]0\d\d|\.\./shared", re.IGNORECASE)
    found = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}" for path in tracked_text_files()
             if path.name != "test_readme.py"
             for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert found == []


def test_every_readme_section_a_file_cites_exists() -> None:
    headings = [line.lstrip("#").strip() for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("#")]
    cited = re.compile(r'README \\?"([^"\\\s][^"\\]*)\\?"')  # a citation may wrap onto a comment's next line
    sections = {(path, re.sub(r"\s*\n\s*#?\s*", " ", section)) for path in tracked_text_files()
                for section in cited.findall(path.read_text(errors="replace"))}
    missing = {f"{path.relative_to(ROOT)}: {section}" for path, section in sections
               if not any(heading.startswith(section) for heading in headings)}
    assert missing == set()
