"""Read-only views of a fleet repository for `validate`, `plan`, `status` and `report`: files by path.

A local working tree is read as it is on disk (uncommitted edits included, which is what `validate` wants);
a ref is read from git history; anything else (a bare repository or a URL) is cloned shallowly into a
temporary directory first.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from reconciler.adapters.gitrepo import GitError, RemoteUnavailable

TEXT_SUFFIXES = (".yaml", ".yml", ".md")


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise GitError(done.stderr.strip() or f"git {args[0]} failed")
    return done.stdout


def is_worktree(path: str) -> bool:
    return (Path(path) / ".git").exists()


def read_tree(root: Path) -> dict[str, str]:
    """Every YAML and Markdown file below `root` (outside .git), by '/'-separated relative path."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".git") or not path.is_file() or not rel.endswith(TEXT_SUFFIXES):
            continue
        files[rel] = path.read_text(encoding="utf-8", errors="replace")
    return files


def read_ref(repo: Path, ref: str) -> dict[str, str]:
    """The files of commit `ref` in the repository at `repo`."""
    names = _git("ls-tree", "-r", "--name-only", ref, cwd=repo).splitlines()
    return {name: _git("show", f"{ref}:{name}", cwd=repo) for name in names if name.endswith(TEXT_SUFFIXES)}


def read_repo(repo: str, branch: str | None = None) -> dict[str, str]:
    """A working tree as on disk when `repo` is one and no branch is asked for; else a shallow clone's files."""
    if branch is None and Path(repo).is_dir() and is_worktree(repo):
        return read_tree(Path(repo))
    with tempfile.TemporaryDirectory(prefix="grayops-read-") as tmp:
        args = ["clone", "--quiet", "--depth", "1"]
        if branch:
            args += ["--branch", branch]
        try:
            _git(*args, repo, tmp)
        except GitError as err:
            raise RemoteUnavailable(f"cannot read {repo}{' branch ' + branch if branch else ''}: {err}") from None
        return read_tree(Path(tmp))
