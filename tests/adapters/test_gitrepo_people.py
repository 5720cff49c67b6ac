"""What GitRepo tells about who made a commit, for the two-person rule, against real git."""

from __future__ import annotations

from pathlib import Path

from reconciler.adapters.gitrepo import GitRepo
from tests.adapters.test_gitrepo import PLUGIN_X, git, human, human_commit, remote, repo

__all__ = ["human", "remote", "repo"]  # fixtures


def test_a_requested_by_line_is_trusted_in_grayops_commits_only(repo: GitRepo, human: Path) -> None:
    ours = repo.commit({"plugins/x.yaml": PLUGIN_X.replace("false", "true")}, "pause x", [("Requested-By", "alice")])
    assert ours is not None and repo.push().pushed
    git(human, "pull", "-q", "origin", "main")
    theirs = human_commit(human, {"plugins/y.yaml": PLUGIN_X.replace("name: x", "name: y").replace("1.5.0", "1.6.0")},
                          "y 1.6.0\n\nRequested-By: Bob Builder")
    repo.fetch()
    assert repo.integrate() is None
    changes = repo.last_changes(["plugins/x.yaml", "plugins/y.yaml"])
    assert changes["plugins/x.yaml"].by == "alice"
    assert changes["plugins/y.yaml"].by == "Human"  # the trailer of a human's commit is only a claim
    y = repo.change_of(theirs[:8])
    assert y is not None and y.commit == theirs
    assert (y.author, y.committer) == ("Human <human@example.com>", "Human <human@example.com>")
    assert y.trailer("Requested-By") == "Bob Builder"
    assert repo.change_of("0000000") is None

    assert [c.commit for c in repo.history(["plugins/x.yaml", "plugins/y.yaml"], since=ours)] == [theirs]
    assert [c.commit for c in repo.history(["plugins/y.yaml"], limit=1)] == [theirs]
    assert "1.5.0" in (repo.file_at(ours, "plugins/y.yaml") or "") and repo.file_at(ours, "plugins/z.yaml") is None
    assert repo.report_paths() == ["reports/x.md"]
