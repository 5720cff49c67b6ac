"""`grayops wait` and `grayops status -w` against a real `grayops run` on the sim fleet (README "The CLI"): what a
pipeline waits on, and its exit codes; status exits 1 when a rollout needs a human."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import Human, grayops, plugin_yaml, wait_for
from tests.e2e.test_run import run_once, seed

WAIT = ("--interval", "0.2", "--timeout", "5m")


def command(*args: str) -> subprocess.Popen[str]:
    script = Path(sys.executable).parent / "grayops"
    env = {k: v for k, v in os.environ.items() if k != "GRAYOPS_REPO"}
    return subprocess.Popen([str(script), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_wait_exits_0_once_the_version_succeeded(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, "1.5.0")
    waiting = command("wait", "billing", "--repo", str(human.remote), *WAIT)
    assert waiting.stdout is not None
    assert waiting.stdout.readline() == "waiting for billing 1.5.0 to be Succeeded\n"
    run_once(human, tmp_path / "work")
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert out.splitlines()[-1] == "billing 1.5.0: Succeeded"


def test_wait_exits_1_when_the_version_is_rolled_back(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, "1.5.0")
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})  # a faulty version
    waiting = command("wait", "billing", "--repo", str(human.remote), *WAIT)
    run_once(human, workdir)
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 1, out + err
    assert out.splitlines()[0] == "waiting for billing 1.6.0 to be Succeeded"
    assert out.splitlines()[-1].startswith("billing 1.6.0: RolledBack (")
    # settled is reached by a rollback too
    settled = grayops("wait", "billing", "--version", "1.6.0", "--for", "settled", "--repo", str(human.remote), *WAIT)
    assert settled.returncode == 0 and settled.stdout.splitlines()[-1] == "billing 1.6.0: RolledBack"


def test_wait_exits_2_on_timeout(fleet_repo: Human) -> None:
    seed(fleet_repo, "1.5.0")  # no reconciler runs
    done = grayops("wait", "billing", "--repo", str(fleet_repo.remote), "--timeout", "1s", "--interval", "0.2")
    assert done.returncode == 2
    assert done.stdout.splitlines()[-1] == "billing 1.5.0 not Succeeded within 1s"


def test_status_exits_1_when_a_rollout_failed(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, "1.6.0")  # a faulty first install fails: there is nothing to roll back to
    run_once(human, tmp_path / "work")
    done = grayops("status", "--repo", str(human.remote))
    assert done.returncode == 1
    assert "billing" in done.stdout and "Failed" in done.stdout


def test_status_watch_shows_each_change_until_interrupted(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, "1.5.0")
    watching = command("status", "-w", "--interval", "0.2", "--repo", str(human.remote))
    lines: list[str] = []

    def read() -> None:
        assert watching.stdout is not None
        lines.extend(iter(watching.stdout.readline, ""))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: "no rollout recorded yet\n" in lines, what="the first block")
    run_once(human, tmp_path / "work")
    wait_for(lambda: any("Succeeded" in line for line in lines), what="the block of the finished rollout")
    watching.send_signal(signal.SIGINT)
    assert watching.wait(timeout=60) == 0  # Ctrl-C is how a watch ends
    blocks = [line for line in lines if line[:2].isdigit() and line[2] == ":"]  # each block opens with its time
    assert len(blocks) >= 2
