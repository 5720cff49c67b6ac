"""Shared fixtures: fleet repository texts, and a real git remote with a human's clone."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest


class FakeClock:
    """A clock the test moves by hand (the clock is a port: adapters take one)."""

    def __init__(self) -> None:
        self.at = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


SETTINGS_HEAD = "apiVersion: grayops.dev/v1\nkind: Settings\n"


def settings_yaml(tiers: Mapping[str, int], extra: str = "") -> str:
    """grayops.yaml with `count` sim clusters per tier, named <tier>-<n>."""
    clusters = "".join(
        f"  - {{name: {tier}-{i}, labels: {{tier: {tier}}}, driver: sim}}\n"
        for tier, count in tiers.items() for i in range(1, count + 1)
    )
    return SETTINGS_HEAD + "clusters:\n" + clusters + "metrics: {provider: sim}\n" + extra


def plugin_yaml(name: str, version: str, policy: str = "fast", extra: str = "") -> str:
    return (f"apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {{name: {name}}}\nspec:\n"
            f"  version: \"{version}\"\n  policy: {policy}\n{extra}")


FAST_POLICY = """\
apiVersion: grayops.dev/v1
kind: Policy
metadata: {name: fast}
spec:
  order: {label: tier, values: [canary, staging, prod]}
  batches:
    - {name: canary, size: 1, bake: 300ms}
    - {name: wave-1, size: 50%, bake: 300ms}
    - {name: all, size: 100%, bake: 300ms}
  maxParallel: 4
  instanceTimeout: 20s
  analysis:
    interval: 100ms
    metrics:
      - {name: error_rate, max: 0.05}
      - {name: latency_p99_ms, max: 500}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@dataclass
class Human:
    """A person with a clone of the fleet repository who commits and pushes like anyone would."""

    clone: Path
    remote: Path

    def write(self, path: str, text: str) -> None:
        target = self.clone / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str, files: Mapping[str, str] | None = None, push: bool = True) -> str:
        for path, text in (files or {}).items():
            self.write(path, text)
        git(self.clone, "add", "-A")
        git(self.clone, "commit", "-q", "-m", message)
        if push:
            self.push()
        return git(self.clone, "rev-parse", "HEAD").strip()

    def pull(self) -> None:
        git(self.clone, "pull", "-q", "--rebase", "origin", "main")

    def push(self) -> None:
        """Pull and push, again when the reconciler pushed in between, as a person would."""
        for _ in range(20):
            if git(self.clone, "ls-remote", "--heads", "origin", "main").strip():
                self.pull()
            done = subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=self.clone,
                                  capture_output=True, text=True, check=False)
            if done.returncode == 0:
                return
        raise AssertionError(f"push kept being rejected: {done.stderr}")

    def log(self, *args: str) -> str:
        return git(self.remote, "log", *args, "main")


def make_fleet_repo(root: Path) -> Human:
    """A bare remote `fleet.git` and a human clone with an empty main branch, under `root`."""
    remote, clone = root / "fleet.git", root / "human"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "clone", "-q", str(remote), str(clone))
    git(clone, "config", "user.name", "Alice Ops")
    git(clone, "config", "user.email", "alice@example.com")
    git(clone, "checkout", "-q", "-b", "main")
    return Human(clone, remote)


@pytest.fixture
def fleet_repo(tmp_path: Path) -> Iterator[Human]:
    yield make_fleet_repo(tmp_path)


T = TypeVar("T")


def wait_for(check: Callable[[], T | Literal[False] | None], timeout: float = 60.0, what: str = "", *,
             every: float = 0.05) -> T:
    """Poll until `check` returns something truthy, and return it; fail (never skip) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or 'the condition'}")
        time.sleep(every)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, then SIGKILL if it has not ended in `timeout` seconds; returns its exit code."""
    process.terminate()
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=10)


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def grayops(*args: str, timeout: float = 120, cwd: Path | None = None,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command, in a child process, as a user or a script runs it (with `env` added to the environment;
    a GRAYOPS_REPO of the developer's own never leaks in)."""
    import os
    import sys

    environment = {k: v for k, v in os.environ.items() if k != "GRAYOPS_REPO"} | dict(env or {})
    # the installed command, as a user runs it (`python -m` would put the cwd, a fleet clone with its policies/
    # directory, first on the import path)
    script = Path(sys.executable).parent / "grayops"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "reconciler.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False,
                          env=environment)


def remote_file(human: Human, path: str) -> str | None:
    """A file as the remote's main branch has it (None when absent)."""
    done = subprocess.run(["git", "show", f"main:{path}"], cwd=human.remote, capture_output=True, text=True,
                          check=False)
    return done.stdout if done.returncode == 0 else None


def remote_status(human: Human, plugin: str) -> dict[str, Any] | None:
    """The plugin's status on the remote, read by the codec, in the plain form (`grayops status -o json`'s)."""
    from reconciler.core.model import to_doc
    from reconciler.core.status import load_status

    text = remote_file(human, f"status/{plugin}.yaml")
    return to_doc(load_status(text)) if text else None


# The long end-to-end runs: the real `grayops` command driving whole rollouts, the kill -9 soak, a real browser,
# the fuzzer. `pytest -m "not slow"` is the fast developer loop (README "Development"); CI runs everything.
SLOW = ("e2e/", "web/test_web_browser.py", "adapters/test_fuzz_fleet.py", "prom/test_rollouts_prometheus.py",
        "kube/test_run.py", "kube/test_run_blue_green.py", "kube/test_run_smoke.py", "kube/test_run_canary.py",
        "kube/test_shards.py", "test_cli.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        if item.path.relative_to(root).as_posix().startswith(SLOW):
            item.add_marker(pytest.mark.slow)
