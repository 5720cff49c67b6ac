"""The reconciler's own clone of the fleet repository: read the desired state, commit the record, push.

Owns everything the reconciler does with git (README "Git as the record"): cloning into `workdir/repo`,
fetching, bringing local commits onto the remote branch (fast-forward or rebase, never a merge commit, never a
force-push), following a remote whose history a human rewrote, committing files with trailers, pushing with
retry, reading who last changed a file, and watching a local remote for new pushes (`RemoteWatcher`).

Layout of `workdir`:
    repo/               the clone; its branch `branch` holds the desired state (and the record when
                        `status_branch` is None)
    status-tree/        a second worktree on `status_branch` holding `status/` and `reports/` (only when set)
    .grayops.lock       flock'ed by every public method, so a CLI command and the daemon can share the clone
    .grayops-run.lock   flock'ed by `grayops run` for its lifetime (`hold_workdir`), its pid inside: one
                        reconciler per workdir

In the clone, `refs/grayops/synced/<branch>` is the remote commit last integrated or pushed: when it is no longer
an ancestor of the fetched remote branch, the remote's history was rewritten (a force-push). Our commits are then
kept on `grayops/rewritten-*`, the branch follows the remote, and a notice waits in `.git/grayops-rewrites` for
`take_rewrites()` (whichever process sharing the clone integrated first, the reconciler hears of it).

Reads of refs, trees and files, and status and report commits, need no git process (README "Git as the
record"): refs are read from their files, objects through GitPython's long-lived `git cat-file --batch` (`_Objects`),
and a status commit's blob, tree and commit objects are written in-process, the branch moved from the commit it was
built on only (compare-and-swap under the workdir lock). Such a commit leaves the index behind for its paths (noted
in `<git dir>/grayops-index-behind`); one `git reset -- <paths>` brings it up to date before the next git command
that uses the index, and at each push. A clone that signs commits, or whose configuration git would apply in a way
the writer does not reproduce, gets `git commit` as before.

Every git command goes through `GitRepo._git` (subprocess, `git` on PATH), which is the one place where a
failed command becomes an exception:

    GitError                  a git command failed (the message has the command and git's stderr)
    ├── RemoteUnavailable     the remote could not be reached (clone, fetch or push could not connect,
    │                         authentication failed, the repository is gone, or a network timeout)
    ├── UnsafePath            commit() would write through a symlink in the clone (README "Limits")
    └── MergeConflict         our local commits do not rebase cleanly onto the remote branch; raised by
                              the rebase step and turned into a `ConflictInfo` by `integrate()` and `push()`
    WorkdirBusy               (not a GitError) another `grayops run` holds the workdir; raised by `hold_workdir()`

`push()` never raises for a down remote, a refusal or a conflict: it reports them in its `PushResult`
(`failure` says which), and the commits stay local until a later call pushes them. Remote URLs are stripped of
`user:password@` before they appear in a log line or an exception message.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar, cast
from urllib.parse import unquote, urlparse

import git as gitpython
import watchfiles
from git.objects.fun import tree_entries_from_data, tree_to_stream
from gitdb.base import IStream
from gitdb.db import LooseObjectDB

from reconciler.core.effects import Change
from reconciler.core.fleet import (
    MAX_FILE_BYTES,
    MAX_RECORD_BYTES,
    EntryKind,
    FleetError,
    RevisionFiles,
    TreeEntry,
    decode_text,
    show_path,
    survey,
)
from reconciler.core.layout import RECORD_DIRECTORIES, REPORTS_DIRECTORY, STATUS_DIRECTORY, YAML_SUFFIXES
from reconciler.core.people import is_own
from reconciler.core.text import MESSAGE_LIMIT, one_line

__all__ = [
    "ConflictInfo",
    "GitError",
    "GitRepo",
    "MergeConflict",
    "PushResult",
    "RemoteUnavailable",
    "RemoteWatcher",
    "Rewrite",
    "UnsafePath",
    "WorkdirBusy",
    "local_remote_path",
    "redact_url",
]

log = logging.getLogger(__name__)

# A network command that takes longer than this is treated as an unreachable remote.
NETWORK_TIMEOUT = 120.0
CLONE_TIMEOUT = 900.0
MANY_PATHS = 64  # more paths than this are looked for in a `git log` of their directories
STATUS_PREFIXES = RECORD_DIRECTORIES  # what lives on the status branch when one is configured
_RECORD_TOPS = frozenset(d.rstrip("/") for d in RECORD_DIRECTORIES)
_CONFLICT_PREFIX = "grayops/conflict-"
_REWRITTEN_PREFIX = "grayops/rewritten-"
RUN_LOCK = ".grayops-run.lock"
_REWRITES_FILE = "grayops-rewrites"  # in the clone's git dir: rewrites followed, not yet reported
# A remote that failed our ref update because another push moved it meanwhile: a race, retried like a rejection.
_TRANSIENT_REFUSALS = ("failed to update ref", "failed to lock")
# Variables that would point git at another repository than the one we pass with cwd (e.g. inside a hook).
_REPO_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
             "GIT_NAMESPACE", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CEILING_DIRECTORIES",
             # who grayops commits as is its own configuration, whatever the shell that started it says
             "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_AUTHOR_DATE", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL",
             "GIT_COMMITTER_DATE")
# The type bits of a tree entry's mode (as `git ls-tree` prints it, in octal); a gitlink (submodule) is 160000.
_GIT_TYPES = {stat.S_IFREG: EntryKind.FILE, stat.S_IFLNK: EntryKind.SYMLINK, stat.S_IFDIR: EntryKind.DIRECTORY,
              0o160000: EntryKind.SUBMODULE}
_T = TypeVar("_T")
_OBJECTS_KEPT = 4096  # trees and commit headers kept in memory by the object database
_TREE_ENTRIES_KEPT = 1 << 20  # tree entries kept in all (a status/ of 10,000 files: a hundred of its trees)
_SIZES_KEPT = 1 << 17  # blob sizes kept (a few MB): a fleet repository's every file, listed without asking git
_TREE_MODE, _FILE_MODE, _FILE_MODES = 0o40000, 0o100644, (0o100644, 0o100755)
_FULL_ID = re.compile(r"[0-9a-f]{40}")
_OWN_REFS = ("refs/heads/", "refs/remotes/", "refs/grayops/")  # refs that always name a commit
# git commands that read or write the index: the index catches up with in-process commits before they run
_INDEX_COMMANDS = frozenset({"add", "checkout", "cherry-pick", "commit", "diff", "ls-files", "merge", "read-tree",
                             "rebase", "reset", "restore", "rm", "stash", "status", "switch"})
_INDEX_BEHIND = "grayops-index-behind"  # in a tree's git dir: paths committed in-process, index not yet updated
# Leading and trailing characters git strips from a name or email (its "crud"): such an identity is left to git.
_CRUD = " .,:;<>\"\\'\t\n"
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")


def redact_url(text: str) -> str:
    """`text` with the `user:password@` part of every URL in it removed."""
    return _USERINFO.sub(r"\1", text)


# --- errors and results -------------------------------------------------------------------------------------


class GitError(Exception):
    """A git command failed."""

    def __init__(self, message: str, *, command: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = "") -> None:
        super().__init__(redact_url(message))
        self.command = tuple(redact_url(part) for part in command)
        self.returncode = returncode
        self.stderr = redact_url(stderr)


class RemoteUnavailable(GitError):
    """The remote could not be reached; local commits are kept and pushed later."""


class UnsafePath(GitError):
    """A path to write runs through a symlink (or a file where a directory belongs) in the clone: never written."""


class MergeConflict(GitError):
    """Local commits conflict with the remote branch in `files`."""

    def __init__(self, message: str, files: Sequence[str]) -> None:
        super().__init__(message)
        self.files = tuple(files)


class ProposalExists(GitError):
    """A proposal's branch is already on the remote (or the remote refused it): nothing was pushed."""


EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's id of the empty tree


class WorkdirBusy(Exception):
    """Another process holds the workdir for its lifetime (a second `grayops run` on it would act twice)."""

    def __init__(self, workdir: Path, pid: int | None) -> None:
        holder = f"pid {pid}" if pid is not None else "a process that has not written its pid yet"
        super().__init__(f"{workdir} is in use by another grayops run ({holder}); one reconciler per workdir")
        self.workdir = workdir
        self.pid = pid


@dataclass(frozen=True)
class ConflictInfo:
    files: tuple[str, ...]  # paths that conflicted, relative to the tree
    saved_branch: str  # local branch that keeps the commits that could not be rebased


@dataclass(frozen=True)
class Rewrite:
    """The remote's history of `branch` was rewritten (force-pushed); the clone now follows it."""

    branch: str
    saved_branch: str  # local branch that keeps what we had: the commits the remote dropped, and our unpushed ones
    files: tuple[str, ...]  # paths whose content differs between what we had and the remote now
    dropped: int  # our commits (pushed before, or not yet) that are no longer on the branch


PushFailure = Literal["unreachable", "refused", "busy", "conflict"]


@dataclass(frozen=True)
class PushResult:
    pushed: bool  # this call pushed at least one commit
    pending: int  # local commits not yet on the remote after this call
    conflict: ConflictInfo | None = None
    error: str | None = None
    # Why commits were left unpushed: the remote could not be reached; it refused them (a hook, a checked-out
    # branch: a human must act); it kept moving under us (retry later); or a conflict (see `conflict`).
    failure: PushFailure | None = None


@dataclass(frozen=True)
class _Run:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class _Tree:
    """One working tree and the branch checked out in it."""

    path: Path
    branch: str


# --- the clone ----------------------------------------------------------------------------------------------


