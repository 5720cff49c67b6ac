"""Reading a fleet repository's record for the read-only commands (status, report): its files and its status/
and reports/ files, from a path, a URL, or a local clone fetched first (README "The CLI")."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Mapping
from pathlib import Path

from reconciler.adapters.snapshot import is_worktree, read_ref, read_repo
from reconciler.cli.errors import say
from reconciler.core.layout import SETTINGS_PATH, is_record, status_branch, status_path
from reconciler.core.model import RolloutState
from reconciler.core.status import load_status


def read_records(source: str, fetch: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """(the fleet's files, its status/ and reports/ files); a local clone is fetched first unless `fetch` is off.
    Raises GitError."""
    fetched = fetched_clone(source) if fetch else None
    files = read_ref(Path(source), fetched[0]) if fetched else read_repo(source)
    return files, status_files(source, files, fetched[1] if fetched else None)


def recorded_status(records: Mapping[str, str], plugin: str) -> RolloutState | None:
    """The plugin's status in `records` (as read_records gives them), None when it has none. Raises
    StatusUnreadable."""
    text = records.get(status_path(plugin))
    return load_status(text, status_path(plugin)) if text else None


def record_source(args: argparse.Namespace) -> tuple[str, bool]:
    """(where to read, whether to fetch it first): --workdir is the reconciler's own clone, read as it stands; a
    human's local clone given as --repo is fetched first."""
    if args.workdir:
        return str(Path(args.workdir) / "repo"), False
    return args.repo, True


def status_files(repo: str, files: dict[str, str], remote: str | None = None) -> dict[str, str]:
    """status/ files: from the same files, or from the status branch grayops.yaml names (read at `remote`'s copy
    of it when the repository is a local clone that was fetched)."""
    branch = status_branch(files.get(SETTINGS_PATH))
    source: Mapping[str, str]
    if branch and remote:
        source = read_ref(Path(repo), f"{remote}/{branch}")
    else:
        source = read_repo(repo, branch=branch) if branch else files
    return {p: t for p, t in source.items() if is_record(p)}


def fetched_clone(repo: str) -> tuple[str, str] | None:
    """A local clone is fetched and read at its remote's copy of the checked-out branch (its upstream, else
    origin's branch of the same name), where the reconciler pushes status: (that ref, the remote). None for
    anything else, or when it cannot be fetched: the clone is then read as it is on disk, and stderr says so."""
    if not (Path(repo).is_dir() and is_worktree(repo)):
        return None

    def git(*args: str) -> str | None:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    branch = git("branch", "--show-current")
    remotes = (git("remote") or "").split()
    remote = git("config", f"branch.{branch}.remote") or ("origin" if "origin" in remotes else None)
    if not branch or remote is None:
        say(f"{repo} is read as it is on disk (no remote to fetch)")
        return None
    if git("fetch", "--quiet", remote) is None:
        say(f"{repo} is read as it is on disk ({remote} could not be fetched)")
        return None
    ref = git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}") or f"{remote}/{branch}"
    if git("rev-parse", "--verify", "--quiet", ref) is None:
        say(f"{repo} is read as it is on disk ({ref} does not exist)")
        return None
    return ref, remote
