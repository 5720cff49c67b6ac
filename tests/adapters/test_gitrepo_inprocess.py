"""Status and report commits written in-process (GitPython objects, the branch moved under the lock): the commit
is the one git makes, the branch moves only from where it was read, the clone stays as git leaves it, and a clone
that signs commits still signs them (README "Git as the record", "Supply chain")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.adapters.gitrepo import GitRepo
from reconciler.adapters.trust.commits import signing_config
from tests.adapters.test_gitrepo import PLUGIN_X, git, human_commit
from tests.conftest import wait_for
from tests.trust.signers import ssh_signer

TRAILERS = [("Grayops-Rollout", "x-r1"), ("Grayops-Action", "start"), ("Requested-By", "alice <a@x.io>"),
            ("Desired-Commit", "c0ffee")]


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "human"))
    human_commit(tmp_path / "human", {"grayops.yaml": "kind: Settings\n", "plugins/x.yaml": PLUGIN_X,
                                      "status/x.yaml": "phase: idle\n", "status/y.yaml": "phase: idle\n"}, "seed")
    return bare


def clone(remote: Path, workdir: Path, **options: object) -> GitRepo:
    repo = GitRepo(str(remote), workdir, **options)  # type: ignore[arg-type]
    repo.ensure_clone()
    return repo


def raw(repo_path: Path, commit: str) -> str:
    return git(repo_path, "cat-file", "commit", commit)


def git_commit_like(path: Path, made: str, files: dict[str, str | None], message: str) -> str:
    """The commit `git commit` makes of `files` on the clone at `path`, at the time of commit `made` (its text)."""
    for rel, text in files.items():
        if text is None:
            git(path, "rm", "-q", "--", rel)
        else:
            (path / rel).parent.mkdir(parents=True, exist_ok=True)
            (path / rel).write_text(text)
            git(path, "add", "--", rel)
    when = {line.split(" ")[0]: " ".join(line.split(" ")[-2:]) for line in made.splitlines()
            if line.startswith(("author ", "committer "))}
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_DATE=when["author"], GIT_COMMITTER_DATE=when["committer"])
    subprocess.run(["git", "commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-"], cwd=path,
                   input=message, text=True, env=env, check=True, capture_output=True)
    return git(path, "rev-parse", "HEAD")


def spawns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every process started from now on in this test's process (GitPython's included)."""
    started: list[list[str]] = []
    original = subprocess.Popen.__init__

    def counting(popen: subprocess.Popen[bytes], args: list[str], *rest: Any, **kwargs: Any) -> None:
        started.append([str(a) for a in args])
        original(popen, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", counting)
    return started


def test_a_status_commit_made_in_process_is_the_commit_git_makes(remote: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ours = clone(remote, tmp_path / "ours", author_name="grayops", author_email="grayops@fleet.example")
    theirs = clone(remote, tmp_path / "theirs", author_name="grayops", author_email="grayops@fleet.example")
    git(ours.path, "pack-refs", "--all")  # the branch read from packed-refs, then written loose over it
    steps: list[dict[str, str | None]] = [
        {"status/x.yaml": "phase: rolling\n"},  # a file that changes
        {"status/z.yaml": "phase: new\n", "reports/x/1.0.0-r1.md": "# x\n\nwent well\n"},  # new dirs and files
        {"status/y.yaml": None},  # a deletion
        {"reports/x/1.0.0-r1.md": None},  # the last file of a directory: the directory goes
    ]
    assert ours.status_files()  # starts the object database's two long-lived processes
    started = spawns(monkeypatch)
    for n, files in enumerate(steps):
        message = f"x 1.0.0: step {n}  "
        made = ours.commit(files, message, TRAILERS, status=True)
        assert made is not None
        assert started == []  # no git process for a status commit
        monkeypatch.undo()
        expected = git_commit_like(theirs.path, raw(ours.path, made), files, _message_of(made, ours.path))
        assert raw(ours.path, made) == raw(theirs.path, expected)  # tree, parent, author, committer, message
        assert made == expected
        started = spawns(monkeypatch)
    monkeypatch.undo()
    assert git(ours.path, "log", "-1", "--format=%(trailers:key=Requested-By,valueonly)").strip() == "alice <a@x.io>"
    assert git(ours.path, "reflog", "-1", "--format=%gs") == "commit: x 1.0.0: step 3"
    git(ours.path, "fsck", "--strict", "--no-dangling")
    assert ours.push().pending == 0
    # the index caught up with the commits (at the push, as at any git command that uses it): a clean clone
    assert git(ours.path, "status", "--porcelain") == ""
    assert git(ours.path, "diff", "--cached", "--name-only") == ""
    assert ours.status_files() == {"status/x.yaml": "phase: rolling\n", "status/z.yaml": "phase: new\n"}


def _message_of(commit: str, path: Path) -> str:
    return git(path, "log", "-1", "--format=%B", commit) + "\n"


def test_the_first_status_commit_of_a_new_status_branch_is_its_root(remote: Path, tmp_path: Path) -> None:
    ours = clone(remote, tmp_path / "ours", status_branch="grayops/status")
    made = ours.commit({"status/x.yaml": "phase: rolling\n"}, "x: started", TRAILERS, status=True)
    again = ours.commit({"status/x.yaml": "phase: baking\n"}, "x: baking", TRAILERS, status=True)
    assert made is not None and again is not None
    status_tree = ours.workdir / "status-tree"
    assert git(status_tree, "rev-list", "--parents", "grayops/status").splitlines() == [f"{again} {made}", made]
    assert git(status_tree, "ls-tree", "-r", "--name-only", again) == "status/x.yaml"
    assert git(status_tree, "reflog", "-2", "--format=%gs").splitlines() == ["commit: x: baking",
                                                                            "commit (initial): x: started"]
    assert ours.read("status/x.yaml") == "phase: baking\n"
    assert ours.push().pending == 0
    assert git(remote, "show", "grayops/status:status/x.yaml") == "phase: baking"
    assert git(status_tree, "diff", "--cached", "--name-only") == ""
    assert git(status_tree, "status", "--porcelain", "--untracked-files=no") == ""


def test_the_branch_moves_only_from_where_the_commit_was_built(remote: Path, tmp_path: Path, human: Path) -> None:
    ours = clone(remote, tmp_path / "ours")
    before = ours.head()
    elsewhere = human_commit(human, {"plugins/x.yaml": PLUGIN_X.replace("1.5.0", "1.6.0")}, "upgrade")
    ours.fetch()
    main = ours.path / ".git" / "refs" / "heads" / "main"
    # the branch is no longer at `before`: a commit built on `before` must not land
    assert not ours._move_ref(ours._main, "refs/heads/main", elsewhere, before, "test\n")
    assert git(ours.path, "rev-parse", "main") == before
    assert not main.with_name("main.lock").exists()
    # a lock held by someone else's git: not moved either, and the lock is theirs to remove
    main.with_name("main.lock").write_text("")
    assert not ours._move_ref(ours._main, "refs/heads/main", before, elsewhere, "test\n")
    assert main.with_name("main.lock").exists()
    main.with_name("main.lock").unlink()
    assert ours._move_ref(ours._main, "refs/heads/main", before, elsewhere, "test\n")
    assert git(ours.path, "rev-parse", "main") == elsewhere


def test_a_commit_after_the_branch_moved_under_the_clone_is_made_by_git(remote: Path, tmp_path: Path) -> None:
    ours = clone(remote, tmp_path / "ours")
    base = ours.head()
    # Someone with a shell in the clone detaches HEAD: git commits there, as it always did.
    git(ours.path, "checkout", "-q", "--detach")
    made = ours.commit({"status/x.yaml": "phase: rolling\n"}, "x: rolling", TRAILERS, status=True)
    assert made is not None and git(ours.path, "rev-parse", "HEAD") == made
    assert git(ours.path, "rev-parse", "main") == base


@pytest.fixture
def human(remote: Path) -> Path:
    return remote.parent / "human"


def test_in_process_commits_leave_the_clone_as_git_would_for_every_git_command(remote: Path, tmp_path: Path,
                                                                               human: Path) -> None:
    ours = clone(remote, tmp_path / "ours")
    for phase in ("rolling", "baking"):
        assert ours.commit({"status/x.yaml": f"phase: {phase}\n"}, f"x: {phase}", TRAILERS, status=True)
    # a human's commit arrives: our push is rejected, fetched and rebased (a git command using the index)
    human_commit(human, {"plugins/x.yaml": PLUGIN_X.replace("1.5.0", "1.6.0")}, "upgrade")
    result = ours.push(backoff=0.01)
    assert (result.pushed, result.pending, result.conflict) == (True, 0, None)
    assert git(ours.path, "status", "--porcelain") == ""
    assert git(ours.path, "diff", "--cached", "--name-only") == ""
    assert git(remote, "show", "main:status/x.yaml") == "phase: baking"
    assert git(remote, "show", "main:plugins/x.yaml") == PLUGIN_X.replace("1.5.0", "1.6.0").strip()
    # a commit of a fleet file (by git) right after a status commit (in-process) sees a clean index
    assert ours.commit({"status/x.yaml": "phase: done\n"}, "x: done", TRAILERS, status=True)
    paused = ours.commit({"plugins/x.yaml": PLUGIN_X.replace("paused: false", "paused: true")}, "pause x")
    assert paused is not None
    assert git(ours.path, "show", "--name-only", "--format=", paused) == "plugins/x.yaml"
    assert git(ours.path, "status", "--porcelain") == ""


def test_a_process_killed_while_making_status_commits_leaves_a_clone_that_resumes(remote: Path,
                                                                                   tmp_path: Path) -> None:
    workdir = tmp_path / "ours"
    clone(remote, workdir)
    script = textwrap.dedent(f"""
        import itertools
        from reconciler.adapters.gitrepo import GitRepo
        repo = GitRepo({str(remote)!r}, __import__("pathlib").Path({str(workdir)!r}))
        repo.ensure_clone()
        for n in itertools.count():
            repo.commit({{"status/x.yaml": f"n: {{n}}\\n", f"reports/x/{{n % 7}}.md": f"{{n}}\\n"}}, f"x: {{n}}",
                        status=True)
    """)
    writer = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    try:
        wait_for(lambda: int(git(workdir / "repo", "rev-list", "--count", "main")) > 40, timeout=120,
                 what="status commits made")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    resumed = clone(remote, workdir)
    assert git(resumed.path, "status", "--porcelain") == ""
    assert git(resumed.path, "diff", "--cached", "--name-only") == ""
    git(resumed.path, "fsck", "--strict", "--no-dangling")
    n = int(resumed.status_files()["status/x.yaml"].split()[1])
    assert resumed.commit({"status/x.yaml": f"n: {n + 1}\n"}, "x: after", status=True) is not None
    assert resumed.push().pending == 0
    assert git(remote, "show", "main:status/x.yaml") == f"n: {n + 1}"


def test_a_temporary_file_left_by_a_write_killed_midway_is_removed_when_the_clone_resumes(remote: Path,
                                                                                          tmp_path: Path) -> None:
    """A kill between a record file's temporary write and its rename (it happened under load in the test above)
    leaves `.<name>.<random>` beside it; the resumed clone is clean and goes on committing."""
    workdir = tmp_path / "ours"
    first = clone(remote, workdir)
    assert first.commit({"status/x.yaml": "n: 1\n", "reports/x/1.md": "1\n"}, "x: 1", status=True)
    (first.path / "reports" / "x" / ".1.md.cu0rra50").write_text("half")
    (first.path / "status" / ".x.yaml.k2j9x_01").write_text("")
    resumed = clone(remote, workdir)
    assert git(resumed.path, "status", "--porcelain") == ""
    assert resumed.commit({"status/x.yaml": "n: 2\n"}, "x: 2", status=True) is not None


def test_a_clone_that_signs_signs_its_status_commits(remote: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    key = ssh_signer(tmp_path, "grayops").key

    def signed(repo: GitRepo) -> bool:
        made = repo.commit({"status/x.yaml": f"at: {repo.workdir.name}\n"}, "x: status", TRAILERS, status=True)
        assert made is not None
        return "\ngpgsig " in raw(repo.path, made)

    assert signed(clone(remote, tmp_path / "key", signing=signing_config(str(key)).config))
    assert not signed(clone(remote, tmp_path / "plain"))
    # git's own configuration as it stands (signing=None): a ~/.gitconfig that signs is obeyed, read in-process
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(f"[gpg]\n\tformat = ssh\n[user]\n\tsigningkey = {key}\n"
                                     "[commit]\n\tgpgsign = true\n")
    monkeypatch.setenv("HOME", str(home))
    for name in [k for k in os.environ if k.startswith("GIT_CONFIG") or k == "XDG_CONFIG_HOME"]:
        monkeypatch.delenv(name)
    assert signed(clone(remote, tmp_path / "as-configured", signing=None))
    (home / ".gitconfig").write_text("[commit]\n\tgpgsign = false\n")
    assert not signed(clone(remote, tmp_path / "not-configured", signing=None))


def test_entries_added_replaced_and_removed_in_process_keep_gits_order(remote: Path, tmp_path: Path) -> None:
    """A tree is changed where the commit changes it, not sorted whole again: names that sort differently as a
    file and as a directory ("x.md", "x-y.md", "x0.md" around the directory "x/") still come in git's order."""
    ours = clone(remote, tmp_path / "ours", author_name="grayops", author_email="grayops@fleet.example")
    theirs = clone(remote, tmp_path / "theirs", author_name="grayops", author_email="grayops@fleet.example")
    steps: list[dict[str, str | None]] = [
        {"reports/x.md": "a\n", "reports/x0.md": "b\n"},
        {"reports/x/1.md": "c\n", "reports/x-y.md": "d\n"},  # a directory between files, a file before it
        {"reports/x.md": "e\n", "reports/x/1.md": "f\n", "status/a-b.yaml": "g\n", "status/ab.yaml": "h\n"},
        {"reports/x/1.md": None, "reports/x/2.md": "i\n", "status/x.yaml": None},
        {"reports/x.md": None, "reports/x/2.md": None, "status/a.yaml": "j\n"},
    ]
    for n, files in enumerate(steps):
        made = ours.commit(files, f"step {n}", TRAILERS, status=True)
        assert made is not None
        expected = git_commit_like(theirs.path, raw(ours.path, made), files, _message_of(made, ours.path))
        assert made == expected, f"step {n}: {raw(ours.path, made)} != {raw(theirs.path, expected)}"
    git(ours.path, "fsck", "--strict", "--no-dangling")