class GitRepo:
    """The reconciler's clone. Call `ensure_clone()` before anything else."""

    def __init__(self, remote: str, workdir: Path, branch: str = "main", status_branch: str | None = None,
                 author_name: str = "grayops", author_email: str = "grayops@localhost",
                 signing: Sequence[tuple[str, str]] | None = ()) -> None:
        self.remote = remote
        # How commits are signed (README "Supply chain"): git settings written into the clone (a key); () for
        # unsigned unless the clone says otherwise (a daemon never falls back on a person's ~/.gitconfig, and a
        # shared --workdir keeps the reconciler's key); None leaves it to git's configuration as it stands.
        self.signing = signing
        self.workdir = Path(workdir)
        self.branch = branch
        self.status_branch = status_branch
        self.author_name = author_name
        self.author_email = author_email
        self._main = _Tree(self.workdir / "repo", branch)
        self._status = _Tree(self.workdir / "status-tree", status_branch) if status_branch else None
        self._rlock = threading.RLock()
        self._depth = 0
        self._lock_fd: int | None = None
        self._run_fd: int | None = None  # the workdir held by `grayops run`
        self._last_fetched: str | None = None
        self.fetch_started: float | None = None  # time.monotonic() at the start of the last fetch that succeeded
        self._tracked: dict[Path, set[str]] = {}  # paths this object committed, hence known to git
        # the last commit read, what it held, its root entries outside the record, and the errors of those
        self._desired: tuple[str | None, RevisionFiles, tuple[tuple[str, int, str], ...], tuple[FleetError, ...]] | \
            None = None
        # record directory -> each entry of it (name, mode, id) -> its survey's errors, as last read
        self._records: dict[str, dict[tuple[str, int, str], tuple[FleetError, ...]]] = {}
        self._texts: dict[str, str] = {}  # blob id -> text, for the desired files last read
        self._object_db: _Objects | None = None  # opened on first use, closed when the clone is made again
        self._catching_up = False  # in _catch_up_index
        self._config: tuple[tuple[object, ...], _CommitConfig | None] | None = None  # (files' stat, what they say)

    # --- locking ----------------------------------------------------------------------------------------

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive use of the clone across processes (flock) and threads; re-entrant in one thread."""
        return self._locked()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with self._rlock:
            if self._depth == 0:
                self.workdir.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.workdir / ".grayops.lock", os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd = fd
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0 and self._lock_fd is not None:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def hold_workdir(self) -> None:
        """Hold the workdir until `release_workdir()` or the process ends: `grayops run` calls it once, so a
        second reconciler on the same workdir stops at once instead of committing every transition twice.

        Raises WorkdirBusy naming the holder's pid. CLI commands and the bot only take `lock()`, per operation,
        and keep sharing the clone with the reconciler.
        """
        path = self.workdir / RUN_LOCK
        self.workdir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder_pid(fd)
            os.close(fd)
            raise WorkdirBusy(self.workdir, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.release_workdir()
        self._run_fd = fd

    def release_workdir(self) -> None:
        if self._run_fd is not None:
            os.close(self._run_fd)  # closing the descriptor releases the flock
            self._run_fd = None

    def _hold_again_if_deleted(self) -> None:
        """After the workdir was deleted, our lock is on a file nobody can see: take the new one (or give way)."""
        if self._run_fd is None:
            return
        try:
            same = os.stat(self.workdir / RUN_LOCK).st_ino == os.fstat(self._run_fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            self.hold_workdir()

    # --- setup --------------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The main working tree (workdir/repo)."""
        return self._main.path

    def ensure_clone(self) -> None:
        """Clone the remote if there is no clone yet, else reuse it (unpushed commits are kept).

        Also repairs what a killed process can leave behind: an unfinished rebase is aborted and files
        written but never committed are reset, so the clone is clean before anything else runs. After the
        workdir was deleted under a running reconciler (`lost()`), this clones again and holds the new workdir.
        """
        with self.lock():
            self._hold_again_if_deleted()
            if not self._is_clone():
                self._tracked.clear()
                self._close_objects()
                self._clone()
            else:
                self._remove_stale_locks(self._main)
                url = self._git("remote", "get-url", "origin", check=False).stdout.strip()
                if url != self.remote:
                    log.info("clone origin changed from %s to %s", redact_url(url), redact_url(self.remote))
                    self._git("remote", "set-url", "origin", self.remote)
            self._configure_signing()
            for key, value in (("user.name", self.author_name), ("user.email", self.author_email),
                               ("core.autocrlf", "false"),
                               ("rebase.autoStash", "false"), ("advice.detachedHead", "false"),
                               # objects git would refuse to check out (a `..` or `.git` tree entry) are refused
                               # when they arrive, so no commit can make a later checkout fail
                               ("fetch.fsckObjects", "true"), ("transfer.fsckObjects", "true")):
                self._git("config", key, value)
            self._recover(self._main)
            self._checkout_main()
            if self._status is not None:
                self._ensure_status_tree(self._status)
                self._recover(self._status)
            self._last_fetched = self._rev(f"refs/remotes/origin/{self.branch}")
            for tree in self._trees():
                self._baseline(tree)

    def _configure_signing(self) -> None:
        if self.signing:
            for key, value in self.signing:
                self._git("config", key, value)
        elif self.signing is not None and self._git("config", "--local", "commit.gpgsign", check=False).returncode:
            self._git("config", "commit.gpgsign", "false")

    def signs(self) -> bool:
        """Whether the clone's commits are signed (its configuration says commit.gpgsign), once cloned."""
        return self._git("config", "--bool", "commit.gpgsign", check=False).stdout.strip() == "true"

    def lost(self) -> bool:
        """The clone is gone (its workdir deleted while we run): `ensure_clone()` makes a new one."""
        git_dir = self.path / ".git"
        needed = [git_dir / "HEAD", git_dir / "config", git_dir / "objects", git_dir / "refs"]
        if self._status is not None:
            needed.append(self._status.path / ".git")
        return not all(path.exists() for path in needed)

    def use_status_branch(self, branch: str | None) -> None:
        """Keep status/ and reports/ on `branch` from now on (None: on the desired-state branch).

        grayops.yaml names the branch, and it can only be read once the clone exists, hence after
        ensure_clone; the status tree is set up at once.
        """
        if branch == self.status_branch:
            return
        with self.lock():
            self.status_branch = branch
            self._status = _Tree(self.workdir / "status-tree", branch) if branch else None
            if self._status is not None:
                self._ensure_status_tree(self._status)
                self._recover(self._status)
                self._baseline(self._status)

    def _is_clone(self) -> bool:
        if not (self.path / ".git").exists():
            return False
        run = self._git("rev-parse", "--is-inside-work-tree", check=False)
        return run.returncode == 0 and run.stdout.strip() == "true"

    def _clone(self) -> None:
        # Clone beside the target and rename, so a killed clone never leaves a half repository in place.
        tmp = Path(tempfile.mkdtemp(prefix="repo.clone-", dir=self.workdir))
        try:
            try:
                # --no-local: a local remote is copied through the transfer too, so its objects are checked
                local = ("--no-local",) if local_remote_path(self.remote) is not None else ()
                self._git("-c", "transfer.fsckObjects=true", "clone", "--quiet", *local, self.remote,
                          str(tmp / "repo"), cwd=self.workdir, remote=True, timeout=CLONE_TIMEOUT)
            except RemoteUnavailable as exc:
                reason = _refused_objects(exc.stderr) or _git_complaint(exc.stderr)
                raise RemoteUnavailable(f"cannot clone {redact_url(self.remote)}: {reason}",
                                        command=exc.command, returncode=exc.returncode,
                                        stderr=exc.stderr) from exc
            if self.path.exists():  # an unusable leftover: keep it for inspection rather than delete it
                aside = self.workdir / f"repo.broken-{_stamp()}"
                log.warning("moving an unusable clone aside to %s", aside)
                self.path.rename(aside)
            (tmp / "repo").rename(self.path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _checkout_main(self) -> None:
        current = self._git("symbolic-ref", "--quiet", "HEAD", check=False).stdout.strip()
        remote_ref = f"refs/remotes/origin/{self.branch}"
        if current == f"refs/heads/{self.branch}" and self._has_commits(self._main):
            return
        if self._ref_exists(f"refs/heads/{self.branch}"):
            self._git("checkout", "--quiet", "--force", self.branch)
        elif self._ref_exists(remote_ref):
            self._git("checkout", "--quiet", "--force", "-B", self.branch, "--track", f"origin/{self.branch}")
        elif not self._git("for-each-ref", "--count=1", "refs/remotes/origin/").stdout.strip():
            # An empty remote: start the branch unborn; the first commit creates it.
            self._git("symbolic-ref", "HEAD", f"refs/heads/{self.branch}")
        else:
            raise GitError(f"remote {redact_url(self.remote)} has no branch {self.branch!r}")

    def _ensure_status_tree(self, tree: _Tree) -> None:
        if (tree.path / ".git").exists() and self._git(
                "rev-parse", "--is-inside-work-tree", cwd=tree.path, check=False).returncode == 0:
            return
        if tree.path.exists():  # a leftover that is not a worktree would make `worktree add` fail
            aside = self.workdir / f"status-tree.broken-{_stamp()}"
            log.warning("moving an unusable status tree aside to %s", aside)
            tree.path.rename(aside)
        self._git("worktree", "prune")
        local, remote_ref = f"refs/heads/{tree.branch}", f"refs/remotes/origin/{tree.branch}"
        if self._ref_exists(local):
            self._git("worktree", "add", "--quiet", "--force", str(tree.path), tree.branch)
        elif self._ref_exists(remote_ref):
            self._git("worktree", "add", "--quiet", "--track", "-b", tree.branch, str(tree.path),
                      f"origin/{tree.branch}")
        else:
            # A branch with no history of its own: start detached, then make it an unborn orphan with an
            # empty index, so the first status commit is its root (no empty commit just to create it).
            self._git("worktree", "add", "--quiet", "--detach", "--no-checkout", str(tree.path))
            self._git("checkout", "--quiet", "--orphan", tree.branch, cwd=tree.path)
            self._git("read-tree", "--empty", cwd=tree.path)

    def _recover(self, tree: _Tree) -> None:
        self._remove_stale_locks(tree)
        for state in ("rebase-merge", "rebase-apply"):
            git_path = self._git("rev-parse", "--git-path", state, cwd=tree.path).stdout.strip()
            if (tree.path / git_path).exists():
                log.warning("aborting a rebase left unfinished in %s", tree.path)
                self._git("rebase", "--abort", cwd=tree.path, check=False)
        self._remove_half_written(tree)
        if not self._has_commits(tree):
            return
        dirty = self._git("status", "--porcelain", "--untracked-files=no", cwd=tree.path).stdout.strip()
        if dirty:
            # Only this class writes here, so these are writes a killed process never committed; the next
            # tick writes them again.
            log.warning("discarding uncommitted changes in %s: %s", tree.path, dirty.replace("\n", "; "))
            self._git("reset", "--quiet", "--hard", "HEAD", cwd=tree.path)

    def _remove_half_written(self, tree: _Tree) -> None:
        """The temporary files of record writes a kill interrupted before their rename (`_write_atomic`)."""
        listed = self._git("ls-files", "--others", "-z", "--", *RECORD_DIRECTORIES, cwd=tree.path).stdout
        for path in filter(None, listed.split("\0")):
            if _HALF_WRITTEN.fullmatch(path.rpartition("/")[2]):
                log.warning("removing %s, a write left half done by a process that was killed", path)
                (tree.path / path).unlink(missing_ok=True)

    def _remove_stale_locks(self, tree: _Tree) -> None:
        """Lock files a killed git left behind. We hold the workdir lock, so no live process of ours owns them."""
        dirs = set()
        for option in ("--absolute-git-dir", "--git-common-dir"):
            found = Path(self._git("rev-parse", option, cwd=tree.path).stdout.strip())
            dirs.add((found if found.is_absolute() else tree.path / found).resolve())
        for git_dir in dirs:
            locks = [git_dir / name for name in ("index.lock", "HEAD.lock", "packed-refs.lock", "config.lock")]
            locks += list((git_dir / "refs").rglob("*.lock")) if (git_dir / "refs").is_dir() else []
            for lock in locks:
                if lock.exists():
                    log.warning("removing %s, left by a git process that was killed", lock)
                    lock.unlink(missing_ok=True)

    # --- remote -------------------------------------------------------------------------------------------

    def fetch(self) -> bool:
        """Fetch the remote. True when origin/<branch> moved since the clone was opened or last fetched.

        Our own plain pushes do not count; commits that push() fetched and rebased onto during a retry do,
        so a caller never misses a human commit. A held workdir whose lock file was deleted is held again
        (WorkdirBusy if another reconciler took it meanwhile).
        """
        with self.lock():
            self._hold_again_if_deleted()
            before = self._last_fetched
            if before is None:
                before = self._rev(f"refs/remotes/origin/{self.branch}")
            started = time.monotonic()
            self._fetch()
            self.fetch_started = started
            after = self._rev(f"refs/remotes/origin/{self.branch}")
            self._last_fetched = after
            return after != before

    def _fetch(self) -> None:
        try:
            self._git("fetch", "--quiet", "--prune", "origin", remote=True)
        except RemoteUnavailable as exc:
            refused = _refused_objects(exc.stderr)
            if refused is None:
                raise
            raise RemoteUnavailable(f"the remote's new commits are refused: {refused}", command=exc.command,
                                    returncode=exc.returncode, stderr=exc.stderr) from exc

    def integrate(self) -> ConflictInfo | None:
        """Put local commits on top of origin/<branch> (and the status branch on origin/<status>).

        No local commits: fast-forward. Local commits: rebase them. A conflict: abort, keep the local
        commits on `grayops/conflict-<UTC time>`, reset the branch to the remote one, and say which files.
        A remote whose history was rewritten is followed, never overwritten: what we had is kept on
        `grayops/rewritten-<UTC time>`, the branch is reset to the remote one, and `take_rewrites()` says so.
        """
        with self.lock():
            conflicts = [c for tree in self._trees() if (c := self._integrate(tree)) is not None]
            if not conflicts:
                return None
            if len(conflicts) > 1:
                log.warning("the status branch conflicts too; its commits are kept on %s",
                            conflicts[1].saved_branch)
            files = tuple(f for c in conflicts for f in c.files)
            return ConflictInfo(files=files, saved_branch=conflicts[0].saved_branch)

    def _integrate(self, tree: _Tree) -> ConflictInfo | None:
        upstream = f"refs/remotes/origin/{tree.branch}"
        remote_tip = self._rev(upstream)
        if remote_tip is None:
            return None  # the remote has no such branch yet: our first push creates it
        conflict = None
        synced = self._rev(_synced_ref(tree))
        if not self._has_commits(tree):
            self._git("reset", "--quiet", "--hard", upstream, cwd=tree.path)
        elif synced is not None and synced != remote_tip and not self._is_ancestor(synced, remote_tip, tree):
            self._follow_rewrite(tree, remote_tip, synced)
        elif self._is_ancestor(upstream, "HEAD", tree):
            pass  # nothing new upstream
        elif self._is_ancestor("HEAD", upstream, tree):
            self._git("merge", "--quiet", "--ff-only", upstream, cwd=tree.path)
        else:
            try:
                self._rebase(tree, upstream)
            except MergeConflict as err:
                saved = self._save_branch(tree, _CONFLICT_PREFIX)
                self._git("reset", "--quiet", "--hard", upstream, cwd=tree.path)
                log.warning("local commits on %s conflict with the remote in %s; kept on branch %s",
                            tree.branch, ", ".join(err.files) or "?", saved)
                conflict = ConflictInfo(files=err.files, saved_branch=saved)
        if synced != remote_tip:
            self._mark_synced(tree, remote_tip)
        return conflict

    def _follow_rewrite(self, tree: _Tree, remote_tip: str, synced: str) -> None:
        """The remote dropped commits it had (ours, or anyone's): keep what we had on a branch, follow the remote.

        Rebasing or pushing our branch would put the dropped commits back: a human's force-push silently undone.
        """
        saved = self._save_branch(tree, _REWRITTEN_PREFIX)
        files = [f for f in self._git("diff", "--name-only", "-z", remote_tip, saved, cwd=tree.path
                                      ).stdout.split("\0") if f]
        dropped = int(self._git("rev-list", "--count", f"{remote_tip}..{saved}", cwd=tree.path).stdout.strip() or 0)
        self._git("reset", "--quiet", "--hard", remote_tip, cwd=tree.path)
        log.warning("the remote's history of %s was rewritten (%s is no longer in it): following it; %d commit(s) "
                    "of ours kept on branch %s", tree.branch, synced[:12], dropped, saved)
        notice = Rewrite(tree.branch, saved, tuple(files), dropped)
        with open(self._rewrites_path(), "a", encoding="utf-8") as out:
            out.write(json.dumps({"branch": notice.branch, "saved_branch": notice.saved_branch,
                                  "files": list(notice.files), "dropped": notice.dropped}) + "\n")

    def take_rewrites(self) -> list[Rewrite]:
        """The rewritten remote histories followed since the last call (by any process sharing the clone)."""
        with self.lock():
            path = self._rewrites_path()
            try:  # grayops' own notice file inside .git, not a file of the repository
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return []
            path.unlink()
            rewrites = []
            for line in text.splitlines():
                try:
                    doc = json.loads(line)
                    rewrites.append(Rewrite(str(doc["branch"]), str(doc["saved_branch"]),
                                            tuple(str(f) for f in doc["files"]), int(doc["dropped"])))
                except (ValueError, KeyError, TypeError):
                    log.warning("ignoring an unreadable line in %s: %r", path, line)
            return rewrites

    def _rewrites_path(self) -> Path:
        return self.path / ".git" / _REWRITES_FILE

    def _baseline(self, tree: _Tree) -> None:
        """Start watching for rewrites from what the clone last saw of the remote (a clone from before)."""
        if self._rev(_synced_ref(tree)) is None and (tip := self._rev(f"refs/remotes/origin/{tree.branch}")):
            self._mark_synced(tree, tip)

    def _mark_synced(self, tree: _Tree, commit: str) -> None:
        """The remote's history now contains `commit` (a sha or a ref): what a later fetch must still contain."""
        ref, sha = _synced_ref(tree), self._commit_of(tree, commit)
        if sha is None or not self._move_ref(tree, ref, self._read_ref(tree, ref), sha):
            self._git("update-ref", ref, commit)

    def _rebase(self, tree: _Tree, upstream: str) -> None:
        run = self._git("rebase", "--quiet", upstream, cwd=tree.path, check=False)
        if run.returncode == 0:
            return
        files = self._git("diff", "--name-only", "-z", "--diff-filter=U", cwd=tree.path,
                          check=False).stdout.split("\0")
        self._git("rebase", "--abort", cwd=tree.path, check=False)
        raise MergeConflict(f"rebase of {tree.branch} onto {upstream} failed: {run.stderr.strip()}",
                            [f for f in files if f])

    def _save_branch(self, tree: _Tree, prefix: str) -> str:
        base = prefix + _stamp() + ("" if tree is self._main else "-status")
        name, n = base, 1
        while self._ref_exists(f"refs/heads/{name}"):
            n += 1
            name = f"{base}-{n}"
        self._git("branch", name, f"refs/heads/{tree.branch}", cwd=tree.path)
        return name

    def push(self, attempts: int = 5, backoff: float = 0.2) -> PushResult:
        """Push local commits; on a rejection fetch, rebase and retry with exponential backoff. Never forced.

        A branch is pushed only while the remote branch is where we last fetched it (`--force-with-lease` with
        that commit, which our branch descends from: the update is a fast-forward of it). So a remote that moved
        meanwhile, by a human's push or force-push, is fetched and integrated first: a rewritten history is
        followed, never pushed over. `pushed` says whether this call pushed anything; a down remote, a refusal
        or a conflict is reported in the result (`failure`, never raised) and the commits stay local.
        """
        with self.lock():
            for tree in self._trees():  # the clone is left as git would leave it at the end of each tick
                self._catch_up_index(tree.path)
            pushed = False
            origin_before = self._rev(f"refs/remotes/origin/{self.branch}")
            for attempt in range(max(1, attempts)):
                trees = [t for t in self._trees() if self._ahead(t)]
                if not trees:
                    return PushResult(pushed=pushed, pending=0)
                try:
                    outcome = self._push(trees)
                except RemoteUnavailable as exc:
                    # the caller reports it, once: a reconciler retries every tick while the remote is down
                    log.debug("push failed, %d commit(s) kept locally: %s", self.unpushed(), exc)
                    return PushResult(pushed, self.unpushed(), error=str(exc), failure="unreachable")
                pushed = pushed or outcome.any_pushed
                if outcome.error is not None:
                    return PushResult(pushed, self.unpushed(), error=outcome.error, failure="refused")
                if not outcome.rejected:
                    for tree in trees:
                        self._mark_synced(tree, f"refs/heads/{tree.branch}")  # what the remote has now
                    if attempt == 0 and self._last_fetched == origin_before:
                        # Only our own commits moved origin/<branch>: not news for the next fetch().
                        self._last_fetched = self._rev(f"refs/remotes/origin/{self.branch}")
                    return PushResult(pushed=pushed, pending=self.unpushed())
                # Someone pushed first: take their commits under ours and try again.
                try:
                    self._fetch()
                except RemoteUnavailable as exc:
                    return PushResult(pushed, self.unpushed(), error=str(exc), failure="unreachable")
                conflict = self.integrate()
                if conflict is not None:
                    return PushResult(pushed, self.unpushed(), conflict=conflict,
                                      error=f"conflict in {', '.join(conflict.files) or '?'}", failure="conflict")
                if attempt + 1 < attempts:
                    time.sleep(backoff * (2**attempt))
            return PushResult(pushed, self.unpushed(), error=f"push still rejected after {attempts} attempt(s): "
                              "the remote branch kept moving", failure="busy")

    def _push(self, trees: Sequence[_Tree]) -> _PushOutcome:
        refs = [f"refs/heads/{t.branch}:refs/heads/{t.branch}" for t in trees]
        leases = [lease for t in trees if (lease := self._lease(t)) is not None]
        run = self._git("push", "--porcelain", *leases, "origin", *refs, remote=True, check=False)
        lines = [line.split("\t") for line in run.stdout.splitlines() if "\t" in line]
        ref_lines = [parts for parts in lines if len(parts) >= 3 and ":" in parts[1]]
        any_pushed = any(parts[0] in (" ", "*") for parts in ref_lines)
        if run.returncode == 0:
            return _PushOutcome(any_pushed=any_pushed)
        failed = [parts for parts in ref_lines if parts[0] == "!"]
        if not failed:
            raise RemoteUnavailable(f"cannot push to {redact_url(self.remote)}: {_git_complaint(run.stderr)}",
                                    returncode=run.returncode, stderr=run.stderr)
        # [rejected]: not a fast-forward, or the remote moved since our fetch. A remote that failed our ref update
        # because another push landed meanwhile is the same race. Anything else (a hook declined, the branch is
        # checked out in a non-bare remote, a protected branch) is a refusal that retrying will not change.
        hard = [parts for parts in failed
                if not parts[2].startswith("[rejected]") and not any(t in parts[2] for t in _TRANSIENT_REFUSALS)]
        if hard:
            return _PushOutcome(any_pushed=any_pushed, error=_refusal(hard, run.stderr))
        return _PushOutcome(any_pushed=any_pushed, rejected=True)

    def _lease(self, tree: _Tree) -> str | None:
        """Push only if the remote branch is still at what we fetched (absent: still absent)."""
        expect = self._rev(f"refs/remotes/origin/{tree.branch}")
        if expect is not None and not self._is_ancestor(expect, f"refs/heads/{tree.branch}", tree):
            return None  # not integrated yet (a process killed in between): a plain push, refused unless a fast-forward
        return f"--force-with-lease=refs/heads/{tree.branch}:{expect or ''}"

    def remote_moved(self) -> bool:
        """Whether the remote may hold commits not fetched yet. A local remote's branches are read (no process)
        and compared with what the last fetch or push left in refs/remotes/origin: the remote watcher sees our
        own pushes too, which are not news. Any other remote may always have moved."""
        root = local_remote_path(self.remote)
        if root is None:
            return True
        git_dir = root / ".git" if (root / ".git").is_dir() else root
        with self.lock():
            for tree in self._trees():
                ref = f"refs/heads/{tree.branch}"
                try:
                    theirs: str | None = (git_dir / ref).read_text(encoding="ascii").strip()
                except FileNotFoundError:
                    theirs = _packed_ref(git_dir, ref)
                except (OSError, UnicodeDecodeError):
                    return True
                if theirs != self._rev(f"refs/remotes/origin/{tree.branch}"):
                    return True
            return False

    def unpushed(self) -> int:
        """Local commits not on the remote-tracking branches (as of the last fetch or push)."""
        with self.lock():
            return sum(self._ahead(tree) for tree in self._trees())

    def _ahead(self, tree: _Tree) -> int:
        local = f"refs/heads/{tree.branch}"
        upstream = f"refs/remotes/origin/{tree.branch}"
        at, pushed = self._rev(local), self._rev(upstream)
        if at is None:
            return 0
        if pushed is not None and (count := self._line_between(at, pushed)) is not None:
            return count  # our commits on top of the remote's, counted without a process
        spec = f"{upstream}..{local}" if pushed is not None else local
        return int(self._git("rev-list", "--count", spec).stdout.strip() or 0)

    # --- reading --------------------------------------------------------------------------------------------

    def head(self) -> str:
        """The sha of HEAD in the main tree."""
        with self.lock():
            commit = self._commit_of(self._main, "HEAD")
            if commit is None:
                raise GitError(f"{self.branch} has no commit yet in {self.path}")
            return commit

    def desired_files(self, rev: str = "HEAD") -> RevisionFiles:
        """The desired state at `rev` of the main tree, read from git objects, never through the working tree.

        Holds every fleet file the tree's survey allows (README "Limits"), and the errors of the entries it
        refuses (a symlink, a submodule, a file over the size limits, bytes that are not UTF-8): `load_fleet`
        reports both. Read again only when `rev` names another commit, and then only what changed: a commit
        that changed nothing outside status/ and reports/ (grayops' own, each tick) has the same files, and only
        the record's entries it changed are surveyed (README "Sizing").
        """
        with self.lock():
            commit = self._commit_of(self._main, rev)
            cached = self._desired
            if cached is not None and cached[0] == commit:
                return cached[1]
            if commit is None:
                self._desired = (commit, RevisionFiles({}), (), ())
                return self._desired[1]
            objects = self._objects()
            root = objects.entries(objects.tree_of(commit))
            outside = tuple(entry for entry in root if entry[0] not in _RECORD_TOPS)
            record_errors = self._record_errors(root)
            if cached is not None and cached[2] == outside:  # the same fleet files
                fleet_errors = cached[3]
                revision = cached[1] if set(cached[1].errors) == set((*fleet_errors, *record_errors)) else \
                    RevisionFiles(cached[1], (*fleet_errors, *record_errors))
            else:
                paths = [name for name, _, _ in outside]
                entries, oids = self._entries(self._main, commit, *paths, sizes=True) if paths else ([], {})
                found = survey(entries)
                files, errors = self._read_entries(self._main, found.desired, oids, MAX_FILE_BYTES, keep_cache=True)
                fleet_errors = (*found.errors, *errors)
                revision = RevisionFiles(files, (*fleet_errors, *record_errors))
            self._desired = (commit, revision, outside, fleet_errors)
            return revision

    def _record_errors(self, root: Sequence[tuple[str, int, str]]) -> tuple[FleetError, ...]:
        """The survey's errors of the record directories (status/, reports/) among a root tree's entries, each
        entry surveyed once: an entry's errors are its own (`survey`), so a commit of one status file surveys
        that file, not the 10,000 others."""
        errors: list[FleetError] = []
        known, self._records = self._records, {}
        objects = self._objects()
        for name, mode, oid in root:
            if name not in _RECORD_TOPS:
                continue
            before = known.get(name, {})
            children = objects.entries(oid) if mode == _TREE_MODE else [("", mode, oid)]
            now = self._records[name] = {}
            for child in children:
                found = before.get(child)
                if found is None:
                    found = self._errors_under(name, *child)
                now[child] = found
                errors.extend(found)
        return tuple(errors)

    def _errors_under(self, top: str, name: str, mode: int, oid: str) -> tuple[FleetError, ...]:
        """`survey`'s errors of one entry of a record directory `top` (name "": `top` itself), and all under it."""
        path = f"{top}/{name}" if name else top
        if mode != _TREE_MODE:
            listed = [TreeEntry(path, _GIT_TYPES.get(mode & 0o170000, EntryKind.SUBMODULE))]
        else:
            listed = [TreeEntry(f"{path}/{sub}", _GIT_TYPES.get(kind & 0o170000, EntryKind.SUBMODULE))
                      for sub, kind, _ in self._objects().walk(oid)]
        return survey(listed).errors

    def report_paths(self) -> list[str]:
        """"reports/..." paths of every report committed in the status location."""
        with self.lock():
            tree = self._record_tree()
            entries, _ = self._entries(tree, self._commit_of(tree, "HEAD"), REPORTS_DIRECTORY.rstrip("/"),
                                       sizes=False)
            return sorted(e.path for e in entries if e.path.endswith(".md"))

    def first_parents(self, limit: int) -> list[str]:
        """HEAD and its first-parent ancestors in the main tree, newest first, at most `limit` commits."""
        with self.lock():
            commit = self._commit_of(self._main, "HEAD")
            found: list[str] = []
            while commit is not None and len(found) < limit:
                found.append(commit)
                commit = next(iter(self._objects().parents(commit)), None)
            return found

    def status_files(self) -> RevisionFiles:
        """"status/..." path -> text of every YAML file under status/ in the status location, from git objects.

        A status entry that is not a regular file, or not UTF-8 text, is left out and reported in `errors`.
        """
        with self.lock():
            tree = self._record_tree()
            entries, oids = self._entries(tree, self._commit_of(tree, "HEAD"), "status")
            found = survey(entries)
            wanted = [e for e in found.records
                      if e.path.startswith(STATUS_DIRECTORY) and e.path.endswith(YAML_SUFFIXES)]
            files, errors = self._read_entries(tree, wanted, oids, MAX_RECORD_BYTES)
            return RevisionFiles(files, [*found.errors, *errors])

    def read(self, path: str, rev: str = "HEAD") -> str | None:
        """One file's text at `rev`, from git objects; None if absent or not a regular UTF-8 file within the
        limits (a symlink is never followed, a blob over the limit never read).

        status/ and reports/ come from the status location.
        """
        rel = _safe_relpath(path)
        record = rel.startswith(STATUS_PREFIXES)
        tree = self._record_tree() if record else self._main
        with self.lock():
            listed, oids = self._entries(tree, self._commit_of(tree, rev), rel)
            entries = [e for e in listed if e.path == rel]
            if len(entries) != 1 or entries[0].kind is not EntryKind.FILE:
                return None
            files, _ = self._read_entries(tree, entries, oids, MAX_RECORD_BYTES if record else MAX_FILE_BYTES)
            return files.get(rel)

    def _commit_of(self, tree: _Tree, rev: str) -> str | None:
        """The commit `rev` names in `tree` (None on an unborn branch).

        HEAD, our own refs, full object ids and their first parents (`<id>^`) are resolved in-process (ref files,
        the object database); any other revision (a short id, a tag) by `git rev-parse`."""
        if rev == "HEAD" or rev.startswith(_OWN_REFS):
            return self._read_ref(tree, rev)
        if _FULL_ID.fullmatch(rev) and self._objects().kind(rev) == "commit":
            return rev
        if rev.endswith("^") and _FULL_ID.fullmatch(rev[:-1]) and self._objects().kind(rev[:-1]) == "commit":
            return next(iter(self._objects().parents(rev[:-1])), None)
        run = self._git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", cwd=tree.path, check=False)
        return run.stdout.strip() if run.returncode == 0 else None

    def _entries(self, tree: _Tree, commit: str | None, *paths: str,
                 sizes: bool | Callable[[str], bool] = True) -> tuple[list[TreeEntry], dict[str, str]]:
        """Every entry (recursively) of `commit`'s tree, or of `paths` in it, as `git ls-tree -r` lists it (a
        symlink is an entry of its own, never followed), and the object id of each; read through the object
        database. Sizes only where `sizes` says (False, or a path -> bool): others are 0, one round trip less."""
        if commit is None:
            return [], {}
        objects = self._objects()
        entries: list[TreeEntry] = []
        oids: dict[str, str] = {}
        for path, mode, oid in objects.walk(objects.tree_of(commit), paths):
            kind = _GIT_TYPES.get(mode & 0o170000, EntryKind.SUBMODULE)
            sized = sizes(path) if callable(sizes) else sizes
            size = objects.size(oid) if sized and kind is not EntryKind.SUBMODULE else 0
            entries.append(TreeEntry(path, kind, size))
            oids[path] = oid
        return entries, oids

    def _read_entries(self, tree: _Tree, entries: Sequence[TreeEntry], oids: Mapping[str, str], limit: int, *,
                      keep_cache: bool = False) -> tuple[dict[str, str], list[FleetError]]:
        """The text of each entry; blobs already read for the desired state in force are not read again."""
        texts, errors = texts_of(entries, oids, limit, self._objects().blob, self._texts)
        if keep_cache:  # only the revision just read: the cache never grows past one revision
            self._texts = {oids[path]: text for path, text in texts.items()}
        return texts, errors

    def last_changes(self, paths: Sequence[str]) -> dict[str, Change]:
        """For each path, the last commit that touched it (paths never committed are left out).

        One `git log` per location (the main tree, and the status tree for record paths when a status
        branch is set), read as it streams and stopped as soon as every path has been seen.
        """
        with self.lock():
            found: dict[str, Change] = {}
            groups: dict[str, tuple[_Tree, list[str]]] = {}
            for path in dict.fromkeys(_safe_relpath(p) for p in paths):
                tree = self._record_tree() if path.startswith(STATUS_PREFIXES) else self._main
                groups.setdefault(str(tree.path), (tree, []))[1].append(path)
            for tree, wanted in groups.values():
                found.update(self._last_changes(tree, wanted))
            return found

    def _last_changes(self, tree: _Tree, paths: list[str]) -> dict[str, Change]:
        cwd = tree.path
        if self._commit_of(tree, "HEAD") is None:
            return {}  # unborn branch: no history yet
        wanted = set(paths)
        found: dict[str, Change] = {}
        buffer = ""

        def consume(chunk: str) -> bool:
            nonlocal buffer
            buffer += chunk
            *complete, buffer = buffer.split("\x1e")
            for record in complete:
                _take_record(record, wanted, found, self._own)
            return len(found) == len(wanted)

        # Thousands of pathspecs cost git a comparison each per file of each commit: name their directories then,
        # and keep the wanted paths here.
        specs = sorted({path.rpartition("/")[0] or path for path in paths}) if len(paths) > MANY_PATHS else paths
        self._git("log", "-z", "--name-only", f"--format={_LOG_FORMAT}", "HEAD", "--", *specs, cwd=cwd,
                  on_output=consume)
        if buffer and len(found) < len(wanted):
            _take_record(buffer, wanted, found, self._own)
        return found

    def change_of(self, commit: str) -> Change | None:
        """Who made `commit` (a sha or a unique prefix) and its trailers; None when it is not in the clone."""
        with self.lock():
            run = self._git("log", "-1", "--no-walk", f"--format={_LOG_FORMAT}", f"{commit}^{{commit}}", "--",
                            check=False)
            records = [r for r in run.stdout.split("\x1e") if r] if run.returncode == 0 else []
            return _parse_record(records[0], self._own)[0] if records else None

    def history(self, paths: Sequence[str], since: str | None = None, limit: int | None = None) -> list[Change]:
        """The commits up to HEAD (after `since`, when given) that changed any of `paths`, newest first.

        Paths all in status/ and reports/ are read from the status location (the status branch when one is set).
        """
        rels = [_safe_relpath(p) for p in paths]
        tree = self._record_tree() if rels and all(r.startswith(STATUS_PREFIXES) for r in rels) else self._main
        with self.lock():
            args = ["log", f"--format={_LOG_FORMAT}", *([f"-n{limit}"] if limit else []),
                    f"{since}..HEAD" if since else "HEAD", "--", *rels]
            run = self._git(*args, cwd=tree.path, check=False)
            if run.returncode != 0:
                return []
            return [_parse_record(r, self._own)[0] for r in run.stdout.split("\x1e") if r.strip()]

    def file_at(self, commit: str, path: str) -> str | None:
        """A file's text as commit `commit` has it, read by the same rules as any revision (README "Limits");
        None when absent or refused."""
        return self.read(path, rev=commit)

    @property
    def _own(self) -> tuple[str, str]:
        return self.author_name, self.author_email

    # --- writing ------------------------------------------------------------------------------------------

    def commit(self, files: Mapping[str, str | None], message: str | Sequence[str],
               trailers: Mapping[str, str] | Sequence[tuple[str, str]] = (), *,
               status: bool = False) -> str | None:
        """Write `files` (None deletes), stage exactly those paths and commit them; None when nothing changed.

        status=True writes into the status location (the status branch's tree when configured), in-process when
        it can (`_commit_in_process`: no git process for the record grayops writes every tick). Nothing is ever
        written through a symlink (README "Limits"): in status/ and reports/, grayops' own, a symlink or a file in
        the way is taken out of the clone (the link, never what it points to) and the commit records that; on
        any other path it raises UnsafePath.
        """
        tree = self._record_tree() if status else self._main
        contents = {_safe_relpath(path): text for path, text in files.items()}
        with self.lock():
            cleared = self._clear_the_way(tree, list(contents))
            # The clone is clean between commits (ensure_clone resets what a killed process left), so comparing
            # with the working tree tells what changes without asking git: no change, no git call at all.
            rels = [rel for rel in contents if _read_regular(tree.path / rel) != contents[rel]]
            if not rels and not cleared:
                return None
            for rel in rels:
                target, text = tree.path / rel, contents[rel]
                if text is None:
                    target.unlink(missing_ok=True)
                else:
                    _write_atomic(target, text)
            present = [rel for rel in rels if (tree.path / rel).exists()]
            gone = [rel for rel in rels if rel not in present]
            text = _message(message, trailers)
            tracked = self._tracked.setdefault(tree.path, set())
            if status and not cleared and (made := self._commit_in_process(tree, {rel: contents[rel] for rel in rels},
                                                                           text)):
                tracked.update(present)
                tracked.difference_update(gone)
                return made
            committed = False
            if cleared:
                self._git("rm", "-r", "--quiet", "--cached", "--ignore-unmatch", "--", *cleared, cwd=tree.path)
                tracked.clear()  # what was under the removed entries is no longer known to git
            elif set(rels) <= tracked:
                # `git commit -- paths` takes tracked files as they are in the working tree: no `git add` needed,
                # one process less per status commit. Anything unexpected falls back to the long way.
                committed = self._git("commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-F", "-", "--",
                                      *rels, cwd=tree.path, input=text, check=False).returncode == 0
            if not committed:
                if present:
                    self._git("add", "--", *present, cwd=tree.path)
                if gone:
                    self._git("rm", "--quiet", "--cached", "--ignore-unmatch", "--", *gone, cwd=tree.path)
                # After clearing, the index holds exactly what changes (the clone was clean): commit it whole, as
                # `commit -- paths` cannot take a path that was a symlink and is now a directory.
                only = [] if cleared else ["--", *rels]
                self._git("commit", "--quiet", "--no-verify", "--cleanup=whitespace", "-F", "-", *only,
                          cwd=tree.path, input=text)
            tracked.update(present)
            tracked.difference_update(gone)
            return self._git("rev-parse", "HEAD", cwd=tree.path).stdout.strip()

    def _commit_in_process(self, tree: _Tree, files: Mapping[str, str | None], message: str) -> str | None:
        """Commit `files` (already written to the working tree) on the tree's branch without a git process: blob,
        tree and commit objects written in-process, the branch moved only if it still points where we read it.
        None when git must make this commit: signing configured (README "Supply chain"), an identity or
        configuration git would treat specially, a path that is not a plain file in the tree, or a branch that
        moved; `commit()` then runs `git commit` as always.

        The index is not written here: its entries for `files` are brought up to date by `_catch_up_index`
        before the next git command that uses it (one `git reset` for many commits), so a quiet tick or a run of
        status commits starts no process at all.
        """
        try:
            return self._write_commit(tree, files, message)
        except OSError as exc:  # the clone went away under us, as a git command would find
            raise GitError(f"cannot commit in {tree.path}: {exc}") from exc

    def _write_commit(self, tree: _Tree, files: Mapping[str, str | None], message: str) -> str | None:
        config = self._commit_config()
        branch = f"refs/heads/{tree.branch}"
        if config is None or self._head_branch(tree) != branch or self._has_attributes(tree, files):
            return None
        objects = self._objects()
        parent = self._read_ref(tree, branch)
        try:
            root = objects.tree_with(objects.tree_of(parent) if parent else None,
                                     {tuple(rel.split("/")): None if text is None else text.encode("utf-8")
                                      for rel, text in files.items()})
        except _LeaveToGit as why:
            log.debug("committing with git: %s", why)
            return None
        if root is None or (parent is not None and root == objects.tree_of(parent)):
            return None  # an empty tree or nothing changed: git says so as it always did
        when = _git_time(time.time())
        body = [f"tree {root}", *([f"parent {parent}"] if parent else []),
                f"author {config.author} {when}", f"committer {config.committer} {when}"]
        commit = objects.write_commit(("\n".join(body) + "\n\n" + _clean_message(message)).encode("utf-8"))
        self._index_behind(tree, files)
        subject = _clean_message(message).split("\n", 1)[0]
        entry = f"{config.committer} {when}\tcommit{'' if parent else ' (initial)'}: {subject}\n"
        if not self._move_ref(tree, branch, parent, commit, entry):
            return None
        return commit

    def _commit_config(self) -> _CommitConfig | None:
        """Who commits, as git would take it from the clone's configuration (and the user's and system's), or
        None when git must commit: signing is on, or settings this writer does not reproduce."""
        if any(key.startswith("GIT_CONFIG") for key in os.environ):
            return None  # configuration from the environment: git reads it, we do not
        paths = _config_files(self.path / ".git")
        signature = tuple(_stat_key(path) for path in paths)
        if self._config is None or self._config[0] != signature:
            self._config = (signature, _read_commit_config(paths))
        return self._config[1]

    def _has_attributes(self, tree: _Tree, files: Iterable[str]) -> bool:
        """Whether git attributes could change the bytes git stores for `files` (an eol or filter setting)."""
        dirs = {"/".join(parts[:depth]) for parts in (rel.split("/") for rel in files) for depth in range(len(parts))}
        return (self._git_dir(tree) / "info" / "attributes").exists() or (
            self.path / ".git" / "info" / "attributes").exists() or any(
            (tree.path / d / ".gitattributes").exists() for d in dirs)

    def _index_behind(self, tree: _Tree, files: Iterable[str]) -> None:
        """Note the paths whose index entries lag behind the commit being made (before the branch moves, so a
        process killed in between leaves the note; catching up on a path that did not move is harmless)."""
        with open(self._git_dir(tree) / _INDEX_BEHIND, "a", encoding="utf-8") as out:
            out.write("".join(f"{rel}\0" for rel in files))

    def _catch_up_index(self, cwd: Path) -> None:
        """Before a git command that uses the index: bring the entries of paths committed in-process up to their
        commit (`git reset -- paths`; the working tree already holds them), so git sees a clean tree."""
        tree = next((t for t in self._trees() if t.path == cwd), None)
        if self._catching_up or tree is None or not (tree.path / ".git").exists():
            return
        note = self._git_dir(tree) / _INDEX_BEHIND
        try:
            paths = note.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        self._catching_up = True  # the reset below uses the index too
        try:
            if paths.strip("\0"):
                self._git("reset", "--quiet", "--pathspec-from-file=-", "--pathspec-file-nul", cwd=tree.path,
                          input=paths)
        finally:
            self._catching_up = False
        note.unlink()  # only once done: a process killed meanwhile leaves it for the next one

    def _move_ref(self, tree: _Tree, branch: str, old: str | None, new: str, reflog: str | None = None) -> bool:
        """Move ref `branch` from `old` (None: absent) to `new` as git does (its lock file, then a rename), only if
        it still points at `old`; with `reflog`, its reflog and HEAD's get that entry, as `git commit` writes them.
        False when it moved or another git holds its lock."""
        common = self.path / ".git"
        ref = common / branch
        lock = ref.with_name(ref.name + ".lock")
        ref.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False  # a git process (not ours: we hold the workdir lock) is updating it
        try:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(new + "\n")
            if self._read_ref(tree, branch) != old:
                log.info("%s moved while a commit was made on it: git commits instead", branch)
                return False
            line = f"{old or '0' * 40} {new} {reflog}"
            for log_file in (common / "logs" / branch, self._git_dir(tree) / "logs" / "HEAD") if reflog else ():
                log_file.parent.mkdir(parents=True, exist_ok=True)
                with open(log_file, "a", encoding="utf-8") as out:
                    out.write(line)
            os.replace(lock, ref)
            return True
        finally:
            lock.unlink(missing_ok=True)

    def propose(self, branch: str, files: Mapping[str, str], message: str,
                trailers: Sequence[tuple[str, str]] = ()) -> str:
        """Commit `files` on top of the remote's desired branch as `branch`, and push that branch, for a merge
        request (README "HTTP API"); the clone's own branch, index and working tree are untouched. The commit's
        id; ValueError for a name git refuses, ProposalExists when the remote already has `branch`,
        RemoteUnavailable when it cannot be reached."""
        with self.lock():
            if self._git("check-ref-format", "--branch", branch, check=False).returncode != 0:
                raise ValueError(f"{branch!r} is not a valid branch name")
            self._fetch()
            if self._git("ls-remote", "--heads", "origin", f"refs/heads/{branch}", remote=True).stdout.strip():
                raise ProposalExists(f"the remote already has a branch {branch}: merge or delete it first")
            base = self._git("rev-parse", "--verify", f"origin/{self.branch}^{{commit}}").stdout.strip()
            tree = self._git("rev-parse", f"{base}^{{tree}}").stdout.strip()
            for path, text in files.items():
                blob = self._git("hash-object", "-w", "--stdin", input=text).stdout.strip()
                tree = self._tree_with(tree, _safe_relpath(path).split("/"), blob)
            commit = self._git("commit-tree", tree, "-p", base, "-F", "-",
                               input=_message(message, trailers)).stdout.strip()
            pushed = self._git("push", "--quiet", "origin", f"{commit}:refs/heads/{branch}", remote=True, check=False)
            if pushed.returncode != 0 and "rejected]" in pushed.stderr:
                raise ProposalExists(f"the remote refused the branch {branch}: {_git_complaint(pushed.stderr)}")
            if pushed.returncode != 0:
                raise RemoteUnavailable(f"cannot push {branch}: {_git_complaint(pushed.stderr)}",
                                        returncode=pushed.returncode, stderr=pushed.stderr)
            return commit

    def _tree_with(self, tree: str, parts: Sequence[str], blob: str) -> str:
        """The id of `tree` with the regular file at `parts` set to `blob` (subtrees written as needed)."""
        entries = [e for e in self._git("ls-tree", "-z", tree).stdout.split("\0") if e]
        name, here = parts[0], None
        kept = []
        for entry in entries:
            info, _, entry_name = entry.partition("\t")
            if entry_name == name:
                here = info.split()
            else:
                kept.append(entry)
        if len(parts) == 1:
            kept.append(f"100644 blob {blob}\t{name}")
        else:
            below = here[2] if here is not None and here[1] == "tree" else EMPTY_TREE
            kept.append(f"040000 tree {self._tree_with(below, parts[1:], blob)}\t{name}")
        return self._git("mktree", "-z", input="\0".join(kept) + "\0").stdout.strip()

    def find_trailer(self, key: str, value: str, since: datetime) -> str | None:
        """The newest commit of the branch committed after `since` with the trailer `key: value`, or None.

        For a request done only once (README "Slack": a repeated trigger is done once, across restarts); the
        time bound keeps it one short `git log` however long the history.
        """
        value = _trailer_value(value)
        fmt = f"%H%x1f%(trailers:key={key},valueonly,unfold,separator=%x1f)%x1e"
        with self.lock():
            if not self._has_commits(self._main):
                return None
            out = self._git("log", f"--since=@{max(0, int(since.timestamp()))}", "--fixed-strings",
                            f"--grep={key}: {value}", f"--format={fmt}", "HEAD").stdout
        for record in out.split("\x1e"):
            sha, _, values = record.strip().partition("\x1f")
            if value in values.split("\x1f"):
                return sha
        return None

    def _clear_the_way(self, tree: _Tree, rels: Sequence[str]) -> list[str]:
        """Make each path writable without following a symlink; the entries taken out of the clone for it."""
        cleared: list[str] = []
        for rel in rels:
            while (blocked := _in_the_way(tree.path, rel)) is not None:
                sub, what = blocked
                if not rel.startswith(STATUS_PREFIXES):
                    raise UnsafePath(f"refusing to write {show_path(rel)}: {show_path(sub)} is {what} in the clone "
                                     "(a fleet repository may not hold symlinks)")
                log.warning("%s is %s in the clone, in the way of %s: grayops takes it out (status/ and reports/ "
                            "are its own; a fleet repository may not hold symlinks)", show_path(sub), what,
                            show_path(rel))
                _remove_entry(tree.path / sub)
                cleared.append(sub)
        return cleared

    # --- helpers ----------------------------------------------------------------------------------------

    def _trees(self) -> list[_Tree]:
        return [self._main] + ([self._status] if self._status is not None else [])

    def _record_tree(self) -> _Tree:
        return self._status if self._status is not None else self._main

    def _has_commits(self, tree: _Tree) -> bool:
        return self._ref_exists(f"refs/heads/{tree.branch}")

    def _ref_exists(self, ref: str) -> bool:
        return self._rev(ref) is not None

    def _rev(self, ref: str) -> str | None:
        return self._commit_of(self._main, ref)

    def _is_ancestor(self, ancestor: str, descendant: str, tree: _Tree) -> bool:
        older, newer = self._commit_of(tree, ancestor), self._commit_of(tree, descendant)
        if older is not None and newer is not None and self._line_between(newer, older) is not None:
            return True  # the common case (our commits on top of the remote's), without a process
        return self._git("merge-base", "--is-ancestor", ancestor, descendant, cwd=tree.path,
                         check=False).returncode == 0

    # --- refs and objects in-process ------------------------------------------------------------------------

    def _objects(self) -> _Objects:
        if self._object_db is not None and not (self._object_db.git_dir / "objects").is_dir():
            self._close_objects()  # the clone was deleted (and maybe made again) under us
        if self._object_db is None:
            self._object_db = _Objects((self.path / ".git").absolute())
        return self._object_db

    def _close_objects(self) -> None:
        if self._object_db is not None:
            self._object_db.close()
            self._object_db = None

    def _git_dir(self, tree: _Tree) -> Path:
        """The git dir of a working tree: the clone's .git, or the one git keeps for a worktree (its HEAD, index)."""
        dot_git = tree.path / ".git"
        if tree is self._main or dot_git.is_dir():
            return dot_git
        try:
            text = dot_git.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise GitError(f"{tree.path} is not a git working tree: {exc}") from exc
        found = Path(text.removeprefix("gitdir:").strip())
        return found if found.is_absolute() else (tree.path / found).resolve()

    def _read_ref(self, tree: _Tree, name: str) -> str | None:
        """The commit a ref names, read from the ref files as git keeps them (HEAD per working tree, the others in
        the clone's .git, loose first, then packed-refs); None when it does not exist (an unborn branch)."""
        common = self.path / ".git"
        for _ in range(5):  # HEAD -> refs/heads/<branch> -> its commit; deeper chains are not ours
            try:
                text: str | None = ((self._git_dir(tree) if name == "HEAD" else common) / name).read_text(
                    encoding="utf-8").strip()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                text = _packed_ref(common, name)
            if text is None:
                return None
            if text.startswith("ref:"):
                name = text.removeprefix("ref:").strip()
                continue
            return text if _FULL_ID.fullmatch(text) else None
        return None

    def _line_between(self, newer: str, older: str, limit: int = 1000) -> int | None:
        """How many commits lead from `newer` back to `older` when they form a plain line (one parent each, at most
        `limit`): exactly `git rev-list --count older..newer` then. None when not (a merge, older not on the first
        line, a longer way): git answers."""
        objects = self._objects()
        count = 0
        while newer != older:
            parents = objects.parents(newer)
            if count >= limit or len(parents) != 1:
                return None
            newer, count = parents[0], count + 1
        return count

    def _head_branch(self, tree: _Tree) -> str | None:
        """The ref a working tree's HEAD points to (refs/heads/<branch>), None when detached."""
        text = (self._git_dir(tree) / "HEAD").read_text(encoding="utf-8").strip()
        return text.removeprefix("ref:").strip() if text.startswith("ref:") else None

    def _git(self, *args: str, cwd: Path | None = None, input: str | None = None, check: bool = True,
             remote: bool = False, timeout: float | None = None,
             on_output: Callable[[str], bool] | None = None) -> _Run:
        """Run one git command: the only place a command's failure becomes an exception.

        remote=True marks a command that talks to the remote: its failure is RemoteUnavailable (when
        check is set) and it gets a timeout. on_output receives stdout as it streams; returning True stops
        the command early (not an error).
        """
        command = ["git", *args]
        where = cwd if cwd is not None else self.path
        if args and args[0] in _INDEX_COMMANDS:
            self._catch_up_index(where)
        if remote and timeout is None:
            timeout = NETWORK_TIMEOUT
        try:
            if on_output is None:
                proc = subprocess.run(command, cwd=where, input=input, capture_output=True, text=True,
                                      encoding="utf-8", errors="replace", env=_git_env(), timeout=timeout)
                run = _Run(proc.returncode, proc.stdout, proc.stderr)
            else:
                run = _stream(command, where, on_output)
        except subprocess.TimeoutExpired as exc:
            raise RemoteUnavailable(f"{_show(command)} timed out after {exc.timeout:.0f}s",
                                    command=command) from exc
        except OSError as exc:  # git missing, or cwd gone
            raise GitError(f"cannot run {_show(command)}: {exc}", command=command) from exc
        if check and run.returncode != 0:
            error = RemoteUnavailable if remote else GitError
            raise error(f"{_show(command)} failed ({run.returncode}): {_git_complaint(run.stderr)}",
                        command=command, returncode=run.returncode, stderr=run.stderr)
        return run


def parse_tree_listing(listing: str) -> tuple[list[TreeEntry], dict[str, str]]:
    """The entries of `git ls-tree -r -z --long` output (a symlink is an entry of its own, never followed), and
    the object id of each."""
    entries: list[TreeEntry] = []
    oids: dict[str, str] = {}
    for record in listing.split("\0"):
        meta, tab, path = record.partition("\t")
        fields = meta.split()
        if not tab or len(fields) != 4:
            continue
        mode, _type, oid, size = fields
        octal = mode.isdigit() and "8" not in mode and "9" not in mode
        kind = _GIT_TYPES.get(int(mode, 8) & 0o170000 if octal else 0, EntryKind.SUBMODULE)
        entries.append(TreeEntry(path, kind, int(size) if size.isdigit() else 0))
        oids[path] = oid
    return entries, oids


def read_blobs(cwd: Path, entries: Sequence[TreeEntry], oids: Mapping[str, str], limit: int,
               known: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[FleetError]]:
    """The text of each entry's blob, read through one `git cat-file --batch` in the repository at `cwd`.

    An entry over `limit` bytes is never read, nor one whose text `known` (blob id -> text) already has; bytes that
    are not UTF-8 are an error naming the file, line and offset.
    """
    reader: _BlobReader | None = None

    def read(oid: str, limit: int) -> bytes:
        nonlocal reader
        reader = reader or _BlobReader(cwd)
        return reader.read(oid, limit)

    try:
        return texts_of(entries, oids, limit, read, known)
    finally:
        if reader is not None:
            reader.close()


def texts_of(entries: Sequence[TreeEntry], oids: Mapping[str, str], limit: int, read: Callable[[str, int], bytes],
             known: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[FleetError]]:
    """The text of each entry's blob as `read(oid, limit)` returns it; an entry over `limit` bytes (by its listed
    size) is never read, nor one whose text `known` (blob id -> text) already has."""
    texts: dict[str, str] = {}
    errors: list[FleetError] = []
    for entry in entries:
        oid = oids[entry.path]
        if entry.size > limit:
            errors.append(FleetError(entry.path, 0, "", f"{entry.size} bytes, over the limit of {limit}"))
            continue
        text: str | FleetError | None = known.get(oid) if known else None
        if text is None:
            text = decode_text(entry.path, read(oid, limit))
        if isinstance(text, FleetError):
            errors.append(text)
        else:
            texts[entry.path] = text
    return texts, errors


def read_plain_file(path: Path, limit: int) -> bytes | str:
    """A working tree file's bytes, or why it is not read: never follows a symlink, never opens anything but a
    regular file (O_NONBLOCK: a FIFO cannot block), never reads more than `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        return "symlinks are not allowed in a fleet repository" if err.errno == errno.ELOOP else \
            f"cannot be read: {err.strerror}"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return "only regular files are read"
        data = f.read(limit + 1)
    if len(data) > limit:
        return f"{max(len(data), info.st_size)} bytes, over the limit of {limit}"
    return data


class _BlobReader:
    """One `git cat-file --batch` process for a series of blob reads (one process per revision, not per file).

    Sizes are checked from the tree listing before a blob is asked for, and again from cat-file's own header, so
    a blob over the limit is never read whole.
    """

    def __init__(self, cwd: Path) -> None:
        command = ["git", "cat-file", "--batch"]
        try:
            self._proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                          stderr=subprocess.DEVNULL, env=_git_env())
        except OSError as exc:
            raise GitError(f"cannot run {_show(command)}: {exc}", command=command) from exc

    def read(self, oid: str, limit: int) -> bytes:
        stdin, stdout = cast(io.BufferedWriter, self._proc.stdin), cast(io.BufferedReader, self._proc.stdout)
        try:
            stdin.write(oid.encode("ascii") + b"\n")
            stdin.flush()
            header = stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob" or not header[2].isdigit():
                raise GitError(f"git cat-file cannot read blob {oid}: {b' '.join(header).decode(errors='replace')}")
            size = int(header[2])
            if size > limit:  # the listing said otherwise: never read it
                raise GitError(f"git cat-file: blob {oid} has {size} bytes, over the limit of {limit}")
            data = stdout.read(size)
            stdout.read(1)  # the newline after each object
        except (OSError, ValueError) as exc:  # the process died
            raise GitError(f"git cat-file failed reading {oid}: {exc}") from exc
        if len(data) != size:
            raise GitError(f"git cat-file ended in the middle of blob {oid}")
        return data

    def close(self) -> None:
        for pipe in (self._proc.stdin, self._proc.stdout):  # stdout too: a blob left unread must not block it
            with contextlib.suppress(OSError):
                cast(io.BufferedIOBase, pipe).close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class _Objects:
    """The clone's object database through GitPython: objects are read through its two long-lived processes
    (`git cat-file --batch` and `--batch-check`), not one `git` per read, and written in-process as loose objects
    (git packs them at its next automatic maintenance, after a fetch). Shared by the main tree and the status
    worktree, whose objects are the same. Every failure is a GitError."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        try:
            self._repo = gitpython.Repo(str(git_dir), odbt=gitpython.GitCmdObjectDB)
        except (gitpython.GitError, OSError, ValueError) as exc:
            raise GitError(f"cannot open the object database of {git_dir}: {exc}") from exc
        # the long-lived processes read this repository, whatever variables the environment holds (see _REPO_ENV)
        self._repo.git.update_environment(**_git_env(), GIT_DIR=str(git_dir), GIT_COMMON_DIR=str(git_dir),
                                          GIT_OBJECT_DIRECTORY=str(git_dir / "objects"),
                                          GIT_ALTERNATE_OBJECT_DIRECTORIES="")
        self._odb = cast(LooseObjectDB, self._repo.odb)
        # Objects never change: the trees and commit headers read or written lately are kept, so a run of status
        # commits reads nothing back (bounded: cleared when full).
        self._trees: dict[str, list[tuple[str, int, str]]] = {}
        self._commits: dict[str, bytes] = {}
        self._sizes: dict[str, int] = {}  # blob sizes, for the listings of large trees
        self._encoded: dict[str, list[bytes]] = {}  # trees checked to write new ones from: their entries' bytes
        self._trees_weight = 0  # entries kept in _trees

    def close(self) -> None:
        self._repo.close()  # ends the cat-file processes

    def _info(self, oid: str) -> tuple[str, int] | None:
        try:
            info = self._repo.odb.info(bytes.fromhex(oid))
        except ValueError:  # git says it is missing
            return None
        except Exception as exc:
            raise GitError(f"git cat-file cannot read {oid}: {exc}") from exc
        return info.type.decode("ascii"), int(info.size)

    def kind(self, oid: str) -> str | None:
        """The type of object `oid` ("commit", "tree", "blob", "tag"); None when the clone does not have it."""
        found = self._info(oid)
        return found[0] if found else None

    def size(self, oid: str) -> int:
        size = self._sizes.get(oid)
        if size is None:
            found = self._info(oid)
            if found is None:
                raise GitError(f"object {oid} is missing from {self.git_dir}")
            size = found[1]
            self._keep(self._sizes, oid, size, _SIZES_KEPT)
        return size

    def read(self, oid: str, kind: str, limit: int | None = None) -> bytes:
        """The content of object `oid`, which must be a `kind`; never more than `limit` bytes are read."""
        if limit is not None and (size := self.size(oid)) > limit:
            raise GitError(f"git cat-file: {kind} {oid} has {size} bytes, over the limit of {limit}")
        try:
            stream = self._repo.odb.stream(bytes.fromhex(oid))
            data = cast(bytes, stream.read())
        except Exception as exc:
            raise GitError(f"git cat-file cannot read {oid}: {exc}") from exc
        if stream.type.decode("ascii") != kind:
            raise GitError(f"object {oid} is a {stream.type.decode('ascii')}, not a {kind}")
        return data

    def blob(self, oid: str, limit: int) -> bytes:
        return self.read(oid, "blob", limit)

    def _header(self, commit: str) -> bytes:
        """A commit's header lines (tree, parents, author, committer)."""
        header = self._commits.get(commit)
        if header is None:
            header = self.read(commit, "commit").split(b"\n\n", 1)[0]
            self._keep(self._commits, commit, header)
        return header

    def tree_of(self, commit: str) -> str:
        return self._header(commit).split(b"\n", 1)[0].removeprefix(b"tree ").decode("ascii")

    def parents(self, commit: str) -> list[str]:
        return [line[7:].decode("ascii") for line in self._header(commit).split(b"\n") if line.startswith(b"parent ")]

    def entries(self, tree: str) -> list[tuple[str, int, str]]:
        """A tree's entries: (name, mode, object id), in git's order."""
        found = self._trees.get(tree)
        if found is None:
            found = [(name, mode, sha.hex()) for sha, mode, name in tree_entries_from_data(self.read(tree, "tree"))]
            self._keep_tree(tree, found)
        return found

    @staticmethod
    def _keep(cache: dict[str, _T], oid: str, value: _T, limit: int = 0) -> None:
        if len(cache) >= (limit or _OBJECTS_KEPT):
            cache.clear()
        cache[oid] = value

    def write_commit(self, data: bytes) -> str:
        commit = self.write("commit", data)
        self._keep(self._commits, commit, data.split(b"\n\n", 1)[0])
        return commit

    def walk(self, tree: str, paths: Sequence[str] = ()) -> Iterator[tuple[str, int, str]]:
        """(path, mode, object id) of every non-tree entry under `tree`, or under `paths` in it (each an entry's
        path or a directory's), as `git ls-tree -r <tree> -- <paths>` lists them; a symlink is never followed."""
        if not paths:
            yield from self._walk(tree, "")
            return
        for path in paths:
            found = self._lookup(tree, path.strip("/").split("/"))
            if found is None:
                continue
            mode, oid = found
            if mode & 0o170000 == stat.S_IFDIR:
                yield from self._walk(oid, path.strip("/") + "/")
            else:
                yield path.strip("/"), mode, oid

    def _walk(self, tree: str, prefix: str) -> Iterator[tuple[str, int, str]]:
        for name, mode, oid in self.entries(tree):
            if mode & 0o170000 == stat.S_IFDIR:
                yield from self._walk(oid, f"{prefix}{name}/")
            else:
                yield f"{prefix}{name}", mode, oid

    def _lookup(self, tree: str, parts: Sequence[str]) -> tuple[int, str] | None:
        for index, part in enumerate(parts):
            found = next(((mode, oid) for name, mode, oid in self.entries(tree) if name == part), None)
            if found is None:
                return None
            if index == len(parts) - 1:
                return found
            if found[0] & 0o170000 != stat.S_IFDIR:
                return None  # a file (or a symlink) on the way: nothing under it
            tree = found[1]
        return None

    def write(self, kind: str, data: bytes) -> str:
        """Store an object in-process (a loose object, zlib-compressed, as git writes it); its id."""
        try:
            # LooseObjectDB's own store: GitCmdObjectDB's would start a `git hash-object` per object
            stored = LooseObjectDB.store(self._odb, IStream(kind.encode("ascii"), len(data), io.BytesIO(data)))
        except OSError as exc:
            raise GitError(f"cannot write a {kind} object into {self.git_dir}: {exc}") from exc
        return cast(bytes, stored.binsha).hex()

    def tree_with(self, tree: str | None, changes: Mapping[tuple[str, ...], bytes | None]) -> str | None:
        """The id of `tree` (None: empty) with each file at a path set to its bytes (None: removed), subtrees
        written as needed; None for a tree left empty. Raises _LeaveToGit when a path runs into anything but
        directories and regular files, ValueError when a name is not one git accepts in a tree.

        A status/ of 10,000 files is one tree of 10,000 entries: it is changed where the commit changes it (the
        rest kept as read, in git's order and encoded, its names checked once), never sorted, checked or encoded
        whole again per commit (README "Sizing")."""
        entries, encoded = self._writable(tree) if tree else ([], [])
        at = {name: _find(entries, name) for name in {parts[0] for parts in changes}}
        made: dict[str, tuple[int, str] | None] = {}  # name -> its new (mode, id), None: removed
        below: dict[str, dict[tuple[str, ...], bytes | None]] = {}
        for parts, data in changes.items():
            name, index = parts[0], at[parts[0]]
            here = entries[index][1:] if index is not None else None
            if len(parts) > 1:
                if here is not None and here[0] != _TREE_MODE:
                    raise _LeaveToGit(f"{name} is not a directory")
                below.setdefault(name, {})[parts[1:]] = data
            elif here is not None and here[0] not in _FILE_MODES:
                raise _LeaveToGit(f"{name} is not a regular file")
            else:
                made[name] = None if data is None else (_FILE_MODE, self.write("blob", data))
        for name, sub in below.items():
            index = at[name]
            written = self.tree_with(entries[index][2] if index is not None else None, sub)
            made[name] = None if written is None else (_TREE_MODE, written)  # git keeps no empty directory
        for name, entry in made.items():
            if entry is not None and at[name] is None:
                tree_to_stream([(b"\0" * 20, entry[0], name)], lambda _: None)  # git's checks of a new name
        entries, encoded = _with_entries(entries, encoded, at, made)
        if not entries:
            return None
        written = self.write("tree", b"".join(encoded))
        self._keep_tree(written, entries, encoded)
        return written

    def _writable(self, tree: str) -> tuple[list[tuple[str, int, str]], list[bytes]]:
        """A tree's entries to write a new tree from, in git's order, and each one's bytes in the tree object;
        ValueError as git's tree writer raises for a name or mode it refuses. Checked and encoded once per tree
        read (the trees written here are made of checked entries)."""
        entries = self.entries(tree)
        encoded = self._encoded.get(tree)
        if encoded is not None:
            return entries, encoded
        tree_to_stream([(bytes.fromhex(oid), mode, name) for name, mode, oid in entries], lambda _: None)
        keys = [_git_order(entry) for entry in entries]
        ordered = all(keys[i] < keys[i + 1] for i in range(len(keys) - 1))
        if not ordered:  # not as git writes trees: put in order
            entries = sorted(entries, key=_git_order)
        encoded = [_encoded_entry(entry) for entry in entries]
        if ordered:
            self._keep_tree(tree, entries, encoded)
        return entries, encoded

    def _keep_tree(self, tree: str, entries: list[tuple[str, int, str]], encoded: list[bytes] | None = None) -> None:
        """Keep a tree's entries (and their bytes), within a bound on the entries kept in all: a status/ of
        10,000 files is a new tree of 10,000 entries per commit."""
        self._trees_weight += len(entries)
        if len(self._trees) >= _OBJECTS_KEPT or self._trees_weight > _TREE_ENTRIES_KEPT:
            self._trees.clear()
            self._encoded.clear()
            self._trees_weight = len(entries)
        self._trees[tree] = entries
        if encoded is not None:
            self._encoded[tree] = encoded


def _git_order(entry: tuple[str, int, str]) -> bytes:
    """git's order of tree entries: a directory sorts as if its name ended with "/"."""
    return entry[0].encode() + (b"/" if entry[1] == _TREE_MODE else b"")


def _encoded_entry(entry: tuple[str, int, str]) -> bytes:
    """An entry as a tree object holds it: "<mode in octal> <name>\\0<20-byte id>"."""
    name, mode, oid = entry
    return b"%o %s\0%s" % (mode, name.encode("utf-8"), bytes.fromhex(oid))


def _find(entries: Sequence[tuple[str, int, str]], name: str) -> int | None:
    """Where `name` is among `entries` (in git's order), as a file or as a directory."""
    for key in (name.encode(), name.encode() + b"/"):
        index = bisect.bisect_left(entries, key, key=_git_order)
        if index < len(entries) and entries[index][0] == name:
            return index
    return None


def _with_entries(entries: list[tuple[str, int, str]], encoded: list[bytes], at: Mapping[str, int | None],
                  made: Mapping[str, tuple[int, str] | None]) -> tuple[list[tuple[str, int, str]], list[bytes]]:
    """`entries` (in git's order) and their bytes, with each name in `made` set to its (mode, id) or removed, still
    in git's order. `at`: where each name is now."""
    result, result_encoded = list(entries), list(encoded)
    moved: list[tuple[str, int, str]] = []
    gone: set[int] = set()
    for name, entry in made.items():
        index = at[name]
        new = None if entry is None else (name, entry[0], entry[1])
        if index is not None and new is not None and (entries[index][1] == _TREE_MODE) == (new[1] == _TREE_MODE):
            result[index], result_encoded[index] = new, _encoded_entry(new)  # same place in the order
            continue
        if index is not None:
            gone.add(index)
        if new is not None:
            moved.append(new)
    if gone:
        result = [kept for index, kept in enumerate(result) if index not in gone]
        result_encoded = [kept for index, kept in enumerate(result_encoded) if index not in gone]
    for added in moved:
        index = bisect.bisect_left(result, _git_order(added), key=_git_order)
        result.insert(index, added)
        result_encoded.insert(index, _encoded_entry(added))
    return result, result_encoded


@dataclass(frozen=True)
class _CommitConfig:
    author: str  # "Name <email>", as git writes it
    committer: str


def _config_files(git_dir: Path) -> list[Path]:
    """The configuration files git reads for a clone, in its order (system, user, global, the clone's)."""
    home = Path(os.environ.get("HOME", "~")).expanduser()
    xdg = Path(os.environ["XDG_CONFIG_HOME"]) if os.environ.get("XDG_CONFIG_HOME") else home / ".config"
    return [Path("/etc/gitconfig"), xdg / "git" / "config", home / ".gitconfig", git_dir / "config"]


def _stat_key(path: Path) -> object:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


def _read_commit_config(paths: Sequence[Path]) -> _CommitConfig | None:
    """Who commits per these files (author.* and committer.* over user.*), or None when git must commit: signing
    on, an includes or encoding setting, an attributes file, or a name or email git would change."""
    parser = gitpython.GitConfigParser([str(p) for p in paths if p.exists()], read_only=True)
    try:
        parser.read()
    except Exception as exc:
        log.debug("committing with git: cannot read the git configuration: %s", exc)
        return None

    def value(section: str, key: str) -> str | None:
        found = parser.get_value(section, key, default="")
        return str(found) if found != "" else None

    sign = value("commit", "gpgsign")
    if (sign is not None and sign.lower() not in ("false", "no", "off", "0")) or any(
            parser.has_section(s) for s in ("include", "i18n")) or value("core", "attributesfile") or any(
            section.startswith("includeIf") for section in parser.sections()):
        return None
    people = []
    for who in ("author", "committer"):
        name, email = value(who, "name") or value("user", "name"), value(who, "email") or value("user", "email")
        if not name or not email or any(text != text.strip(_CRUD) or "<" in text or ">" in text
                                        for text in (name, email)):
            return None
        people.append(f"{name} <{email}>")
    return _CommitConfig(*people)


def _outside_record(path: str) -> bool:
    return not path.startswith(STATUS_PREFIXES)


def _packed_ref(git_dir: Path, name: str) -> str | None:
    try:
        text = (git_dir / "packed-refs").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    suffix = " " + name
    return next((line.split(" ", 1)[0] for line in text.splitlines() if line.endswith(suffix)
                 and line.split(" ", 1)[1] == name), None)


def _git_time(now: float) -> str:
    """`1764547200 +0100`: seconds and the local offset, as git writes them in a commit."""
    seconds = int(now)
    offset = time.localtime(seconds).tm_gmtoff // 60
    sign = "-" if offset < 0 else "+"
    return f"{seconds} {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def _clean_message(message: str) -> str:
    """The message as `git commit --cleanup=whitespace` stores it: trailing spaces and leading, trailing and
    repeated blank lines gone, one newline at the end."""
    lines = [line.rstrip() for line in message.split("\n")]
    kept: list[str] = []
    for line in lines:
        if line or (kept and kept[-1]):
            kept.append(line)
    while kept and not kept[-1]:
        kept.pop()
    return "\n".join(kept) + "\n"


class _LeaveToGit(Exception):
    """A commit the in-process writer does not make exactly as git would: `git commit` makes it."""


@dataclass(frozen=True)
class _PushOutcome:
    any_pushed: bool
    rejected: bool = False  # non-fast-forward: fetch, rebase and retry
    error: str | None = None  # refused for good (e.g. by a server hook)


# --- module helpers -----------------------------------------------------------------------------------------


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_EDITOR="true", GIT_SEQUENCE_EDITOR="true", LC_ALL="C",
               GIT_LITERAL_PATHSPECS="1", GIT_MERGE_AUTOEDIT="no")
    return env


