"""Benchmark: many plugins on one cluster each, the first tick and a human's pause; prints figures with their
targets (no pass/fail). README "Sizing".

    python tests/bench/bench_plugins.py [--plugins 10000] [--limit 200]

A real git remote (a bare repository), the sim fleet, the reconciler in this process ticking as `grayops run`
does (woken by a change to the local remote). Figures:

1. the first tick: how long it takes, the status commits it makes and how many of them the remote has when it
   ends (target: <= 5 s, pushed as it goes); the revision is read, loaded and validated before it, a figure of
   its own;
2. a human pauses the plugin last in line with `grayops pause` (pushed to the remote while the rollouts are still
   being started): the time from the pause on the remote to its status `Paused` there, and how many ticks began
   meanwhile, up to the one at whose end it was there (checked after each tick; target: within the next tick, so 1);
3. every plugin's first status recorded and pushed: how long, in how many ticks.

`--limit` bounds each wait: a tick still running then is reported as such (before README "Sizing", the first
tick of 10,000 plugins ran for many minutes and pushed nothing: one tick went through every plugin).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo, RemoteWatcher
from reconciler.shell import Reconciler

GRAYOPS = [str(Path(sys.executable).parent / "grayops")]  # the installed command, as a user runs it
SETTINGS = ("apiVersion: grayops.dev/v1\nkind: Settings\nclusters:\n  - {name: c0, labels: {tier: prod}}\n"
            "metrics: {provider: sim}\nsim: {upgradeSeconds: 0.01}\ngit: {pollInterval: 5s}\n")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def name(n: int) -> str:
    return f"p{n:05d}"


def plugin(plugin_name: str) -> str:
    return (f"apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {{name: {plugin_name}}}\nspec:\n"
            "  version: \"1.0.0\"\n  policy: canary-waves\n")


def fleet_repo(root: Path, plugins: int) -> Path:
    remote, human = root / "fleet.git", root / "human"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(root, "init", "-q", "-b", "main", str(human))
    (human / "grayops.yaml").write_text(SETTINGS)
    (human / "plugins").mkdir()
    for n in range(plugins):
        (human / "plugins" / f"{name(n)}.yaml").write_text(plugin(name(n)))
    git(human, "add", "-A")
    git(human, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "fleet")
    git(human, "push", "-q", str(remote), "HEAD:main")
    return remote


def remote_count(remote: Path) -> int:
    """Commits on the remote's main branch."""
    return int(git(remote, "rev-list", "--count", "main"))


def remote_phase(remote: Path, plugin_name: str) -> str | None:
    done = subprocess.run(["git", "show", f"main:status/{plugin_name}.yaml"], cwd=remote, capture_output=True,
                          text=True, check=False)
    status = yaml.safe_load(done.stdout) if done.returncode == 0 else None
    return status.get("phase") if isinstance(status, dict) else None


def paused_on_remote(remote: Path) -> bool:
    """The pause commit (`grayops pause`) is on the remote's main branch."""
    return bool(git(remote, "log", "-1", "--format=%H", "--fixed-strings", "--grep=Grayops-Action: pause", "main"))


def recorded(remote: Path) -> int:
    """Plugins with a status on the remote."""
    return len(git(remote, "ls-tree", "--name-only", "main", "status/").split())


class Ticking:
    """The reconciler's loop in a thread: tick, then wait for the next poll or a wake (as `grayops run`)."""

    def __init__(self, reconciler: Reconciler, interval: float) -> None:
        self.reconciler, self.interval = reconciler, interval
        self.began: list[float] = []  # when each tick began (monotonic)
        self.ended: list[float] = []  # when each tick ended
        self.started = 0.0
        self.stopping = False
        self.watch: Callable[[], bool] | None = None  # checked after each tick until it holds
        self.held_after: int | None = None  # the ticks begun when `watch` first held at a tick's end
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.started = time.monotonic()
        while not self.stopping:
            began = time.monotonic()
            self.began.append(began)
            try:
                self.reconciler.tick()
            except Exception as err:  # as `grayops run`: a failed tick is tried again
                print(f"  a tick failed: {type(err).__name__}: {err}")
            self.ended.append(time.monotonic())
            if self.watch is not None and self.held_after is None and self.watch():
                self.held_after = len(self.began)
            self.reconciler.wake.wait(max(0.0, self.interval - (time.monotonic() - began)))

    def ticks_since(self, moment: float) -> int:
        """Ticks begun after `moment`, up to now."""
        return sum(1 for t in self.began if t > moment)


