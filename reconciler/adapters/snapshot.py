"""Read-only views of a fleet repository for `validate`, `plan`, `status` and `report`: files by path.

The same rules as the daemon (README "Limits"): what is read is decided by `fleet.survey` from a listing that
never follows a symlink, sizes are checked before anything is read, and each file that cannot be read becomes an
error in the returned `RevisionFiles` instead of an exception.

A local working tree is read as it is on disk (uncommitted edits included, which is what `validate` wants): its
entries are listed with lstat and only regular files are opened (O_NOFOLLOW, O_NONBLOCK: a FIFO never blocks).
A ref is read from git objects; anything else (a bare repository or a URL) is cloned shallowly without a
checkout into a temporary directory and read from its objects.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

from reconciler.adapters.gitrepo import GitError, RemoteUnavailable, parse_tree_listing, read_blobs, read_plain_file
from reconciler.core.fleet import (
    MAX_FILE_BYTES,
    MAX_RECORD_BYTES,
    EntryKind,
    FleetError,
    RevisionFiles,
    Survey,
    TreeEntry,
    decode_text,
    survey,
)

TEXT_SUFFIXES = (".yaml", ".yml", ".md")  # of the record (status/ and reports/), what the views read


def _git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, encoding="utf-8", errors="replace",
                          check=False)
    if done.returncode != 0:
        raise GitError(done.stderr.strip() or f"git {args[0]} failed")
    return done.stdout


def is_worktree(path: str) -> bool:
    return (Path(path) / ".git").exists()


def read_tree(root: Path) -> RevisionFiles:
    """The fleet files and the record (status/, reports/) of the working tree at `root`, as on disk."""
    entries, errors = _walk(root)
    found = survey(entries)
    files: dict[str, str] = {}
    errors += found.errors
    for entry, limit in _wanted(found):
        data = read_plain_file(root / entry.path, limit)
        text = decode_text(entry.path, data) if isinstance(data, bytes) else FleetError(entry.path, 0, "", data)
        if isinstance(text, str):
            files[entry.path] = text
        elif entry in found.desired:  # a record file that cannot be read is left out of the views
            errors.append(text)
    return RevisionFiles(files, errors)


def read_ref(repo: Path, ref: str) -> RevisionFiles:
    """The files of commit `ref` in the repository at `repo`, from git objects."""
    entries, oids = parse_tree_listing(_git("ls-tree", "-r", "-z", "--long", ref, cwd=repo))
    found = survey(entries)
    files, errors = read_blobs(repo, found.desired, oids, MAX_FILE_BYTES)
    records = [entry for entry, limit in _wanted(found) if limit == MAX_RECORD_BYTES]
    files.update(read_blobs(repo, records, oids, MAX_RECORD_BYTES)[0])
    return RevisionFiles(files, [*found.errors, *errors])


def read_repo(repo: str, branch: str | None = None) -> RevisionFiles:
    """A working tree as on disk when `repo` is one and no branch is asked for; else a shallow clone's HEAD."""
    if branch is None and Path(repo).is_dir() and is_worktree(repo):
        return read_tree(Path(repo))
    with tempfile.TemporaryDirectory(prefix="grayops-read-") as tmp:
        args = ["clone", "--quiet", "--depth", "1", "--no-checkout"]
        if branch:
            args += ["--branch", branch]
        try:
            _git(*args, repo, tmp)
        except GitError as err:
            raise RemoteUnavailable(f"cannot read {repo}{' branch ' + branch if branch else ''}: {err}") from None
        try:
            _git("rev-parse", "--verify", "--quiet", "HEAD^{commit}", cwd=Path(tmp))
        except GitError:
            return RevisionFiles({})  # an empty repository
        return read_ref(Path(tmp), "HEAD")


def _wanted(found: Survey) -> list[tuple[TreeEntry, int]]:
    """What the views read, with the size limit of each: every fleet file, and the record's text files."""
    records = [(entry, MAX_RECORD_BYTES) for entry in found.records if entry.path.endswith(TEXT_SUFFIXES)]
    return [(entry, MAX_FILE_BYTES) for entry in found.desired] + records


def _walk(root: Path) -> tuple[list[TreeEntry], list[FleetError]]:
    """Every entry below `root` by lstat, never following a symlink; hidden ones (.git, .github) are skipped."""
    entries: list[TreeEntry] = []
    errors: list[FleetError] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        try:
            with os.scandir(root / rel) as scan:
                items = [(item.name, item.stat(follow_symlinks=False)) for item in scan]
        except OSError as err:
            errors.append(FleetError(rel or ".", 0, "", f"cannot be read: {err.strerror}"))
            continue
        for name, info in items:
            path = f"{rel}/{name}" if rel else name
            if name.startswith("."):
                continue
            kind = _kind(info.st_mode)
            if kind is EntryKind.DIRECTORY:
                pending.append(path)
            else:
                entries.append(TreeEntry(path, kind, info.st_size))
    return entries, errors


def _kind(mode: int) -> EntryKind:
    if stat.S_ISREG(mode):
        return EntryKind.FILE
    if stat.S_ISDIR(mode):
        return EntryKind.DIRECTORY
    if stat.S_ISLNK(mode):
        return EntryKind.SYMLINK
    if stat.S_ISFIFO(mode):
        return EntryKind.FIFO
    if stat.S_ISSOCK(mode):
        return EntryKind.SOCKET
    return EntryKind.DEVICE