def _stream(command: list[str], cwd: Path, on_output: Callable[[str], bool]) -> _Run:
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    chunks: list[str] = []
    stopped = False
    with tempfile.TemporaryFile() as err, subprocess.Popen(
            command, cwd=cwd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
            env=_git_env()) as proc:
        stdout = cast(io.BufferedReader, proc.stdout)
        while data := stdout.read1(65536):  # whatever is available, so we can stop early
            text = decoder.decode(data)
            chunks.append(text)
            if on_output(text):
                stopped = True
                proc.terminate()
                break
        proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", errors="replace")
    if not stopped and (tail := decoder.decode(b"", final=True)):
        chunks.append(tail)
        on_output(tail)
    return _Run(0 if stopped else proc.returncode, "".join(chunks), stderr)


# One commit of `git log`: sha, author, committer, commit time, subject, trailers, then (with --name-only) the paths.
_LOG_FORMAT = "%x1e%H%x1f%an%x1f%ae%x1f%cn%x1f%ce%x1f%cI%x1f%s%x1f%(trailers:only,unfold)%x1f"


def _parse_record(record: str, own: tuple[str, str]) -> tuple[Change, str]:
    """A `_LOG_FORMAT` record -> its Change and the rest (the paths it touched, with --name-only)."""
    fields = record.split("\x1f")
    fields += [""] * (9 - len(fields))
    sha, author, email, committer, committer_email, when, subject, trailer_text, names = fields[:9]
    trailers = []
    for line in trailer_text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            trailers.append((key.strip().lower(), value.strip()))
    found = dict(reversed(trailers))  # the first of each key
    change = Change(
        commit=sha.strip(),
        action=found.get("grayops-action") or None,
        reason=found.get("grayops-reason") or subject or None,
        author=f"{author} <{email}>" if author or email else None,
        committer=f"{committer} <{committer_email}>" if committer or committer_email else None,
        trailers=tuple(trailers),
        at=_commit_time(when),
    )
    # who asked: a Requested-By trailer is trusted in grayops's own commits only; in a human's it is a claim
    by = (found.get("requested-by") if is_own(change, own) else None) or author or None
    return replace(change, by=by), names