def pushed_by(ticking: Ticking, begun_before: int) -> int | str:
    """The ticks begun after the pause was on the remote, up to the one at whose end its Paused was there."""
    return "?" if ticking.held_after is None else ticking.held_after - begun_before


def wait(check: Callable[[], bool], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def bench(plugins: int, limit: float) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-plugins-"))
    try:
        remote = fleet_repo(root, plugins)
        before = remote_count(remote)
        workdir = root / "work"
        reconciler = Reconciler(GitRepo(str(remote), workdir), workdir, builtin_policies(), poll_interval=5.0)
        loaded = time.monotonic()
        reconciler.start()
        cloned = time.monotonic()
        reconciler.revisions.sync()  # what the first tick would do first: read, load and validate the revision
        print(f"{plugins} plugins x 1 cluster: clone + status read {cloned - loaded:.1f} s, load + validate the "
              f"revision {time.monotonic() - cloned:.1f} s (no target here)")
        watcher = RemoteWatcher(str(remote), reconciler.wake.set)
        watcher.start()
        ticking = Ticking(reconciler, interval=0.2)
        ticking.thread.start()
        deadline = time.monotonic() + limit
        clone = workdir / "repo"

        if wait(lambda: bool(ticking.ended), deadline):
            took = ticking.ended[0] - ticking.started
            made = int(git(clone, "rev-list", "--count", "HEAD")) - before
            pushed = remote_count(remote) - before
            ready = reconciler.telemetry.ready()
            print(f"  first tick                         {took:8.2f} s   (target <= 5 s)  {made} commit(s), "
                  f"{pushed} pushed when it ended; /readyz: {ready[1]}")
        else:
            made = int(git(clone, "rev-list", "--count", "HEAD")) - before
            print(f"  first tick                      still running after {limit:.0f} s   (target <= 5 s)  "
                  f"{made} commit(s) so far, {remote_count(remote) - before} pushed")

        last = name(plugins - 1)  # the last in line: not started yet while the first ones are
        ticking.watch = lambda: remote_phase(remote, last) == "Paused"  # which tick pushed it, exactly
        asked = time.monotonic()
        pausing = subprocess.Popen([*GRAYOPS, "pause", last, "--repo", str(remote), "--as", "alice", "--reason",
                                    "bench"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert wait(lambda: paused_on_remote(remote), time.monotonic() + max(60.0, limit)), "the pause never landed"
        on_remote = time.monotonic()  # the moment the pause commit is on the remote (the command may still run)
        begun_before = len(ticking.began)
        assert pausing.wait(timeout=60) == 0, pausing.stderr.read() if pausing.stderr else ""
        started_then = recorded(remote)
        if wait(lambda: remote_phase(remote, last) == "Paused", time.monotonic() + limit):
            print(f"  pause on the remote -> Paused there {time.monotonic() - on_remote:8.2f} s   (target: within "
                  f"the next tick) ticks begun meanwhile: {pushed_by(ticking, begun_before)}; {started_then} of "
                  f"{plugins} rollouts recorded then; the pause command took {on_remote - asked:.1f} s to push")
        else:
            print(f"  pause on the remote -> Paused there  not after {limit:.0f} s "
                  "(target: within the next tick)")
        if wait(lambda: recorded(remote) >= plugins, time.monotonic() + limit):
            print(f"  every plugin's status pushed       {time.monotonic() - ticking.started:8.2f} s   in "
                  f"{len(ticking.ended)} tick(s) (no target: git writes one commit per plugin)")
        else:
            print(f"  every plugin's status pushed     not after {time.monotonic() - ticking.started:.0f} s: "
                  f"{recorded(remote)} of {plugins}")
        watcher.stop()
        ticking.stopping = True
    finally:
        logging.disable(logging.CRITICAL)  # a tick still running fails once its clone is removed: not news
        shutil.rmtree(root, ignore_errors=True)
        sys.stdout.flush()
        os._exit(0)  # a tick still running cannot be stopped from outside: the figures are printed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugins", type=int, default=10_000)
    parser.add_argument("--limit", type=float, default=200.0, help="seconds each wait may take")
    args = parser.parse_args()
    bench(args.plugins, args.limit)


if __name__ == "__main__":
    main()
