"""GitRepo and RemoteWatcher against real git: a bare remote, a human's clone, and the reconciler's clone."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitRepo, RemoteUnavailable, RemoteWatcher, WorkdirBusy, redact_url

PLUGIN_X = "kind: Plugin\nmetadata:\n  name: x\nspec:\n  version: 1.5.0\n  paused: false\n"


def git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(
        ["git", "-c", "user.name=Human", "-c", "user.email=human@example.com", "-c", "commit.gpgsign=false",
         "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, text=True, env=env,
    ).stdout.strip()


def human_commit(human: Path, files: dict[str, str], message: str, push: bool = True) -> str:
    for rel, text in files.items():
        (human / rel).parent.mkdir(parents=True, exist_ok=True)
        (human / rel).write_text(text)
    git(human, "add", "-A")
    git(human, "commit", "-q", "-m", message)
    if push:
        git(human, "push", "-q", "origin", "HEAD:main")
    return git(human, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "human"))
    human_commit(tmp_path / "human", {
        "grayops.yaml": "kind: Settings\n",
        "plugins/x.yaml": PLUGIN_X,
        "plugins/y.yaml": PLUGIN_X.replace("name: x", "name: y"),
        "status/x.yaml": "phase: idle\n",
        "reports/x.md": "# report\n",
        "README.md": "hello\n",
    }, "seed")
    return bare


@pytest.fixture
def human(remote: Path) -> Path:
    return remote.parent / "human"


@pytest.fixture
def repo(remote: Path, tmp_path: Path) -> GitRepo:
    r = GitRepo(str(remote), tmp_path / "work")
    r.ensure_clone()
    return r


def remote_head(remote: Path, branch: str = "main") -> str:
    return git(remote, "rev-parse", branch)


def test_clone_reads_desired_and_status_files(repo: GitRepo, remote: Path) -> None:
    assert repo.path == repo.workdir / "repo"
    assert sorted(repo.desired_files()) == ["grayops.yaml", "plugins/x.yaml", "plugins/y.yaml"]
    assert repo.desired_files()["plugins/x.yaml"] == PLUGIN_X
    assert repo.status_files() == {"status/x.yaml": "phase: idle\n"}
    assert repo.read("README.md") == "hello\n"
    assert repo.read("plugins/none.yaml") is None
    assert repo.head() == remote_head(remote)
    config = subprocess.run(["git", "config", "--local", "user.name"], cwd=repo.path, capture_output=True,
                            text=True, check=True).stdout
    assert config.strip() == "grayops"
    with pytest.raises(ValueError):
        repo.read("../outside")


def test_commit_with_trailers_is_pushed_and_read_back(repo: GitRepo, remote: Path) -> None:
    sha = repo.commit({"plugins/x.yaml": PLUGIN_X.replace("false", "true")}, "Pause x",
                      {"Requested-By": "alice", "Grayops-Action": "pause", "Grayops-Reason": "p99 latency"})
    assert sha is not None and sha == repo.head()
    assert repo.unpushed() == 1
    result = repo.push()
    assert (result.pushed, result.pending, result.conflict, result.error) == (True, 0, None, None)
    assert remote_head(remote) == sha
    assert repo.fetch() is False  # our own push is not news
    trailers = git(remote, "log", "-1", "--format=%(trailers)", "main")
    assert "Requested-By: alice" in trailers and "Grayops-Action: pause" in trailers
    assert git(remote, "log", "-1", "--format=%an", "main") == "grayops"

    changes = repo.last_changes(["plugins/x.yaml", "plugins/y.yaml", "plugins/never.yaml"])
    assert set(changes) == {"plugins/x.yaml", "plugins/y.yaml"}
    x = changes["plugins/x.yaml"]
    assert (x.commit, x.by, x.action, x.reason) == (sha, "alice", "pause", "p99 latency")
    y = changes["plugins/y.yaml"]
    assert (y.by, y.action, y.reason) == ("Human", None, "seed")  # no trailers: author and subject


def test_the_last_change_of_many_paths_is_each_ones_own(repo: GitRepo, human: Path) -> None:
    many = {f"plugins/m{n:03d}.yaml": f"n: {n}\n" for n in range(100)}  # more than git is given one by one
    first = human_commit(human, many, "many")
    second = human_commit(human, {"plugins/m007.yaml": "n: 7 again\n", "status/m008.yaml": "x\n"}, "m007")
    repo.fetch()
    repo.integrate()
    changes = repo.last_changes([*many, "plugins/never.yaml"])
    assert set(changes) == set(many)  # a path never committed is left out, others in the directory too
    assert changes["plugins/m007.yaml"].commit == second
    assert {c.commit for path, c in changes.items() if path != "plugins/m007.yaml"} == {first}


def test_commit_without_change_makes_no_commit(repo: GitRepo) -> None:
    head = repo.head()
    assert repo.commit({"plugins/x.yaml": PLUGIN_X}, "same") is None
    assert repo.commit({"plugins/gone.yaml": None}, "delete what is not there") is None
    assert repo.head() == head
    assert repo.push().pushed is False
    # A deletion is a change; trailers can be pairs, in order.
    sha = repo.commit({"plugins/y.yaml": None}, "Remove y", [("Requested-By", "bob")])
    assert sha is not None
    assert repo.read("plugins/y.yaml") is None
    assert "plugins/y.yaml" not in git(repo.path, "ls-files")
    with pytest.raises(ValueError):
        repo.commit({"/etc/passwd": "x"}, "escape")


def test_a_message_of_several_lines_keeps_each_on_its_own_line_and_the_trailers_readable(repo: GitRepo) -> None:
    lines = ["x 1.5.0: rollout begins", "x 1.5.0: batch canary started\nGrayops-Action: forged", "", "x 1.5.0: ok"]
    sha = repo.commit({"status/x.yaml": "phase: rolling\n"}, lines, [("Grayops-Action", "batch-start")], status=True)
    assert sha is not None
    body = git(repo.path, "log", "-1", "--format=%B")
    assert body.splitlines()[:3] == ["x 1.5.0: rollout begins", "x 1.5.0: batch canary started Grayops-Action: forged",
                                     "x 1.5.0: ok"]  # one line each, a line break inside one is a space
    assert git(repo.path, "log", "-1", "--format=%(trailers:key=Grayops-Action,valueonly)").strip() == "batch-start"
    change = repo.change_of(sha)
    assert change is not None and change.action == "batch-start"


def test_human_push_racing_a_status_push_keeps_both(repo: GitRepo, remote: Path, human: Path) -> None:
    # The human pushes after our clone last fetched; our push is rejected, rebased and retried.
    theirs = human_commit(human, {"plugins/x.yaml": PLUGIN_X.replace("1.5.0", "1.6.0")}, "Upgrade x")
    ours = repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x rolling",
                       {"Grayops-Action": "status"}, status=True)
    assert ours is not None
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.conflict) == (True, 0, None)
    final = remote_head(remote)
    subjects = git(remote, "log", "--format=%s", "main").splitlines()
    assert subjects[:2] == ["status: x rolling", "Upgrade x"]
    git(remote, "merge-base", "--is-ancestor", theirs, final)  # nothing was force-pushed over theirs
    assert repo.head() == final
    assert "1.6.0" in repo.desired_files()["plugins/x.yaml"]
    assert repo.fetch() is True  # the human commit push() rebased onto is news for the caller


def test_true_conflict_keeps_our_commit_on_a_branch(repo: GitRepo, remote: Path, human: Path) -> None:
    human_commit(human, {"plugins/x.yaml": PLUGIN_X.replace("paused: false", "paused: maybe")}, "Human edit")
    ours = repo.commit({"plugins/x.yaml": PLUGIN_X.replace("paused: false", "paused: true")}, "Pause x",
                       {"Grayops-Action": "pause"})
    result = repo.push(backoff=0.01)
    assert result.pushed is False and result.conflict is not None
    assert result.conflict.files == ("plugins/x.yaml",)
    saved = result.conflict.saved_branch
    assert saved.startswith("grayops/conflict-")
    assert git(repo.path, "rev-parse", saved) == ours  # never lost
    assert repo.head() == remote_head(remote)
    assert result.pending == repo.unpushed() == 0
    assert "paused: maybe" in (repo.read("plugins/x.yaml") or "")
    assert ours not in git(remote, "log", "--all", "--format=%H")


def test_fetch_and_integrate(repo: GitRepo, human: Path) -> None:
    assert repo.fetch() is False
    theirs = human_commit(human, {"plugins/y.yaml": "kind: Plugin\n"}, "Edit y")
    assert repo.fetch() is True
    assert repo.fetch() is False
    assert repo.integrate() is None  # fast-forward
    assert repo.head() == theirs
    # Local commit plus a conflicting remote one: integrate reports it.
    repo.commit({"plugins/y.yaml": "kind: Plugin\nours: 1\n"}, "ours")
    human_commit(human, {"plugins/y.yaml": "kind: Plugin\ntheirs: 1\n"}, "theirs")
    repo.fetch()
    conflict = repo.integrate()
    assert conflict is not None and conflict.files == ("plugins/y.yaml",)
    assert repo.head() == git(human, "rev-parse", "HEAD")


def test_remote_down_keeps_commits_until_it_is_back(repo: GitRepo, remote: Path) -> None:
    away = remote.with_name("away.git")
    remote.rename(away)
    sha = repo.commit({"plugins/x.yaml": PLUGIN_X.replace("false", "true")}, "Pause x (emergency)")
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.conflict) == (False, 1, None)
    assert result.error and str(remote) in result.error
    with pytest.raises(RemoteUnavailable):
        repo.fetch()
    # A restarted reconciler reuses the clone and its unpushed commit, even with the remote down.
    again = GitRepo(str(remote), repo.workdir)
    again.ensure_clone()
    assert again.unpushed() == 1 and again.head() == sha
    away.rename(remote)
    result = again.push()
    assert (result.pushed, result.pending, result.error) == (True, 0, None)
    assert remote_head(remote) == sha


def test_ensure_clone_on_an_unreachable_remote(tmp_path: Path) -> None:
    missing = tmp_path / "missing.git"
    with pytest.raises(RemoteUnavailable, match=str(missing)):
        GitRepo(str(missing), tmp_path / "w1").ensure_clone()
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://user:s3cret@127.0.0.1:{port}/fleet.git"
    with pytest.raises(RemoteUnavailable) as info:
        GitRepo(url, tmp_path / "w2").ensure_clone()
    assert f"https://127.0.0.1:{port}/fleet.git" in str(info.value)
    assert "s3cret" not in str(info.value) + info.value.stderr
    assert not (tmp_path / "w2" / "repo").exists()
    assert redact_url("x https://u:p@h/r y ssh://git@h/r git@h:r") == "x https://h/r y ssh://h/r git@h:r"


def test_status_branch_holds_the_record_and_main_stays_clean(remote: Path, tmp_path: Path) -> None:
    repo = GitRepo(str(remote), tmp_path / "work", status_branch="grayops-status")
    repo.ensure_clone()
    main_before = remote_head(remote)
    assert repo.status_files() == {}  # a new orphan branch, not main's status/
    sha = repo.commit({"status/x.yaml": "phase: rolling\n", "reports/x.md": "# r\n"}, "status: x",
                      {"Grayops-Action": "status"}, status=True)
    assert sha is not None
    assert repo.commit({"status/x.yaml": "phase: rolling\n"}, "again", status=True) is None
    assert repo.head() == main_before
    assert git(repo.path, "status", "--porcelain") == ""
    assert repo.status_files() == {"status/x.yaml": "phase: rolling\n"}
    assert repo.read("status/x.yaml") == "phase: rolling\n"
    assert repo.unpushed() == 1
    assert repo.push().pending == 0
    assert remote_head(remote) == main_before
    assert git(remote, "ls-tree", "-r", "--name-only", "grayops-status").splitlines() == [
        "reports/x.md", "status/x.yaml"]
    assert git(remote, "rev-list", "--count", "grayops-status") == "1"  # no empty root commit
    assert repo.last_changes(["status/x.yaml"])["status/x.yaml"].action == "status"
    # A restart reuses the status tree; a fresh clone elsewhere tracks the remote branch.
    again = GitRepo(str(remote), repo.workdir, status_branch="grayops-status")
    again.ensure_clone()
    assert again.status_files() == {"status/x.yaml": "phase: rolling\n"}
    other = GitRepo(str(remote), tmp_path / "other", status_branch="grayops-status")
    other.ensure_clone()
    assert other.status_files() == {"status/x.yaml": "phase: rolling\n"}
    # Both reconcilers write the record: the second push is rebased onto the first.
    other.commit({"status/y.yaml": "phase: idle\n"}, "status: y", status=True)
    assert other.push().pending == 0
    repo.commit({"status/x.yaml": "phase: done\n"}, "status: x done", status=True)
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.conflict) == (True, 0, None)
    assert git(remote, "ls-tree", "-r", "--name-only", "grayops-status").splitlines() == [
        "reports/x.md", "status/x.yaml", "status/y.yaml"]


def test_restart_discards_uncommitted_writes(repo: GitRepo) -> None:
    (repo.path / "plugins" / "x.yaml").write_text("half written")
    GitRepo(repo.remote, repo.workdir).ensure_clone()
    assert repo.read("plugins/x.yaml") == PLUGIN_X


def test_remote_watcher_calls_back_on_push(remote: Path, human: Path) -> None:
    fired = threading.Event()
    watcher = RemoteWatcher(str(remote), fired.set)
    watcher.start()
    try:
        time.sleep(0.2)  # let the watch get established
        human_commit(human, {"plugins/x.yaml": "kind: Plugin\n"}, "change")
        assert fired.wait(2.0)
    finally:
        started = time.monotonic()
        watcher.stop()
        assert time.monotonic() - started < 1.0
    # A non-bare local repository: its .git/refs are watched.
    fired.clear()
    watcher = RemoteWatcher(f"file://{human}", fired.set)
    watcher.start()
    try:
        time.sleep(0.2)
        human_commit(human, {"plugins/x.yaml": "kind: Plugin\nv: 2\n"}, "local change", push=False)
        assert fired.wait(2.0)
    finally:
        watcher.stop()
    # Network remotes are not watched.
    net = RemoteWatcher("https://example.com/fleet.git", fired.set)
    net.start()
    assert net._thread is None
    net.stop()


def test_lock_is_exclusive_across_objects_and_reentrant(repo: GitRepo) -> None:
    other = GitRepo(repo.remote, repo.workdir)
    acquired = threading.Event()

    def take() -> None:
        with other.lock():
            acquired.set()

    with repo.lock(), repo.lock():  # re-entrant in one thread
        thread = threading.Thread(target=take)
        thread.start()
        assert not acquired.wait(0.3)
        repo.head()  # public methods take the lock again inside
    assert acquired.wait(2.0)
    thread.join()


# --- a remote that refuses, is busy, or had its history rewritten ------------------------------------------


def hook(remote: Path, script: str) -> None:
    """A pre-receive hook on `remote` (sh); it runs with the remote as its working directory."""
    path = remote / "hooks" / "pre-receive"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_a_push_refused_by_a_non_bare_remote_says_why(tmp_path: Path) -> None:
    checked_out = tmp_path / "checked-out"
    git(tmp_path, "init", "-q", "-b", "main", str(checked_out))
    human_commit(checked_out, {"grayops.yaml": "kind: Settings\n"}, "seed", push=False)
    repo = GitRepo(str(checked_out), tmp_path / "work")
    repo.ensure_clone()
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x", status=True)
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.failure) == (False, 1, "refused")
    assert result.error is not None
    assert "refused by the remote: branch is currently checked out" in result.error
    assert "refusing to update checked out branch" in result.error  # git's own words, from the remote
    assert "unreachable" not in result.error


def test_a_push_declined_by_a_hook_carries_the_hook_s_message(repo: GitRepo, remote: Path) -> None:
    hook(remote, 'echo "pushes are frozen until 18:00" >&2\nexit 1\n')
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x", status=True)
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.failure) == (False, 1, "refused")
    assert result.error == ("push of main refused by the remote: pre-receive hook declined "
                            "(pushes are frozen until 18:00)")


def test_a_human_push_landing_during_ours_is_fetched_rebased_and_retried(repo: GitRepo, remote: Path,
                                                                          human: Path) -> None:
    # The human's push lands while ours is being received: the remote fails our ref update
    # ("[remote rejected] (failed to update ref)"). That is a race like any other, not a refusal.
    human_commit(human, {"plugins/y.yaml": "kind: Plugin\nv: 2\n"}, "Edit y", push=False)
    hook(remote, f"""if [ ! -e raced ]; then
  touch raced
  for v in $(env | sed -n 's/^\\(GIT_[A-Z_]*\\)=.*/\\1/p'); do unset $v; done
  cd {human} && git push -q origin HEAD:main >&2
