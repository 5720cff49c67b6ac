"""Many plugins (README "Sizing"): the real `grayops run` over 2,000 plugins pushes its commits as it goes, serves
/readyz while most plugins still wait their turn, and obeys a human's `grayops pause` of the plugin last in line
long before it has gone through every plugin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.conftest import (
    Human,
    free_port,
    git,
    grayops,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)

PLUGINS = 2000
POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: slow}
spec:
  batches: [{name: all, size: 100%, bake: 1h}]
"""


def name(n: int) -> str:
    return f"p{n:04d}"


def recorded(human: Human) -> int:
    """Plugins with a status on the remote."""
    return len(git(human.remote, "ls-tree", "--name-only", "main", "status/").split())


def ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def test_a_pause_is_obeyed_while_thousands_of_plugins_wait_their_turn(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    human.commit("fleet", {"grayops.yaml": settings_yaml({"prod": 1}, "sim: {upgradeSeconds: 0}\n"),
                           "policies/slow.yaml": POLICY,
                           **{f"plugins/{name(n)}.yaml": plugin_yaml(name(n), "1.0.0", policy="slow")
                              for n in range(PLUGINS)}})
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                                "--workdir", str(tmp_path / "work"), "--interval", "0.2", "--no-progress",
                                "--listen", f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: recorded(human) > 0, 180, "the first statuses pushed")  # as it goes, not at the end
        wait_for(lambda: ready(port), 60, "/readyz: a tick completed")
        last = name(PLUGINS - 1)
        assert remote_status(human, last) is None  # still waiting its turn
        paused = grayops("pause", last, "--repo", str(human.remote), "--as", "alice", "--reason", "incident 7")
        assert paused.returncode == 0, paused.stderr
        wait_for(lambda: (remote_status(human, last) or {}).get("phase") == "Paused", 120, f"{last} Paused")
        assert recorded(human) < PLUGINS  # obeyed while others still wait: it did not wait for its turn
        assert "paused by alice: incident 7" in (remote_status(human, last) or {}).get("reason", "")
    finally:
        stop_process(process)
