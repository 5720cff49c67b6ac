"""Shared by the benchmarks: figures printed with their targets, the machine's load with them, and the limit a
figure made of commits is compared with: the same commits written by one `git fast-import` process.

A figure made of commits (a tick's status commits, a rollout's) is printed with the time one `git fast-import`
takes to write exactly those commits (`replay`: the commits exported from the repository grayops wrote them to,
imported into a copy of it as it was before) and the ratio grayops / fast-import.
"""

from __future__ import annotations

import math
import os
import subprocess
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True).stdout.decode()


def load() -> str:
    """The load average (1, 5, 15 min) and the cores: a figure on a shared machine is read with it."""
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f} on {os.cpu_count()} cores"


@dataclass(frozen=True)
class Commit:
    """One commit to write with fast-import: files (path -> text, None deletes) and the whole message."""

    files: dict[str, str | None]
    message: str
    author: str = "grayops <grayops@localhost>"


def stream(commits: Iterable[Commit], ref: str = "refs/heads/main", start: int = 1_800_000_000) -> bytes:
    """A fast-import stream of `commits` on `ref`, one second apart from `start`, each on the ref's last."""
    parts: list[bytes] = []
    for index, commit in enumerate(commits):
        message = commit.message.encode()
        parts.append(b"commit %s\ncommitter %s %d +0000\ndata %d\n%s\n"
                     % (ref.encode(), commit.author.encode(), start + index, len(message), message))
        for path, text in commit.files.items():
            if text is None:
                parts.append(b"D %s\n" % path.encode())
            else:
                data = text.encode()
                parts.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    return b"".join(parts)


def fast_import(repo: Path, data: bytes) -> float:
    """Seconds one `git fast-import` takes to write `data` into `repo`."""
    started = time.perf_counter()
    git(repo, "fast-import", "--quiet", stdin=data)
    return time.perf_counter() - started


def snapshot(repo: Path, into: Path) -> Path:
    """A bare copy of `repo` as it is now, for `replay` to write later commits into."""
    git(repo.parent, "clone", "-q", "--bare", "--no-local", str(repo), str(into))
    return into


def replay(repo: Path, before: Path, branch: str = "main") -> tuple[float, int]:
    """The limit for the commits `repo`'s `branch` gained since `before` (a `snapshot`): seconds one `git
    fast-import` takes to write the same commits (objects, messages, dates: the same ids) into `before`, and how
    many commits that was."""
    base = git(before, "rev-parse", branch).strip()
    exported = subprocess.run(["git", "fast-export", "--reference-excluded-parents", f"{base}..{branch}"], cwd=repo,
                              capture_output=True, check=True).stdout
    count = int(git(repo, "rev-list", "--count", f"{base}..{branch}"))
    seconds = fast_import(before, exported)
    same = git(before, "rev-parse", branch).strip() == git(repo, "rev-parse", branch).strip()
    assert same, "fast-import did not write the same commits"
    return seconds, count


@dataclass(frozen=True)
class Figure:
    """A measured figure, its target (None: none set) and, for commits, the fast-import limit (the same unit)."""

    name: str
    measured: float
    unit: str
    target: float | None = None
    limit: float | None = None
    note: str = ""

    @property
    def met(self) -> str:
        if self.target is None:
            return ""
        if math.isnan(self.measured):  # not measured: a wait ran out, or the benchmark failed
            return "n/a"
        return "ok" if self.measured <= self.target else "OVER"

    @property
    def ratio(self) -> str:
        return f"x{self.measured / self.limit:.1f}" if self.limit else ""

    def line(self) -> str:
        """One line: figure, measured, target (met or OVER), fast-import, ratio, note."""
        target = f"<= {number(self.target)} {self.unit}" if self.target is not None else "-"
        limit = f"{number(self.limit)} {self.unit}" if self.limit is not None else "-"
        return (f"  {self.name:<{WIDTH}}{number(self.measured):>9} {self.unit:<3}{target:>14} {self.met:<4}{limit:>13}"
                f"{self.ratio:>7}  {self.note}")


WIDTH = 52  # of a figure's name


def number(value: float) -> str:
    """Three significant digits or so, never a power of ten: 1245, 74.3, 0.012."""
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"


def table(title: str, figures: Sequence[Figure]) -> None:
    print(f"{title} ({load()})")
    print(f"  {'figure':<{WIDTH}}{'measured':>13}{'target':>14}     {'fast-import':>13}{'ratio':>7}")
    for figure in figures:
        print(figure.line())
