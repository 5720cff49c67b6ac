"""The emergency brake works whatever else is broken (README "Pause and rollback at an invalid HEAD"): with a
typo anywhere in HEAD, `grayops pause` and `grayops rollback` still act on the plugin they name, the running
reconciler obeys them, and `grayops status` says that HEAD is refused. A real git remote, the sim fleet and
the real `grayops` command, the reconciler running as a daemon throughout."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    FAST_POLICY,
    Human,
    grayops,
    plugin_yaml,
    remote_file,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)

GATED = FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}",
                            "{name: all, size: 100%, bake: 300ms, approval: true}")


@pytest.fixture
def awaiting(fleet_repo: Human, tmp_path: Path) -> Iterator[tuple[Human, Path]]:
    """billing 1.5.0 rolled out, then 1.6.0 through its canary and wave-1, awaiting the approval of `all`;
    the reconciler keeps running."""
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("billing 1.5.0, auth 1.0.0", {
        "grayops.yaml": settings_yaml({"canary": 1, "staging": 2, "prod": 3}, "sim:\n  upgradeSeconds: 0.05\n"),
        "policies/fast.yaml": FAST_POLICY,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0"),
        "plugins/auth.yaml": plugin_yaml("auth", "1.0.0"),
    })
    log = (tmp_path / "run.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded", what="1.5.0")
        human.pull()
        human.commit("billing 1.6.0, approval before prod", {"policies/fast.yaml": GATED,
                                                             "plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "1.6.0"
                 and s["phase"] == "AwaitingApproval", what="1.6.0 to await the approval of all")
        human.pull()
        yield human, workdir
        assert daemon.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
    finally:
        stop_process(daemon)
        log.close()


def sim_versions(workdir: Path) -> set[str | None]:
    state = json.loads((workdir / "sim-fleet.json").read_text())
    return {entry["target"] for entry in state["plugins"]["billing"].values()}


def test_an_unrelated_typo_does_not_disable_pause_or_rollback(awaiting: tuple[Human, Path]) -> None:
    human, workdir = awaiting
    repo = str(human.remote)
    human.commit("auth: colour", {"plugins/auth.yaml": plugin_yaml("auth", "1.0.0", extra="  colour: red\n")})

    status = grayops("status", "--repo", repo)
    assert status.returncode == 1
    assert "billing" in status.stdout and "AwaitingApproval" in status.stdout  # the record is still shown
    assert "HEAD is refused" in status.stderr and "plugins/auth.yaml:7: spec.colour: unknown field" in status.stderr

    paused = grayops("pause", "billing", "--repo", repo, "--as", "carol", "--reason", "incident 42")
    assert paused.returncode == 0, paused.stderr
    assert "paused: true" in (remote_file(human, "plugins/billing.yaml") or "")
    assert "colour: red" in (remote_file(human, "plugins/auth.yaml") or "")  # nothing else was touched
    wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Paused"
             and s["paused"]["by"] == "carol", what="the reconciler to obey the pause at a refused HEAD")

    back = grayops("rollback", "billing", "--repo", repo, "--as", "carol", "--reason", "customer reports")
    assert back.returncode == 0, back.stderr
    assert '"1.5.0"' in (remote_file(human, "plugins/billing.yaml") or "")
    wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "RolledBack",
             what="the reconciler to obey the rollback at a refused HEAD")
    assert sim_versions(workdir) == {"1.5.0"}
    assert grayops("status", "--repo", repo).returncode == 1  # HEAD is still refused, for auth


def test_a_broken_plugin_file_is_rolled_back_from_its_last_good_content(awaiting: tuple[Human, Path]) -> None:
    human, workdir = awaiting
    repo = str(human.remote)
    human.commit("billing 1.7.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0", extra="  colour: red\n")})
    assert grayops("status", "--repo", repo).returncode == 1

    back = grayops("rollback", "billing", "--repo", repo, "--as", "carol")
    assert back.returncode == 0, back.stderr
    assert "plugins/billing.yaml is invalid at HEAD" in back.stdout + back.stderr
    text = remote_file(human, "plugins/billing.yaml") or ""
    assert '"1.5.0"' in text and "colour" not in text  # the last good content, set back
    assert grayops("status", "--repo", repo).returncode == 0  # HEAD is valid again
    wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "RolledBack",
             what="the reconciler to roll back")
    assert sim_versions(workdir) == {"1.5.0"}