def _commit_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip()).astimezone(UTC)
    except ValueError:
        return None


def _take_record(record: str, wanted: set[str], found: dict[str, Change], own: tuple[str, str]) -> None:
    if record.count("\x1f") < 8:
        return
    change, names = _parse_record(record, own)
    for name in names.split("\0"):
        name = name.lstrip("\n")
        if name in wanted and name not in found:
            found[name] = change


def _message(message: str | Sequence[str], trailers: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    """The subject (one line, or one line per item of a sequence), a blank line and the trailers. Whatever the
    message and values hold, each is one line: a line break would let data end the subject and add a paragraph
    (or a `---`) that git reads as trailers."""
    pairs = list(trailers.items()) if isinstance(trailers, Mapping) else list(trailers)
    lines = [one_line(line, MESSAGE_LIMIT) for line in ([message] if isinstance(message, str) else message)]
    subject = "\n".join(line for line in lines if line) or "grayops"
    lines = []
    for key, value in pairs:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", key):
            raise ValueError(f"invalid trailer key {key!r}")
        lines.append(f"{key}: {_trailer_value(str(value))}")
    return subject + ("\n\n" + "\n".join(lines) if lines else "") + "\n"


def _trailer_value(value: str) -> str:
    return one_line(value, MESSAGE_LIMIT)


def _safe_relpath(path: str) -> str:
    rel = path.replace("\\", "/")
    parts = rel.split("/")
    if (not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or parts[0] == ".git"
            or not rel.isprintable()):
        raise ValueError(f"not a plain relative path inside the repository: {path!r}")
    return rel


def _read_regular(path: Path) -> str | None:
    """A working tree file's text as a commit is about to overwrite it (CRLF kept); None if absent, not a regular
    file, too big or not UTF-8."""
    data = read_plain_file(path, MAX_RECORD_BYTES)
    try:
        return data.decode("utf-8") if isinstance(data, bytes) else None
    except UnicodeDecodeError:
        return None


def _in_the_way(root: Path, rel: str) -> tuple[str, str] | None:
    """The first entry on the way to `rel` under `root` that writing it would follow or trip on, and what it is."""
    parts = rel.split("/")
    for depth in range(1, len(parts) + 1):
        sub = "/".join(parts[:depth])
        try:
            mode = os.lstat(root / sub).st_mode
        except FileNotFoundError:
            return None  # nothing further exists: created as plain directories
        if stat.S_ISLNK(mode):
            return sub, "a symlink"
        if depth < len(parts) and not stat.S_ISDIR(mode):
            return sub, "not a directory"
        if depth == len(parts) and not stat.S_ISREG(mode):
            return sub, "not a regular file"
    return None


def _remove_entry(path: Path) -> None:
    """Take an entry out of the working tree: a symlink itself (never its target), a file, or a real directory."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)  # a real directory (rmtree does not follow the symlinks inside it)
    else:
        path.unlink()


_HALF_WRITTEN = re.compile(r"\..+\.[a-z0-9_]{8}")  # what `_write_atomic`'s temporary file is named


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _show(command: Sequence[str]) -> str:
    return redact_url(" ".join(command[:3]) + (" ..." if len(command) > 3 else ""))


def _refusal(failed: Sequence[Sequence[str]], stderr: str) -> str:
    """`push of main refused by the remote: pre-receive hook declined (pushes are frozen until 18:00)`: git's
    reason for each refused branch, and the first thing the remote itself said (a hook's message)."""
    reasons = []
    for parts in failed:
        branch = parts[1].rpartition(":")[2].removeprefix("refs/heads/")
        found = re.search(r"\((.*)\)\s*$", parts[2])
        reasons.append(f"{branch} refused by the remote: {found.group(1) if found else parts[2]}")
    said = next((text for line in stderr.splitlines()
                 if line.startswith("remote:") and (text := line[len("remote:"):].strip())), None)
    return redact_url("push of " + "; ".join(reasons) + (f" ({said})" if said else ""))


def _synced_ref(tree: _Tree) -> str:
    return f"refs/grayops/synced/{tree.branch}"


def _holder_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", errors="replace").strip()
    return int(text) if text.isdigit() else None


def _refused_objects(stderr: str) -> str | None:
    """git's fsck complaint when a fetch or clone refused malformed objects (e.g. `hasDotdot: contains '..'`)."""
    found = re.search(r"error: object [0-9a-f]+: (\w+: .+)", stderr)
    return f"refused by git's object checks: {found.group(1).strip()}" if found else None


def _git_complaint(stderr: str) -> str:
    """The line of git's stderr that says what went wrong (its first fatal/error line, else its last)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return redact_url(errors[0] if errors else lines[-1] if lines else "no output")


# --- watching -----------------------------------------------------------------------------------------------


def local_remote_path(remote: str) -> Path | None:
    """The directory of a remote given as a plain path or file:// URL; None for ssh, https and the like."""
    if remote.startswith("file://"):
        return Path(unquote(urlparse(remote).path))
    if "://" in remote:
        return None
    colon, slash = remote.find(":"), remote.find("/")
    if colon != -1 and (slash == -1 or colon < slash):
        return None  # scp-like ssh: host:path
    return Path(remote)


class RemoteWatcher:
    """Calls `on_change` (on its own daemon thread) when the refs of a local remote change.

    For ssh/https remotes `start()` does nothing: those are polled or reached by a webhook instead.
    """

    def __init__(self, remote: str, on_change: Callable[[], None], debounce_ms: int = 50) -> None:
        self.remote = remote
        self.on_change = on_change
        self.debounce_ms = debounce_ms
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if local_remote_path(self.remote) is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="grayops-remote-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        root = local_remote_path(self.remote)
        assert root is not None
        while not self._stop.is_set():
            git_dir = root / ".git" if (root / ".git").is_dir() else root
            try:
                for _ in watchfiles.watch(git_dir, watch_filter=_refs_filter(git_dir),
                                          debounce=self.debounce_ms, step=50, stop_event=self._stop,
                                          raise_interrupt=False):
                    try:
                        self.on_change()
                    except Exception:  # a failing callback must not end the watch
                        log.exception("remote change callback failed")
            except Exception as exc:  # the remote directory is gone or unreadable: retry until stopped
                log.warning("cannot watch %s: %s", redact_url(self.remote), exc)
            self._stop.wait(1.0)


def _refs_filter(git_dir: Path) -> Callable[[watchfiles.Change, str], bool]:
    base = str(git_dir.resolve())

    def keep(change: watchfiles.Change, path: str) -> bool:
        rel = os.path.relpath(os.path.realpath(path), base).replace(os.sep, "/")
        return (rel.startswith("refs/") or rel == "packed-refs") and not rel.endswith(".lock")

    return keep
