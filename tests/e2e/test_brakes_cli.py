"""The brakes from the command line, end to end: `run --once` with a rollout waiting for a dependency, `retry`,
`status` and `report` as a user reads them. A real git remote, the sim fleet, the real command."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.conftest import FAST_POLICY, Human, grayops, plugin_yaml, remote_file, remote_status, settings_yaml
from tests.e2e.test_run import FAULTS, TIERS, run_once, seed, sim_versions

GATED = (FAST_POLICY.replace("metadata: {name: fast}", "metadata: {name: gated}")
         .replace("{name: all, size: 100%, bake: 300ms}", "{name: all, size: 100%, bake: 300ms, approval: true}"))
WAVE_GATED = (FAST_POLICY.replace("metadata: {name: fast}", "metadata: {name: wave-gated}")
              .replace("{name: wave-1, size: 50%, bake: 300ms}", "{name: wave-1, size: 50%, bake: 300ms, "
                                                                 "approval: true}"))
NO_ROLLBACK = FAST_POLICY.replace("metadata: {name: fast}", "metadata: {name: no-rollback}") + \
    "  rollback: {limit: 0}\n"


def last_commit(human: Human) -> str:
    return human.log("-1", "--format=%B")


# --- 6. waiting for a dependency ------------------------------------------------------------------------------


def test_once_exits_while_a_rollout_waits_for_a_dependency_that_awaits_approval(fleet_repo: Human,
                                                                                tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("fleet: auth behind an approval, billing after auth", {
        "grayops.yaml": settings_yaml(TIERS, FAULTS),
        "policies/fast.yaml": FAST_POLICY, "policies/gated.yaml": GATED,
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0", policy="gated"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", extra="  dependsOn: [auth]\n"),
    })
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress", timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    auth, billing = remote_status(human, "auth"), remote_status(human, "billing")
    assert auth is not None and auth["phase"] == "AwaitingApproval"
    assert billing is not None and billing["phase"] == "Progressing"
    assert billing["waiting"]["for"] == "auth 2.0.0 (batch all awaits approval)"
    assert [b["name"] for b in billing["batches"]] == ["canary", "wave-1"]  # `all` waits, not started
    shown = grayops("status", "--repo", str(human.remote))
    assert "waiting for auth 2.0.0 (batch all awaits approval)" in shown.stdout, shown.stdout

    approved = grayops("approve", "auth", "--batch", "all", "--as", "bob", "--repo", str(human.remote))
    assert approved.returncode == 0, approved.stderr
    run_once(human, workdir)
    auth, billing = remote_status(human, "auth"), remote_status(human, "billing")
    assert auth is not None and auth["phase"] == "Succeeded"
    assert billing is not None and billing["phase"] == "Succeeded" and billing["waiting"] is None
    assert any("waits for auth 2.0.0" in h["reason"] for h in billing["history"])


# --- 8. retry -------------------------------------------------------------------------------------------------


def test_retry_runs_the_failed_batch_of_a_failed_first_install_again(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    bad_first = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.0.0\", errorRate: 0.2}\n"
    human.commit("fleet: billing 1.0.0", {"grayops.yaml": settings_yaml(TIERS, bad_first),
                                          "policies/fast.yaml": FAST_POLICY,
                                          "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")})
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Failed"
    assert "a human must decide: grayops retry billing, or commit a new version" in status["reason"]
    repo = str(human.remote)
    human.pull()
    human.commit("the 1.0.0 fault is fixed", {"grayops.yaml": settings_yaml(TIERS)})

    retried = grayops("retry", "billing", "--repo", repo, "--as", "bob", "--reason", "fault fixed")
    assert retried.returncode == 0, retried.stderr
    assert "retry billing 1.0.0 batch canary: fault fixed" in retried.stdout
    message = last_commit(human)
    assert "Grayops-Action: retry" in message and "Requested-By: bob" in message
    assert f"Grayops-Rollout: {status['rolloutId']}" in message
    record = yaml.safe_load(remote_file(human, "approvals/billing.yaml") or "")["retries"]
    assert record == [{"version": "1.0.0", "rolloutId": status["rolloutId"], "batch": "canary",
                       "failedAt": status["finished"], "by": "bob", "at": record[0]["at"]}]
    again = grayops("retry", "billing", "--repo", repo, "--as", "bob")
    assert again.returncode == 0 and "already asked" in again.stdout
    assert last_commit(human) == message  # no change, no commit

    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status and status["reason"]
    assert any(h["reason"] == "batch canary retried by bob" for h in status["history"])
    assert sim_versions(workdir) == {"1.0.0"}
    nothing = grayops("retry", "billing", "--repo", repo, "--as", "bob")
    assert nothing.returncode == 1 and "nothing failed to retry" in nothing.stderr


def test_retry_of_a_rollout_paused_after_a_failed_batch_resumes_it_in_the_same_commit(fleet_repo: Human,
                                                                                    tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("fleet: billing 1.5.0, no rollback", {"grayops.yaml": settings_yaml(TIERS, FAULTS),
                                                       "policies/no-rollback.yaml": NO_ROLLBACK,
                                                       "plugins/billing.yaml": plugin_yaml("billing", "1.5.0",
                                                                                           policy="no-rollback")})
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="no-rollback")})
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Paused"
    assert "grayops retry billing, or grayops rollback billing, or commit a new version" in status["reason"]
    assert "paused: true" in (remote_file(human, "plugins/billing.yaml") or "")  # the engine's pause, in git

    human.pull()
    human.commit("the 1.6.0 fault is fixed", {"grayops.yaml": settings_yaml(TIERS)})
    retried = grayops("retry", "billing", "--repo", str(human.remote), "--as", "bob")
    assert retried.returncode == 0, retried.stderr
    changed = human.log("-1", "--name-only", "--format=")
    assert set(changed.split()) == {"approvals/billing.yaml", "plugins/billing.yaml"}
    assert "paused: false" in (remote_file(human, "plugins/billing.yaml") or "")
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded", status and status["reason"]
    assert sim_versions(workdir) == {"1.6.0"}


# --- 9. status and report -------------------------------------------------------------------------------------


def test_status_shows_the_planned_batches_rounded_values_and_a_rollback_as_such(fleet_repo: Human,
                                                                                tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("fleet", {"grayops.yaml": settings_yaml(TIERS, FAULTS), "policies/wave-gated.yaml": WAVE_GATED,
                           "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="wave-gated")})
    run_once(human, workdir)  # the canary passes, wave-1 awaits its approval
    repo = str(human.remote)
    shown = grayops("status", "--repo", repo, "billing")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"billing\s+AwaitingApproval\s+- -> 1.5.0\s+batch 1/3 canary\s+1/8 done", shown.stdout), \
        shown.stdout
    assert re.search(r"batch canary\s+Passed\s+1 instance\(s\)\s+error_rate=\S+ Successful", shown.stdout), \
        shown.stdout
    assert re.search(r"batch wave-1\s+Pending\s+3 instance\(s\)", shown.stdout), shown.stdout
    assert re.search(r"batch all\s+Pending\s+4 instance\(s\)", shown.stdout), shown.stdout
    values = re.findall(r"=([-\d.]+)(?:e[-+]\d+)? ", shown.stdout)
    assert values and all(len(re.sub(r"\D", "", v).lstrip("0")) <= 4 for v in values), values  # rounded

    grayops("approve", "billing", "--batch", "wave-1", "--as", "bob", "--repo", repo)
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="wave-gated")})
    run_once(human, workdir)
    rolled = grayops("status", "--repo", repo)
    assert re.search(r"billing\s+RolledBack\s+1.5.0 -> 1.6.0\s+batch 1/1 canary\s+1/8 rolled back", rolled.stdout), \
        rolled.stdout
    assert " done" not in rolled.stdout


def test_status_of_a_local_clone_is_fetched_first(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    run_once(human, workdir)  # the reconciler pushed status/; the human's clone has not pulled it
    shown = grayops("status", "--repo", str(human.clone))
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"billing\s+Succeeded\s+- -> 1.5.0", shown.stdout), shown.stdout + shown.stderr


def test_report_picks_the_last_finished_rollout_not_the_highest_version_string(fleet_repo: Human,
                                                                              tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("fleet", {"grayops.yaml": settings_yaml(TIERS), "policies/fast.yaml": FAST_POLICY,
                           "policies/gated.yaml": GATED, "plugins/billing.yaml": plugin_yaml("billing", "1.9.0")})
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.10.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.10.0")})
    run_once(human, workdir)
    human.pull()
    human.commit("billing 1.11.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.11.0", policy="gated")})
    run_once(human, workdir)  # 1.11.0 awaits an approval: no report of it yet
    assert (remote_status(human, "billing") or {})["phase"] == "AwaitingApproval"
    report = grayops("report", "billing", "--repo", str(human.remote))
    assert report.returncode == 0, report.stderr
    assert "\n# billing 1.10.0: Succeeded" in report.stdout, report.stdout[:300]  # after the front matter
    listed = grayops("report", "billing", "--repo", str(human.remote), "--list").stdout.split()
    assert [p.split("/")[-1].split("-")[0] for p in listed] == ["1.9.0", "1.10.0"]  # in the order they finished
