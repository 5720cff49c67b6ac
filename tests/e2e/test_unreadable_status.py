"""A status/<plugin>.yaml nobody can read: every command says so in one line, none shows a traceback, and
pausing still works. The real `grayops` command against a real git remote."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import FAST_POLICY, Human, grayops, plugin_yaml, remote_file, settings_yaml

Doc = dict[str, Any]  # a status file as YAML reads it


def seeded(human: Human, workdir: Path) -> Doc:
    human.commit("billing 1.5.0", {
        "grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, "sim:\n  upgradeSeconds: 0.05\n"),
        "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0"),
    })
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress")
    assert done.returncode == 0, done.stderr
    doc: Doc = yaml.safe_load(remote_file(human, "status/billing.yaml") or "")
    assert doc["phase"] == "Succeeded"
    return doc


def without(doc: Doc, key: str) -> str:
    return yaml.safe_dump({k: v for k, v in doc.items() if k != key})


BROKEN: dict[str, Callable[[Doc], str]] = {
    "not YAML": lambda doc: "phase: [Succeeded\n",
    "no started": lambda doc: without(doc, "started"),
    "batches not a list": lambda doc: yaml.safe_dump({**doc, "batches": 5}),
    "an instance not a mapping": lambda doc: yaml.safe_dump({**doc, "instances": {"prod-1/plugins": "Done"}}),
    "not a mapping": lambda doc: "- just\n- a list\n",
}


def one_clear_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "status/billing.yaml" in line]
    assert len(lines) == 1 and lines[0].startswith("grayops: status/billing.yaml: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
def test_status_plan_and_rollback_say_it_in_one_line_and_pause_still_works(fleet_repo: Human, tmp_path: Path,
                                                                           broken: Callable[[Doc], str]) -> None:
    human = fleet_repo
    doc = seeded(human, tmp_path / "work")
    human.pull()
    human.commit("break the status", {"status/billing.yaml": broken(doc)})
    repo = str(human.remote)

    one_clear_line(grayops("status", "--repo", repo))
    one_clear_line(grayops("plan", "--repo", str(human.clone)))
    one_clear_line(grayops("rollback", "billing", "--repo", repo, "--as", "alice"))
    paused = grayops("pause", "billing", "--repo", repo, "--as", "alice", "--reason", "incident 42")
    assert paused.returncode == 0, paused.stderr
    assert "paused: true" in (remote_file(human, "plugins/billing.yaml") or "")


def test_grayops_debug_shows_the_traceback(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    doc = seeded(human, tmp_path / "work")
    human.pull()
    human.commit("break the status", {"status/billing.yaml": without(doc, "started")})
    debug = subprocess.run([sys.executable, "-m", "reconciler.cli", "plan", "--repo", str(human.clone)],
                           capture_output=True, text=True, timeout=120, check=False,
                           env={**os.environ, "GRAYOPS_DEBUG": "1"})
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "status/billing.yaml" in debug.stderr
