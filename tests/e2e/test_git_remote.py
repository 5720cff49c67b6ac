"""`grayops run` against remotes that misbehave, as an operator meets them: a second reconciler on the same
workdir, a remote that refuses pushes (non-bare, a declining hook), a human who force-pushes, a workdir deleted
under the running process. The real command in a child process, real git remotes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import (
    FAST_POLICY,
    Human,
    git,
    grayops,
    plugin_yaml,
    remote_file,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)

SIM = "sim:\n  upgradeSeconds: 0.05\n"
TIERS = {"canary": 1, "staging": 2, "prod": 5}
SLOW_POLICY = FAST_POLICY.replace("bake: 300ms", "bake: 1s")
HELD_POLICY = FAST_POLICY.replace("bake: 300ms", "bake: 10m")  # under way until paused, however slow the machine
GATED_POLICY = FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}",
                                   "{name: all, size: 100%, bake: 300ms, approval: true}")


def seed(human: Human, policy: str = FAST_POLICY, version: str = "1.5.0") -> str:
    return human.commit(f"fleet: billing {version}", {
        "grayops.yaml": settings_yaml(TIERS, SIM),
        "policies/fast.yaml": policy,
        "plugins/billing.yaml": plugin_yaml("billing", version),
    })


def run_args(remote: Path, workdir: Path) -> list[str]:
    return ["run", "--repo", str(remote), "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2",
            "--no-progress"]


class Daemon:
    """`grayops run` in the background, its log in a file."""

    def __init__(self, remote: Path, workdir: Path, log: Path) -> None:
        self.log_path = log
        self.process = subprocess.Popen([sys.executable, "-m", "reconciler.cli", *run_args(remote, workdir)],
                                        stdout=log.open("w"), stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def logged(self, pattern: str) -> list[str]:
        return re.findall(pattern, self.log())


@contextmanager
def daemon(remote: Path, workdir: Path, log: Path) -> Iterator[Daemon]:
    running = Daemon(remote, workdir, log)
    try:
        yield running
    finally:
        stop_process(running.process)


def phase(human: Human) -> str | None:
    return (remote_status(human, "billing") or {}).get("phase")


def hook(remote: Path, script: str) -> None:
    path = remote / "hooks" / "pre-receive"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


# --- item: one reconciler per workdir ----------------------------------------------------------------------


def test_a_second_run_on_the_same_workdir_exits_at_once_naming_the_holder(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, HELD_POLICY)
    with daemon(human.remote, workdir, tmp_path / "first.log") as first:
        wait_for(lambda: phase(human) == "Progressing", what="the first reconciler at work")
        second = grayops(*run_args(human.remote, workdir), timeout=60)
        assert second.returncode == 1
        assert f"pid {first.process.pid}" in second.stderr and str(workdir) in second.stderr, second.stderr
        # commands keep sharing the reconciler's clone
        paused = grayops("pause", "billing", "--repo", str(human.remote), "--workdir", str(workdir), "--as", "alice")
        assert paused.returncode == 0, paused.stderr
        wait_for(lambda: phase(human) == "Paused", what="the pause obeyed")
        assert first.process.poll() is None
    # once the first one has stopped, the workdir is free again
    again = grayops(*run_args(human.remote, workdir), "--once", timeout=120)
    assert again.returncode == 0, again.stderr


# --- items: refused pushes say why, are alerted once, and --once says what is left unpushed --------------------


def test_run_once_against_a_non_bare_remote_exits_1_with_git_s_reason(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human)
    # The human's own clone as the remote: its main is checked out, so git refuses pushes to it.
    done = grayops(*run_args(human.clone, tmp_path / "work"), "--once", timeout=120)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert re.search(r"grayops: \d+ commit\(s\) left unpushed", last), last
    assert "branch is currently checked out" in last and "refusing to update checked out branch" in last
    assert "unreachable" not in done.stderr
    assert "ALERT push_refused" in done.stderr


def test_a_declining_hook_is_alerted_once_until_it_clears(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    frozen, attempts = tmp_path / "frozen", tmp_path / "attempts"
    frozen.touch()
    hook(human.remote, f"""echo x >> {attempts}
if [ -e {frozen} ]; then echo "pushes are frozen until 18:00" >&2; exit 1; fi
exit 0
""")
    with daemon(human.remote, workdir, tmp_path / "run.log") as run:
        # every fetch retries the push: wait for many refusals, then count the alerts
        wait_for(lambda: attempts.exists() and len(attempts.read_text().split()) >= 8, timeout=120,
                 what="8 refused pushes")
        assert len(run.logged(r"ALERT push_refused")) == 1, run.log()
        assert "pushes are frozen until 18:00" in run.logged(r"ALERT push_refused.*")[0]
        assert "remote_unreachable" not in run.log()
        frozen.unlink()
        wait_for(lambda: phase(human) == "Succeeded", what="the record pushed once the hook accepts")
        wait_for(lambda: run.logged(r"git push no longer refused: accepted again"), what="the refusal cleared")
        assert len(run.logged(r"ALERT push_refused")) == 1


def test_a_human_push_racing_ours_on_the_remote_is_retried_not_alerted(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    human.write("README.md", "fleet\n")
    theirs = human.commit("readme", push=False)
    # On the reconciler's first push, the human's push lands while ours is being received.
    hook(human.remote, f"""if [ ! -e raced ]; then
  touch raced
  for v in $(env | sed -n 's/^\\(GIT_[A-Z_]*\\)=.*/\\1/p'); do unset $v; done
  cd {human.clone} && git push -q origin HEAD:main >&2
