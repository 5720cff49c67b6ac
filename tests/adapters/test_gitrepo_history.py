"""GitRepo.history for the web view's timeline: when each commit was made, and the record's own history when
status/ and reports/ live on a status branch (README "Web view")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from reconciler.adapters.gitrepo import GitRepo
from tests.adapters.test_gitrepo import PLUGIN_X, git, human_commit


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "clone", "-q", str(bare), str(tmp_path / "human"))
    human_commit(tmp_path / "human", {"grayops.yaml": "kind: Settings\n", "plugins/x.yaml": PLUGIN_X,
                                      "status/x.yaml": "phase: idle\n"}, "seed")
    return bare


def test_history_says_when_each_commit_was_made(remote: Path, tmp_path: Path) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    repo = GitRepo(str(remote), tmp_path / "work")
    repo.ensure_clone()
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "x 1.5.0: batch canary started",
                {"Grayops-Action": "batch-start", "Grayops-Batch": "canary", "Requested-By": "alice"}, status=True)
    [change, seed] = repo.history(["status/x.yaml"])
    assert change.action == "batch-start" and change.trailer("Grayops-Batch") == "canary" and change.by == "alice"
    assert change.reason == "x 1.5.0: batch canary started"
    assert change.at is not None and before <= change.at <= datetime.now(UTC) + timedelta(seconds=2)
    assert seed.at is not None and seed.at <= change.at


def test_history_of_the_record_reads_the_status_branch(remote: Path, tmp_path: Path) -> None:
    repo = GitRepo(str(remote), tmp_path / "work", status_branch="grayops-status")
    repo.ensure_clone()
    repo.commit({"status/x.yaml": "phase: rolling\n"}, "x 1.5.0: started", {"Grayops-Action": "start"}, status=True)
    repo.commit({"status/x.yaml": "phase: done\n"}, "x 1.5.0: succeeded", {"Grayops-Action": "succeed"}, status=True)
    assert [c.action for c in repo.history(["status/x.yaml"])] == ["succeed", "start"]
    human_commit(remote.parent / "human", {"plugins/x.yaml": "kind: Plugin\n"}, "x 1.6.0")
    repo.fetch()
    repo.integrate()
    assert [c.reason for c in repo.history(["plugins/x.yaml"], limit=1)] == ["x 1.6.0"]