fi
exit 0
""")
    ours = repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x", status=True)
    assert ours is not None
    result = repo.push(backoff=0.01)
    assert (remote / "raced").exists()  # the race did happen
    assert (result.pushed, result.pending, result.error) == (True, 0, None)
    subjects = git(remote, "log", "--format=%s", "main").splitlines()
    assert subjects[:2] == ["status: x", "Edit y"]
    assert ours not in git(remote, "log", "--format=%H", "main")  # ours was rebased onto theirs, not forced


def force_push(human: Path, commit: str) -> None:
    git(human, "push", "-q", "-f", "origin", f"{commit}:main")


def test_a_force_pushed_remote_is_followed_and_our_commits_kept_on_a_branch(repo: GitRepo, remote: Path,
                                                                            human: Path) -> None:
    seed = remote_head(remote)
    git(human, "pull", "-q", "origin", "main")
    bump = human_commit(human, {"plugins/x.yaml": PLUGIN_X.replace("1.5.0", "1.6.0")}, "x 1.6.0")
    repo.fetch()
    repo.integrate()
    ours = repo.commit({"status/x.yaml": "phase: rolling 1.6.0\n"}, "status: x rolling", status=True)
    assert repo.push().pending == 0
    force_push(human, seed)  # a human rewinds main: the bump and our status are gone from the remote
    assert repo.fetch() is True
    assert repo.integrate() is None  # not a conflict: we follow the remote
    assert repo.head() == seed == remote_head(remote)
    assert "1.5.0" in repo.desired_files()["plugins/x.yaml"]
    [rewrite] = repo.take_rewrites()
    assert rewrite.branch == "main" and rewrite.saved_branch.startswith("grayops/rewritten-")
    assert git(repo.path, "rev-parse", rewrite.saved_branch) == ours  # nothing of ours is lost
    assert (rewrite.dropped, sorted(rewrite.files)) == (2, ["plugins/x.yaml", "status/x.yaml"])
    assert repo.take_rewrites() == []  # reported once
    # What we commit next goes on top of the remote's new history; the bump never comes back.
    repo.commit({"status/x.yaml": "phase: paused\n"}, "status: x paused", status=True)
    assert repo.push().pending == 0
    history = git(remote, "log", "--format=%H", "main").split()
    assert seed in history and bump not in history and ours not in history


def test_a_force_push_between_two_fetches_is_not_undone_by_our_next_push(repo: GitRepo, remote: Path,
                                                                         human: Path) -> None:
    seed = remote_head(remote)
    first = repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x rolling", status=True)
    assert first is not None
    assert repo.push().pending == 0
    force_push(human, seed)  # no fetch of ours sees it before our next push
    repo.commit({"status/x.yaml": "phase: done\n"}, "status: x done", status=True)
    result = repo.push(backoff=0.01)
    assert (result.pushed, result.pending, result.error) == (False, 0, None)
    assert remote_head(remote) == seed  # the rewound history stands
    [rewrite] = repo.take_rewrites()
    assert rewrite.dropped == 2 and first in git(repo.path, "log", "--format=%H", rewrite.saved_branch)


def test_a_rewrite_seen_by_a_command_sharing_the_clone_still_reaches_the_reconciler(repo: GitRepo, remote: Path,
                                                                                    human: Path) -> None:
    seed = remote_head(remote)
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x rolling", status=True)
    assert repo.push().pending == 0
    force_push(human, seed)
    command = GitRepo(repo.remote, repo.workdir)  # e.g. `grayops pause --workdir` on the reconciler's workdir
    command.fetch()
    assert command.integrate() is None
    assert [r.dropped for r in repo.take_rewrites()] == [1]


# --- the workdir: one reconciler, and a clone deleted under it ---------------------------------------------


def test_the_workdir_is_held_by_one_reconciler_and_shared_with_commands(repo: GitRepo) -> None:
    repo.hold_workdir()
    second = GitRepo(repo.remote, repo.workdir)
    with pytest.raises(WorkdirBusy) as busy:
        second.hold_workdir()
    assert busy.value.pid == os.getpid()
    assert f"pid {os.getpid()}" in str(busy.value) and str(repo.workdir) in str(busy.value)
    second.ensure_clone()  # commands keep using the clone
    assert second.head() == repo.head()
    repo.release_workdir()
    second.hold_workdir()
    second.release_workdir()


def test_a_deleted_workdir_is_cloned_again_and_stays_held(repo: GitRepo, remote: Path) -> None:
    repo.hold_workdir()
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "status: x rolling", status=True)
    import shutil

    shutil.rmtree(repo.workdir)
    assert repo.lost()
    repo.ensure_clone()
    assert not repo.lost()
    assert repo.head() == remote_head(remote) and repo.unpushed() == 0  # the unpushed commit went with it
    assert repo.status_files() == {"status/x.yaml": "phase: idle\n"}
    with pytest.raises(WorkdirBusy):
        GitRepo(repo.remote, repo.workdir).hold_workdir()  # the new workdir is ours too
    repo.release_workdir()


def test_git_identity_variables_of_the_environment_do_not_change_who_grayops_commits_as(
        repo: GitRepo, remote: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "Mallory")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "mallory@example.com")
    sha = repo.commit({"status/x.yaml": "a: 1\n"}, "status", status=True)
    assert sha is not None
    who = subprocess.run(["git", "log", "-1", "--format=%an <%ae> / %cn <%ce>", sha], cwd=repo.path,
                         capture_output=True, text=True, check=True, env={**os.environ}).stdout.strip()
    assert who == f"{repo.author_name} <{repo.author_email}> / {repo.author_name} <{repo.author_email}>"


def _push_tree_with_dotdot(human: Path) -> str:
    """A commit whose tree holds a `..` entry, made with plumbing (porcelain refuses it) and pushed."""
    blob = subprocess.run(["git", "hash-object", "-w", "--stdin"], cwd=human, input="evil\n", capture_output=True,
                          text=True, check=True).stdout.strip()
    tree = subprocess.run(["git", "mktree"], cwd=human, input=f"100644 blob {blob}\t..\n", capture_output=True,
                          text=True, check=True).stdout.strip()
    commit = git(human, "commit-tree", tree, "-p", "HEAD", "-m", "evil").strip()
    git(human, "push", "-q", "origin", f"{commit}:main")
    return commit


def test_a_history_git_would_refuse_to_check_out_is_refused_at_fetch_and_the_clone_stays(
        repo: GitRepo, remote: Path, human: Path, tmp_path: Path) -> None:
    before = repo.head()
    _push_tree_with_dotdot(human)
    with pytest.raises(RemoteUnavailable, match=r"refused.*'\.\.'"):
        repo.fetch()
    assert repo.integrate() is None and repo.head() == before  # nothing of it came in
    fresh = GitRepo(str(remote), tmp_path / "fresh")
    with pytest.raises(RemoteUnavailable, match=r"refused.*'\.\.'"):
        fresh.ensure_clone()
