"""The real `grayops run --trust DIR --signing-key KEY` in a child process over an SSH-signed fleet repository
(README "Supply chain"): a bad trust directory stops it at the start with one line; a head signed by a key that is
not allowed is refused once while the rollout in force goes on; a signer's commit on top is rolled out; and every
commit grayops pushes is signed with its own key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import (
    FAST_POLICY,
    git,
    grayops,
    make_fleet_repo,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)
from tests.trust.signers import ssh_signer
from tests.trust.test_signed_revisions import REQUIRED, sign_as


def test_a_trust_directory_that_cannot_be_used_stops_the_start_with_one_line(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"prod": 1})})
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "rsa.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    for given, expected in ((tmp_path / "nowhere", f"{tmp_path / 'nowhere'}: cannot be read"),
                            (trust, f"{trust / 'rsa.pem'}: ")):
        done = grayops("run", "--repo", str(human.remote), "--workdir", str(tmp_path / "work"), "--once",
                       "--no-progress", "--trust", str(given))
        assert done.returncode == 1
        [line] = [line for line in done.stderr.splitlines() if line.startswith("grayops:")]
        assert line.startswith(f"grayops: cannot start: --trust: {expected}"), done.stderr
        assert "Traceback" not in done.stderr


def test_a_signing_key_that_is_not_an_allowed_signer_stops_the_start(tmp_path: Path) -> None:
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"prod": 1})})
    own, alice = ssh_signer(tmp_path, "grayops"), ssh_signer(tmp_path, "alice")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(alice.line())
    done = grayops("run", "--repo", str(human.remote), "--workdir", str(tmp_path / "work"), "--once", "--no-progress",
                   "--trust", str(trust), "--signing-key", str(own.key))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"grayops: cannot start: --signing-key: its key {own.key_id} is not an allowed "
                                   f"signer in {trust}; add its public key there, or grayops' own commits would not "
                                   "verify")


def test_grayops_run_refuses_an_untrusted_head_and_rolls_out_what_an_allowed_signer_signs(tmp_path: Path) -> None:
    people = tmp_path / "people"
    people.mkdir()
    alice, mallory, own = ssh_signer(people, "alice"), ssh_signer(people, "mallory"), ssh_signer(people, "grayops")
    trust = tmp_path / "trust"
    trust.mkdir()
    (trust / "allowed_signers").write_text(alice.line() + own.line())
    human = make_fleet_repo(tmp_path)
    sign_as(human, alice)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, REQUIRED),
                           "policies/fast.yaml": FAST_POLICY, "plugins/billing.yaml": plugin_yaml("billing", "1.0.0")})
    log = tmp_path / "run.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(human.remote), "--workdir",
             str(tmp_path / "work"), "--interval", "0.05", "--poll", "0.2", "--no-progress", "--trust", str(trust),
             "--signing-key", str(own.key)], stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (s := remote_status(human, "billing")) and s["phase"] == "Succeeded", timeout=120,
                 what=f"1.0.0 rolled out:\n{log.read_text()[-3000:]}")
        assert (remote_status(human, "billing") or {})["desiredSigner"] == f"alice@example.com ({alice.key_id})"
        reports = git(human.remote, "grep", "-h", "| Commit signer", "main", "--", "reports/billing")
        assert f"| Commit signer | alice@example.com ({alice.key_id}) |" in reports
        sign_as(human, mallory, "Mallory Evil")
        bad = human.commit("2.0.0", {"plugins/billing.yaml": plugin_yaml("billing", "2.0.0")})
        alert = (f"ALERT untrusted_revision (critical): revision {bad[:12]} refused, the last good revision stays "
                 f"in force: 1 error(s): untrusted: commit {bad[:12]} by Mallory Evil <mallory@example.com>: signed "
                 f"by a key that is not an allowed signer ({mallory.key_id})")
        wait_for(lambda: alert in log.read_text(), what=f"the refusal:\n{log.read_text()[-3000:]}")
        sign_as(human, alice)
        good = human.commit("2.0.1, reviewed", {"plugins/billing.yaml": plugin_yaml("billing", "2.0.1")})
        wait_for(lambda: (s := remote_status(human, "billing")) and s["targetVersion"] == "2.0.1"
                 and s["phase"] == "Succeeded", timeout=120, what=f"2.0.1 rolled out:\n{log.read_text()[-3000:]}")
        assert daemon.poll() is None
    finally:
        assert stop_process(daemon) == 0
    text = log.read_text()
    assert text.count(f"ALERT untrusted_revision (critical): revision {bad[:12]}") == 1
    assert "untrusted_revision" not in text.split(f"revision {good[:12]}")[-1]
    statuses = git(human.remote, "log", "-p", "main", "--", "status/billing.yaml")
    assert "targetVersion: 2.0.0" not in statuses  # never started
    shown = git(human.remote, "-c", f"gpg.ssh.allowedSignersFile={trust / 'allowed_signers'}", "log",
                "--format=%an %G? %GK", "main")
    own_commits = [line.split() for line in shown.splitlines() if line.startswith("grayops ")]
    assert own_commits and all(fields[1:] == ["G", own.key_id] for fields in own_commits)
