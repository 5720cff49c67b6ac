"""The two-person rule, enforced by the reconciler on every approval it reads (README "The two-person rule"):
a real git remote, the sim fleet and the real `grayops` command in child processes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import FAST_POLICY, Human, git, grayops, plugin_yaml, remote_status, settings_yaml

TIERS = {"canary": 1, "staging": 2, "prod": 3}
GATED = FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}",
                            "{name: all, size: 100%, bake: 300ms, approval: true}")


def seed(human: Human, version: str = "1.5.0", message: str | None = None) -> None:
    human.commit(message or f"billing {version}", {
        "grayops.yaml": settings_yaml(TIERS, "sim:\n  upgradeSeconds: 0.05\n"),
        "policies/fast.yaml": GATED,
        "plugins/billing.yaml": plugin_yaml("billing", version),
    })


def run_once(human: Human, workdir: Path) -> subprocess.CompletedProcess[str]:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress")
    assert done.returncode == 0, done.stderr
    return done


def approval(version: str, commit: str, by: str) -> str:
    return ("apiVersion: grayops.dev/v1\nkind: Approvals\nmetadata: {name: billing}\napprovals:\n"
            f"  - {{version: \"{version}\", batch: all, desiredCommit: {commit}, by: {by}, "
            "at: \"2025-03-01T12:00:00Z\"}\n")


def test_a_hand_written_approval_by_the_versions_author_is_refused_alerted_and_shown(fleet_repo: Human,
                                                                                   tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)  # committed by "Alice Ops <alice@example.com>"
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "AwaitingApproval"

    # Alice writes the approval herself, even naming someone else as the approver: the record's `by` is a claim.
    human.pull()
    human.commit("approve billing", {"approvals/billing.yaml": approval("1.5.0", status["desiredCommit"], "bob")})
    done = run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "AwaitingApproval", status
    assert [b["name"] for b in status["batches"]] == ["canary", "wave-1"]  # `all` never started
    assert "ALERT approval_refused" in done.stderr
    assert "two-person rule" in status["reason"] and "Alice Ops" in status["reason"]
    shown = grayops("status", "--repo", str(human.remote))
    assert "the approval by bob was refused" in shown.stdout

    approved = grayops("approve", "billing", "--batch", "all", "--as", "bob", "--repo", str(human.remote))
    assert approved.returncode == 0, approved.stderr
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded"
    assert status["batches"][-1]["approvedBy"] == "bob"


def test_the_cli_refuses_an_approval_by_the_author_under_another_form_of_their_name(fleet_repo: Human,
                                                                                  tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    run_once(human, workdir)
    before = human.log("--format=%H")
    for name in ("alice", "ALICE@example.com", "alice ops"):  # the email, its local part, the name: any case
        refused = grayops("approve", "billing", "--batch", "all", "--as", name, "--repo", str(human.remote))
        assert refused.returncode == 1, (name, refused.stdout)
        assert "cannot also approve it (two-person rule)" in refused.stderr
    assert human.log("--format=%H") == before  # nothing committed


def test_a_requested_by_line_in_a_human_commit_does_not_hide_its_author(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, message="billing 1.5.0\n\nRequested-By: Bob Builder")
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "AwaitingApproval"
    assert status["requestedBy"] == "Alice Ops"  # the trailer of a human commit is a claim, not who asked
    refused = grayops("approve", "billing", "--batch", "all", "--as", "alice", "--repo", str(human.remote))
    assert refused.returncode == 1 and "two-person rule" in refused.stderr


def test_the_committer_counts_as_well_as_the_author(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.write("grayops.yaml", settings_yaml(TIERS, "sim:\n  upgradeSeconds: 0.05\n"))
    human.write("policies/fast.yaml", GATED)
    human.write("plugins/billing.yaml", plugin_yaml("billing", "1.5.0"))
    git(human.clone, "add", "-A")
    git(human.clone, "commit", "-q", "--author", "Carol Dev <carol@example.com>", "-m", "billing 1.5.0")
    human.push()  # committed by Alice Ops on Carol's behalf
    run_once(human, workdir)
    for name in ("carol", "alice"):
        refused = grayops("approve", "billing", "--batch", "all", "--as", name, "--repo", str(human.remote))
        assert refused.returncode == 1 and "two-person rule" in refused.stderr, name
    assert grayops("approve", "billing", "--batch", "all", "--as", "bob", "--repo", str(human.remote)).returncode == 0
