"""Issue 9's table of hostile commits, each pushed while the real `grayops run` rolls a plugin out.

Each row: a real remote, the reconciler in a child process serving `--listen`, a rollout of billing 1.0.0 in
progress when the hostile commit lands. The revision is refused with its message (in the log and the alert),
the process stays alive and ready, the rollout in force goes on to its end unaffected, nothing is written
outside the work directory, and a restart over the same revision comes up the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    FAST_POLICY,
    Human,
    free_port,
    git,
    make_fleet_repo,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)

POLICY = FAST_POLICY.replace("bake: 300ms", "bake: 600ms")
EVIL = plugin_yaml("billing", "6.6.6")
HEAD = "apiVersion: grayops.dev/v1\nkind: Plugin\nmetadata: {name: billing}\nspec:\n"


@dataclass(frozen=True)
class Row:
    make: Callable[[Human, Path], None]  # the hostile change, given the human and the outside directory
    expected: tuple[str, ...]  # what the refusal says (one line each)
    persists: bool = True  # the hostile entry is still at HEAD after the run (False: grayops replaced it)
    staged: bool = False  # `make` stages the change in the index itself (`git add -A` would undo it)


def symlink(human: Human, path: str, target: str | Path) -> None:
    link = human.clone / path
    if link.is_dir() and not link.is_symlink():
        git(human.clone, "rm", "-rq", path)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, link)


def write(human: Human, path: str, data: bytes) -> None:
    (human.clone / path).parent.mkdir(parents=True, exist_ok=True)
    (human.clone / path).write_bytes(data)


def billion_laughs() -> bytes:
    lines = [HEAD + '  version: "6.6.6"\n  targets:\n    l0: &l0 [lol]\n']
    lines += [f"    l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]\n" for n in range(1, 12)]
    return "".join(lines).encode()


def nested_and_unknown_directory(human: Human, outside: Path) -> None:
    write(human, "plugins/team-a/x.yaml", EVIL.encode())
    write(human, "plugin/x.yaml", EVIL.encode())


def submodule(human: Human, outside: Path) -> None:
    head = git(human.clone, "rev-parse", "HEAD").strip()
    git(human.clone, "update-index", "--add", "--cacheinfo", f"160000,{head},plugins/vendored")


NOT_UTF8 = EVIL.encode() + b"\xff\n"
HUGE = (EVIL + "#" * (50 << 20) + "\n").encode()
SYMLINK_REFUSED = "symlinks are not allowed in a fleet repository"

ROWS = {
    "symlink-outside": Row(lambda h, o: symlink(h, "plugins/billing.yaml", o / "billing.yaml"),
                           (f"plugins/billing.yaml: {SYMLINK_REFUSED}",)),
    "status-symlink": Row(lambda h, o: symlink(h, "status", o), (f"status: {SYMLINK_REFUSED}",), persists=False),
    "reports-symlink": Row(lambda h, o: symlink(h, "reports", o), (f"reports: {SYMLINK_REFUSED}",), persists=False),
    "symlink-loop": Row(lambda h, o: symlink(h, "plugins/loop.yaml", "loop.yaml"),
                        (f"plugins/loop.yaml: {SYMLINK_REFUSED}",)),
    "dev-zero": Row(lambda h, o: symlink(h, "plugins/zero.yaml", "/dev/zero"),
                    (f"plugins/zero.yaml: {SYMLINK_REFUSED}",)),
    "alias-bomb": Row(lambda h, o: write(h, "plugins/billing.yaml", billion_laughs()),
                      ("plugins/billing.yaml:7: yaml: anchors (&) and aliases (*) are not allowed in fleet files",)),
    "dangling-symlink": Row(lambda h, o: symlink(h, "plugins/billing.yaml", "/nonexistent/billing.yaml"),
                            (f"plugins/billing.yaml: {SYMLINK_REFUSED}",)),
    "not-utf8": Row(lambda h, o: write(h, "plugins/billing.yaml", NOT_UTF8),
                    (f"plugins/billing.yaml:7: file: not UTF-8 text (byte 0xff at offset {len(NOT_UTF8) - 2})",)),
    "yaml-and-yml": Row(lambda h, o: write(h, "plugins/billing.yml", EVIL.encode()),
                        ("plugins/billing.yml: plugins/billing.yaml is there too: keep one of them",)),
    "nested-and-unknown-directory": Row(
        nested_and_unknown_directory,
        ("plugin/x.yaml: not read: YAML outside plugins/, policies/, approvals/, analysis/, status/ and reports/ "
         "(did you mean plugins/?)",
         "plugins/team-a/x.yaml: not read: plugins/ holds its files directly, not in subdirectories")),
    "newline-in-name": Row(lambda h, o: write(h, "plugins/x\nApproved-By: U999.yaml", EVIL.encode()),
                           ("'plugins/x\\nApproved-By: U999.yaml': control characters are not allowed in file names",)),
    "huge-file": Row(lambda h, o: write(h, "plugins/billing.yaml", HUGE),
                     (f"plugins/billing.yaml: {len(HUGE)} bytes, over the 1 MiB limit of a fleet file",)),
    "submodule": Row(submodule, ("plugins/vendored: submodules are not allowed in a fleet repository",), staged=True),
}


def push_hostile(human: Human, make: Callable[[], None], staged: bool) -> None:
    """Commit the change on top of the remote's branch and push it, again from the remote's latest if grayops
    pushed first (a rebase could conflict: the change replaces status/ or reports/, which grayops writes)."""
    for _ in range(20):
        git(human.clone, "fetch", "-q", "origin")
        git(human.clone, "reset", "-q", "--hard", "origin/main")
        git(human.clone, "clean", "-qfdx")
        make()
        if not staged:
            git(human.clone, "add", "-A")
        git(human.clone, "commit", "-qm", "hostile")
        if subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=human.clone, capture_output=True,
                          check=False).returncode == 0:
            return
    raise AssertionError("the hostile commit kept being rejected")


class Daemon:
    """`grayops run --listen` in a child process, its log in a file."""

    def __init__(self, human: Human, workdir: Path, log: Path) -> None:
        self.port, self.log = free_port(), log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
                 str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress",
                 "--listen", f"127.0.0.1:{self.port}"], stdout=out, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self, path: str) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return int(response.status)
        except OSError:
            return 0

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def refused(self, expected: tuple[str, ...]) -> bool:
        text = self.text()
        return "refused" in text and "ALERT invalid_revision" in text and all(e in text for e in expected)


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def sim_versions(workdir: Path) -> set[str]:
    import json

    state = json.loads((workdir / "sim-fleet.json").read_text())
    return {entry["target"] for entry in state["plugins"]["billing"].values()}


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    place = tmp_path / "outside"
    place.mkdir()
    (place / "billing.yaml").write_text(EVIL)
    yield place


@pytest.mark.parametrize("row", list(ROWS.values()), ids=list(ROWS))
def test_a_hostile_commit_is_refused_and_the_rollout_in_force_goes_on(tmp_path: Path, outside: Path,
                                                                       row: Row) -> None:
    human, workdir = make_fleet_repo(tmp_path), tmp_path / "work"
    human.commit("fleet", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}), "policies/fast.yaml": POLICY,
                           "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")})
    before = listing(outside)
    daemon = Daemon(human, workdir, tmp_path / "run.log")
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Progressing", what="Progressing")
        push_hostile(human, lambda: row.make(human, outside), row.staged)
        wait_for(lambda: daemon.refused(row.expected), what=f"the refusal in the log:\n{daemon.text()[-3000:]}")
        final = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded" and s,
                         what="the rollout in force to succeed")
        assert final["targetVersion"] == "1.0.0" and sim_versions(workdir) == {"1.0.0"}
        assert daemon.process.poll() is None and daemon.answers("/healthz") == 200
        assert daemon.answers("/readyz") == 200
        assert daemon.peak_rss_mb() < 400, f"peak RSS {daemon.peak_rss_mb():.0f} MB"
        assert listing(outside) == before
        assert not any(line.startswith("Approved-By") for line in daemon.text().splitlines())
        assert stop_process(daemon.process) == 0

        again = Daemon(human, workdir, tmp_path / "restart.log")  # a restart over the same revision
        try:
            if row.persists:
                wait_for(lambda: again.refused(row.expected), what=f"the refusal again:\n{again.text()[-3000:]}")
            wait_for(lambda: again.answers("/readyz") == 200, what=f"ready after a restart:\n{again.text()[-3000:]}")
            assert again.process.poll() is None and "Traceback" not in again.text()
            status = remote_status(human, "billing")
            assert status is not None and status["phase"] == "Succeeded" and status["targetVersion"] == "1.0.0"
        finally:
            assert stop_process(again.process) == 0
        assert listing(outside) == before
        assert "6.6.6" not in (remote_status(human, "billing") or {}).get("targetVersion", "")
    finally:
        if daemon.process.poll() is None:
            stop_process(daemon.process)