fi
exit 0
""")
    done = grayops(*run_args(human.remote, workdir), "--once", timeout=120)
    assert done.returncode == 0, done.stderr
    assert (human.remote / "raced").exists()
    assert theirs in human.log("--format=%H").split() and phase(human) == "Succeeded"
    assert "ALERT" not in done.stderr and "refused" not in done.stderr


# --- item: a force-push by a human is followed, not undone ----------------------------------------------------


def test_a_force_push_before_a_version_bump_is_followed_not_undone(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, GATED_POLICY)
    done = grayops(*run_args(human.remote, workdir), "--once", timeout=120)
    assert done.returncode == 0, done.stderr
    approved = grayops("approve", "billing", "--batch", "all", "--as", "bob", "--repo", str(human.remote))
    assert approved.returncode == 0, approved.stderr
    assert grayops(*run_args(human.remote, workdir), "--once", timeout=120).returncode == 0
    assert phase(human) == "Succeeded"
    human.pull()
    before_bump = git(human.clone, "rev-parse", "HEAD").strip()
    bump = human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    with daemon(human.remote, workdir, tmp_path / "run.log") as run:
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "1.6.0"
                 and s["phase"] == "AwaitingApproval", what="1.6.0 waiting at its gate")
        git(human.clone, "push", "-q", "-f", "origin", f"{before_bump}:main")  # the human rewinds main
        wait_for(lambda: run.logged(r"ALERT history_rewritten.*"), what="the rewrite alerted")
        # it follows the remote: 1.5.0 is what git asks for again, so 1.6.0 is rolled back and nothing is re-pushed
        wait_for(lambda: phase(human) == "RolledBack", what="the remote's version followed")
        history = human.log("--format=%H").split()
        assert before_bump in history and bump not in history
        assert '"1.5.0"' in (remote_file(human, "plugins/billing.yaml") or "")
        saved = git(workdir / "repo", "branch", "--list", "grayops/rewritten-*", "--format=%(refname:short)").split()
        assert len(saved) == 1 and bump in git(workdir / "repo", "log", "--format=%H", saved[0])
        alert = run.logged(r"ALERT history_rewritten.*")
        assert len(alert) == 1 and saved[0] in alert[0], alert
        assert run.process.poll() is None


def test_a_force_push_dropping_grayops_records_pauses_the_rollout(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, GATED_POLICY)
    bump = git(human.clone, "rev-parse", "HEAD").strip()
    with daemon(human.remote, workdir, tmp_path / "run.log") as run:
        wait_for(lambda: phase(human) == "AwaitingApproval", what="1.5.0 waiting at its gate")
        records = human.log("--format=%H").split()
        assert len(records) > 1 and records[-1] == bump
        git(human.clone, "push", "-q", "-f", "origin", f"{bump}:main")  # grayops' records are dropped
        wait_for(lambda: phase(human) == "Paused", what="the rollout paused")
        status = remote_status(human, "billing") or {}
        assert "rewritten" in status["reason"], status["reason"]
        assert "paused: true" in (remote_file(human, "plugins/billing.yaml") or "")
        history = human.log("--format=%H").split()
        assert bump in history and not set(records[:-1]) & set(history)  # nothing dropped came back
        assert len(run.logged(r"ALERT history_rewritten")) == 1
        assert not run.logged(r"ALERT git_conflict"), "a rewrite is not a conflict"
        resumed = grayops("resume", "billing", "--repo", str(human.remote), "--as", "alice")
        assert resumed.returncode == 0, resumed.stderr
        wait_for(lambda: phase(human) == "AwaitingApproval", what="resumed at its gate")


# --- item: a deleted workdir ---------------------------------------------------------------------------------


def test_a_deleted_workdir_is_cloned_again_and_the_rollout_goes_on(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, SLOW_POLICY)
    with daemon(human.remote, workdir, tmp_path / "run.log") as run:
        wait_for(lambda: phase(human) == "Progressing", what="the rollout under way")
        shutil.rmtree(workdir, ignore_errors=True)  # rm -rf, while it runs
        wait_for(lambda: run.logged(r"ALERT clone_lost"), what="the lost clone alerted")
        final = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded" and s,
                         timeout=90, what="the rollout finished from the new clone")
        assert final["targetVersion"] == "1.5.0"
        assert (workdir / "repo" / ".git").is_dir() and run.process.poll() is None
        assert "Traceback" not in run.log()
        second = grayops(*run_args(human.remote, workdir), timeout=60)  # the new workdir is held as the old one was
        assert second.returncode == 1 and f"pid {run.process.pid}" in second.stderr, second.stderr
