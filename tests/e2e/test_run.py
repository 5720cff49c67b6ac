"""`grayops run` end to end: a real git remote, the sim fleet, the real command in a child process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import (
    FAST_POLICY,
    Human,
    free_port,
    grayops,
    plugin_yaml,
    remote_file,
    remote_status,
    settings_yaml,
    wait_for,
)

FAULTS = "sim:\n  upgradeSeconds: 0.05\n  faults:\n    - {version: \"1.6.0\", errorRate: 0.2}\n"
TIERS = {"canary": 1, "staging": 2, "prod": 5}


def seed(human: Human, version: str = "1.5.0", policy: str = FAST_POLICY) -> None:
    human.commit("fleet: clusters, policy, billing " + version, {
        "grayops.yaml": settings_yaml(TIERS, FAULTS),
        "policies/fast.yaml": policy,
        "plugins/billing.yaml": plugin_yaml("billing", version),
    })


def run_once(human: Human, workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(workdir), "--once", "--interval", "0.05",
                   "--poll", "0.2", "--no-progress", *extra)
    assert done.returncode == 0, done.stderr
    return done


def sim_versions(workdir: Path) -> set[str | None]:
    state = json.loads((workdir / "sim-fleet.json").read_text())
    return {entry["target"] for entry in state["plugins"]["billing"].values()}


def trailers(human: Human, key: str) -> list[str]:
    return re.findall(rf"^{key}: (.+)$", human.log("--format=%B"), flags=re.M)


def test_a_good_version_rolls_out_and_a_bad_one_is_rolled_back_and_reverted(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded" and status["targetVersion"] == "1.5.0"
    assert [b["name"] for b in status["batches"]] == ["canary", "wave-1", "all"]
    assert {i["version"] for i in status["instances"].values()} == {"1.5.0"}
    assert sim_versions(workdir) == {"1.5.0"}
    assert remote_file(human, f"reports/billing/1.5.0-{status['rolloutId']}.md") is not None
    assert {"batch-start", "bake", "succeed"} <= set(trailers(human, "Grayops-Action"))  # a tick's last transitions
    record = human.log("--format=%B", "--", "status/billing.yaml")
    for batch in ("canary", "wave-1", "all"):  # every transition has its line, in the commit of its tick
        assert re.search(rf"^billing 1.5.0: batch {batch} started", record, flags=re.M)
        assert re.search(rf"^billing 1.5.0: batch {batch} passed", record, flags=re.M)
    assert re.search(r"^billing 1.5.0: rollout of billing \(none\) -> 1.5.0 begins", record, flags=re.M)
    assert set(trailers(human, "Grayops-Batch")) == {"canary", "wave-1", "all"}
    assert set(trailers(human, "Requested-By")) == {"Alice Ops"}

    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack"
    assert sim_versions(workdir) == {"1.5.0"}
    assert '"1.5.0"' in (remote_file(human, "plugins/billing.yaml") or "")  # git says what runs again
    revert = human.log("-1", "--format=%s%n%b")
    assert "revert billing to 1.5.0" in revert and "Grayops-Action: rollback" in revert
    report = remote_file(human, f"reports/billing/1.6.0-{status['rolloutId']}.md") or ""
    assert "RolledBack" in report and "error_rate 0.2 > max 0.05" in report

    before = human.log("--oneline").count("\n")
    run_once(human, workdir)  # nothing left to do: no retry of 1.6.0, no empty commit
    assert human.log("--oneline").count("\n") == before


def test_commands_are_commits_with_trailers_and_the_reconciler_obeys(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    repo = str(human.remote)
    paused = grayops("pause", "billing", "--repo", repo, "--reason", "incident 42", "--as", "alice")
    assert paused.returncode == 0, paused.stderr
    assert "pause billing: incident 42" in paused.stdout
    message = human.log("-1", "--format=%B")
    assert "Grayops-Action: pause" in message and "Requested-By: alice" in message
    assert "Grayops-Reason: incident 42" in message
    again = grayops("pause", "billing", "--repo", repo, "--as", "alice")
    assert again.returncode == 0 and "already paused" in again.stdout
    assert human.log("-1", "--format=%B") == message  # no change, no commit

    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Paused"
    assert status["paused"]["by"] == "alice" and status["paused"]["reason"] == "incident 42"
    assert not (workdir / "sim-fleet.json").exists()  # paused before the canary: no instance was touched

    resumed = grayops("resume", "billing", "--repo", repo, "--as", "bob")
    assert resumed.returncode == 0, resumed.stderr
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded"
    assert any(h["reason"] == "resumed by bob" for h in status["history"])

    unknown = grayops("pause", "ghost", "--repo", repo)
    assert unknown.returncode == 1 and "no plugin named 'ghost' (known: billing)" in unknown.stderr
    nothing = grayops("rollback", "billing", "--repo", repo)
    assert nothing.returncode == 1 and "no last good version" in nothing.stderr
    usage = grayops("approve", "billing", "--repo", repo)
    assert usage.returncode == 2


def test_approve_and_rollback_commands(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    gated = FAST_POLICY.replace("{name: all, size: 100%, bake: 300ms}",
                                "{name: all, size: 100%, bake: 300ms, approval: true}")
    seed(human, policy=gated)
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "AwaitingApproval"
    repo = str(human.remote)
    wrong = grayops("approve", "billing", "--batch", "canary", "--as", "bob", "--repo", repo)
    assert wrong.returncode == 1 and "does not need an approval (batches that do: all)" in wrong.stderr
    approved = grayops("approve", "billing", "--batch", "all", "--as", "bob", "--repo", repo)
    assert approved.returncode == 0, approved.stderr
    assert "Approved-By: bob" in human.log("-1", "--format=%B")
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "Succeeded"
    assert status["batches"][-1]["approvedBy"] == "bob"

    human.pull()
    human.commit("billing 1.5.1", {"plugins/billing.yaml": plugin_yaml("billing", "1.5.1")})
    run_once(human, workdir)  # waits for the approval of `all` again: it is bound to version and commit
    assert (remote_status(human, "billing") or {})["phase"] == "AwaitingApproval"
    back = grayops("rollback", "billing", "--repo", repo, "--reason", "customer reports", "--as", "carol")
    assert back.returncode == 0, back.stderr
    assert '"1.5.0"' in (remote_file(human, "plugins/billing.yaml") or "")
    run_once(human, workdir)
    status = remote_status(human, "billing")
    assert status is not None and status["phase"] == "RolledBack" and status["rollbackBy"] == "carol"
    assert sim_versions(workdir) == {"1.5.0"}




SLOW_POLICY = FAST_POLICY.replace("bake: 300ms", "bake: 1s")


def test_an_invalid_revision_mid_rollout_is_refused_and_the_rollout_goes_on(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, policy=SLOW_POLICY)
    log = (tmp_path / "run.log").open("w")
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Progressing")
        human.commit("oops", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0", extra="  colour: red\n")})
        final = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded" and s)
        assert final["targetVersion"] == "1.5.0"  # the last good revision stayed in force
        assert daemon.poll() is None  # and run kept running
        text = (tmp_path / "run.log").read_text()
        assert "refused" in text and "plugins/billing.yaml:7: spec.colour: unknown field" in text
        assert "ALERT invalid_revision" in text
        human.commit("fix", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0")})
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "1.7.0"
                 and s["phase"] == "Succeeded")
    finally:
        daemon.terminate()
        assert daemon.wait(timeout=20) == 0


def test_a_human_push_racing_status_pushes_keeps_both(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, policy=SLOW_POLICY)
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Progressing")
        pushed = []
        for i in range(5):  # humans keep pushing while the reconciler commits status
            human.write(f"plugins/extra{i}.yaml", plugin_yaml(f"extra{i}", "1.0.0"))
            pushed.append(human.commit(f"add extra{i}"))
            time.sleep(0.3)
        wait_for(lambda: all((remote_status(human, f"extra{i}") or {}).get("phase") == "Succeeded" for i in range(5))
                 and (remote_status(human, "billing") or {}).get("phase") == "Succeeded", timeout=90)
        history = human.log("--format=%H").split()
        assert set(pushed) <= set(history)  # no human commit lost, nothing forced
        assert any("Grayops-Rollout" in m for m in human.log("--format=%B%x00").split("\x00"))
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)


def test_status_validate_and_plan_commands(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    run_once(human, workdir)
    status = grayops("status", "--repo", str(human.remote))
    assert status.returncode == 0 and re.search(r"billing\s+Succeeded\s+- -> 1.5.0", status.stdout), status.stdout
    one = grayops("status", "--repo", str(human.remote), "billing", "--json")
    assert json.loads(one.stdout)["billing"]["phase"] == "Succeeded"
    assert grayops("status", "--repo", str(human.remote), "ghost").returncode == 1

    human.pull()
    assert grayops("validate", str(human.clone)).returncode == 0
    human.write("plugins/billing.yaml", plugin_yaml("billing", "1.6.0", policy="nope"))
    bad = grayops("validate", str(human.clone))
    assert bad.returncode == 1
    assert "plugins/billing.yaml:6: spec.policy: no policy named 'nope'" in bad.stderr

    human.write("plugins/billing.yaml", plugin_yaml("billing", "1.6.0"))
    human.write("plugins/auth.yaml", plugin_yaml("auth", "2.0.0"))
    human.commit("mr: billing 1.6.0, new auth", push=False)
    plan = grayops("plan", "--repo", str(human.clone), "--base", "origin/main", "--format", "markdown")
    assert plan.returncode == 0, plan.stderr
    assert "`billing` 1.5.0 → 1.6.0" in plan.stdout and "`auth` (none) → 2.0.0" in plan.stdout
    assert "| 1 | canary | 1: canary-1/plugins | 300ms | - |" in plan.stdout
    plain = grayops("plan", "--repo", str(human.clone), "--base", "HEAD")
    assert plain.stdout == "no plugin changes\n"
    as_json = json.loads(grayops("plan", "--repo", str(human.clone), "--format", "json").stdout)
    assert [p["plugin"] for p in as_json["plugins"]] == ["auth", "billing"]


def test_report_command_prints_the_last_report(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    run_once(human, workdir)
    report = grayops("report", "billing", "--repo", str(human.remote))
    assert report.returncode == 0
    for heading in ("| Date |", "| Version | (none) -> 1.5.0 |", "| Environment | canary (1), prod (5), staging (2) |",
                    "| Operator | Alice Ops |", "| Result | Succeeded |", "## Batches", "## Approvals"):
        assert heading in report.stdout
    assert grayops("report", "ghost", "--repo", str(human.remote)).returncode == 1


def test_an_unreachable_remote_at_start_is_a_clear_failure(tmp_path: Path) -> None:
    done = grayops("run", "--repo", str(tmp_path / "nowhere.git"), "--workdir", str(tmp_path / "w"), "--once")
    assert done.returncode == 1
    assert "cannot start" in done.stderr and "nowhere.git" in done.stderr


@pytest.mark.parametrize("argv", [["run"], ["frobnicate"], ["plan", "-o", "xml"]])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path) -> None:
    assert grayops(*argv, cwd=tmp_path).returncode == 2  # outside any clone: `run` has no repository to act on


def test_status_on_its_own_branch_keeps_main_for_humans(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    human.commit("fleet", {"grayops.yaml": settings_yaml(TIERS, FAULTS + "status: {branch: grayops-status}\n"),
                           "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": plugin_yaml("billing", "1.5.0")})
    run_once(human, workdir)
    assert remote_file(human, "status/billing.yaml") is None
    assert human.log("--oneline").count("\n") == 1  # main holds the human's commit only
    record = subprocess.run(["git", "show", "grayops-status:status/billing.yaml"], cwd=human.remote,
                            capture_output=True, text=True, check=True).stdout
    assert "phase: \"Succeeded\"" in record
    shown = grayops("status", "--repo", str(human.remote))
    assert re.search(r"billing\s+Succeeded", shown.stdout), shown.stdout + shown.stderr
    human.pull()
    human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")})
    run_once(human, workdir)
    assert "Grayops-Action: rollback" in human.log("-1", "--format=%B")  # the revert is on main, for humans
    assert remote_file(human, "status/billing.yaml") is None


def test_the_remote_going_down_mid_rollout_loses_nothing(fleet_repo: Human, tmp_path: Path) -> None:
    human, workdir = fleet_repo, tmp_path / "work"
    seed(human, policy=SLOW_POLICY)
    log_path = tmp_path / "run.log"
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--poll", "0.2", "--no-progress"],
                              stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    away = tmp_path / "fleet.git.away"
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Progressing")
        human.remote.rename(away)  # the remote is gone
        clone = workdir / "repo"
        wait_for(lambda: "Succeeded" in (clone / "status" / "billing.yaml").read_text(), timeout=60)
        assert daemon.poll() is None  # still running, on its own clone
        assert "ALERT remote_unreachable" in log_path.read_text()
        away.rename(human.remote)  # back: everything recorded meanwhile is pushed
        final = wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded" and s)
        assert final["targetVersion"] == "1.5.0"
        record = human.log("--format=%B", "--", "status/billing.yaml")  # a line for each transition, none twice
        assert len(re.findall(r"^billing 1.5.0: batch \S+ passed", record, flags=re.M)) == 3
        assert trailers(human, "Grayops-Action").count("succeed") == 1
    finally:
        if away.exists():
            away.rename(human.remote)
        daemon.terminate()
        daemon.wait(timeout=20)


def test_sim_metrics_are_served_for_prometheus(fleet_repo: Human, tmp_path: Path) -> None:
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    human, workdir = fleet_repo, tmp_path / "work"
    seed(human)
    port = free_port()
    daemon = subprocess.Popen([sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote),
                               "--workdir", str(workdir), "--interval", "0.05", "--sim-metrics-port", str(port),
                               "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: (remote_status(human, "billing") or {}).get("phase") == "Succeeded")
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        families = {f.name: f for f in text_string_to_metric_families(body)}
        errors = [s for s in families["grayops_sim_error_rate"].samples if s.labels["plugin"] == "billing"]
        assert len(errors) == sum(TIERS.values()) and all(s.labels["version"] == "1.5.0" for s in errors)
    finally:
        daemon.terminate()
        daemon.wait(timeout=20)
