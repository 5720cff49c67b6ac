"""The HTTP API and the push webhooks under uvicorn on a loopback port, called with a real HTTP client, acting on
a real git fleet repository (README "HTTP API"): each action a commit with the token's person, each refusal its
status with nothing committed, webhook deliveries shaped and signed as GitHub, GitLab and Gitea send them."""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from policies import builtin_policies
from reconciler.adapters.gitrepo import GitRepo
from reconciler.api import ApiBackend, Rate, create_api_app
from reconciler.cli import full_registry
from reconciler.core.fleet import load_fleet
from reconciler.core.model import Phase
from reconciler.core.report import render_report
from reconciler.core.status import dump_status
from reconciler.shell.desired import judge_plugin_approvals
from tests.conftest import FAST_POLICY, FakeClock, Human, git, grayops, plugin_yaml, remote_file, settings_yaml
from tests.web.records import GATED_POLICY, TIERS, progressing, serving

SECRET = "It's a Secret to Everybody"
TOKENS = {"release-bot": "gro_release_0123456789abcdef", "reader": "gro_reader_0123456789abcdef",
          "oncall": "gro_oncall_0123456789abcdef", "rita": "gro_rita_0123456789abcdef",
          "alice": "gro_alice_0123456789abcdef"}


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


ACCESS = f"""\
apiVersion: grayops.dev/v1
kind: Access
people:
  - {{name: ops-bot}}
  - {{name: alice, emails: [alice@example.com], aliases: [Alice Ops]}}
  - {{name: rita, emails: [rita@example.com]}}
tokens:
  - {{name: release-bot, sha256: "{digest(TOKENS['release-bot'])}", scopes: [read, plan, rollback], person: ops-bot}}
  - {{name: reader, sha256: "{digest(TOKENS['reader'])}", scopes: [read], person: ops-bot}}
  - {{name: oncall, sha256: "{digest(TOKENS['oncall'])}", scopes: [pause, approve], person: ops-bot}}
  - {{name: rita-cli, sha256: "{digest(TOKENS['rita'])}", scopes: [approve], person: rita}}
  - {{name: alice-cli, sha256: "{digest(TOKENS['alice'])}", scopes: [approve], person: alice}}
"""
WEBHOOK = "git: {webhook: {secretEnv: GRAYOPS_WEBHOOK_SECRET}}\n"


@dataclass
class Served:
    human: Human
    base: str
    version_commit: str
    woken: list[str] = field(default_factory=list)
    clock: FakeClock = field(default_factory=FakeClock)

    def call(self, method: str, path: str, token: str | None = "release-bot", **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {TOKENS.get(token, token)}"
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)

    def commits(self) -> list[str]:
        return self.human.log("--format=%H").split()

    def last_message(self) -> str:
        return self.human.log("-1", "--format=%B")


def seed_fleet(human: Human) -> str:
    """billing 1.5.0 done, then 1.6.0 committed by Alice Ops and its rollout recorded mid-way (wave-1 baking;
    batch `all` needs an approval), with the report of the 1.5.0 rollout. Returns the 1.6.0 version commit."""
    human.commit("fleet: billing 1.5.0", {
        "grayops.yaml": settings_yaml(TIERS, WEBHOOK), "policies/fast.yaml": FAST_POLICY,
        "policies/gated.yaml": GATED_POLICY, "access.yaml": ACCESS,
        "plugins/billing.yaml": plugin_yaml("billing", "1.5.0", policy="gated"),
        "plugins/auth.yaml": plugin_yaml("auth", "2.0.0")})
    version = human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0", policy="gated")})
    state = replace(progressing(), desired_commit=version, policy="gated")
    done = replace(progressing(), phase=Phase.SUCCEEDED, target_version="1.5.0", from_version="1.4.0",
                   rollout_id="0123456789", finished=state.started, reason="1.5.0 rolled out to 8 instance(s)")
    human.commit("grayops: billing status", {"status/billing.yaml": dump_status(state),
                                             "reports/billing/1.5.0-0123456789.md": render_report(done)})
    return version


@contextmanager
def api_on(human: Human, workdir: Path, woken: list[str], **options: Any) -> Iterator[str]:
    """The API's app over a clone of the fleet in `workdir`, under uvicorn; yields its base URL."""
    repo = GitRepo(str(human.remote), workdir)
    repo.ensure_clone()
    options.setdefault("rate", Rate(per_second=1000.0, burst=1000))
    options.setdefault("env", {"GRAYOPS_WEBHOOK_SECRET": SECRET})
    lock = threading.Lock()

    def wake() -> None:
        with lock:
            woken.append("wake")

    options.setdefault("fresh_for", 0.0)
    backend = ApiBackend(repo, full_registry().models, wake=wake, **options)
    with serving(create_api_app(backend)) as base:
        yield base


@pytest.fixture
def served(fleet_repo: Human, tmp_path: Path) -> Iterator[Served]:
    version = seed_fleet(fleet_repo)
    woken: list[str] = []
    clock = FakeClock()
    with api_on(fleet_repo, tmp_path / "work", woken, now=clock.now) as base:
        yield Served(fleet_repo, base, version, woken, clock)


# --- rollback and plan ---------------------------------------------------------------------------


def test_rollback_is_the_same_commit_as_the_command_by_the_tokens_person(served: Served) -> None:
    answer = served.call("POST", "/internal/version/upgrade/rollback",
                         json={"plugin": "billing", "reason": "customer reports"})
    assert answer.status_code == 202, answer.text
    commit = answer.json()["commit"]
    assert commit == served.commits()[0]  # as pushed
    message = served.last_message()
    assert message.startswith("roll back billing to 1.5.0: customer reports")
    assert "Requested-By: ops-bot (api token release-bot)" in message
    assert "Grayops-Action: rollback" in message and "Grayops-Rollout: a1b2c3d4e5" in message
    assert 'version: "1.5.0"' in (remote_file(served.human, "plugins/billing.yaml") or "")
    assert served.woken == ["wake"]  # the reconciler acts at once
    again = served.call("POST", "/internal/version/upgrade/rollback", json={"plugin": "billing", "reason": "again"})
    assert again.status_code == 200 and again.json()["commit"] is None
    assert served.commits()[0] == commit  # nothing to change, no commit


def test_the_plan_of_a_version_is_what_grayops_plan_says_of_that_change(served: Served) -> None:
    answer = served.call("POST", "/internal/version/upgrade/plan", json={"plugin": "billing", "version": "1.7.0"})
    assert answer.status_code == 200, answer.text
    plan = answer.json()["plugins"][0]
    assert (plan["plugin"], plan["fromVersion"], plan["toVersion"], plan["instances"]) == \
        ("billing", "1.6.0", "1.7.0", 8)
    assert [b["name"] for b in plan["batches"]] == ["canary", "wave-1", "all"]
    assert "approval before batch all" in plan["gates"]
    # the same change committed in a clone (not pushed): `grayops plan --base origin/main -o json` agrees
    served.human.pull()
    served.human.commit("billing 1.7.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0", policy="gated")},
                        push=False)
    cli = grayops("plan", "--repo", str(served.human.clone), "--base", "origin/main", "--format", "json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == answer.json()
    fast = served.call("POST", "/internal/version/upgrade/plan",
                       json={"plugin": "billing", "version": "1.7.0", "policy": "fast"}).json()["plugins"][0]
    assert fast["policy"] == "fast" and not any(g.startswith("approval") for g in fast["gates"])
    assert served.human.log("-1", "--format=%s") == "grayops: billing status\n"  # a plan commits nothing


def test_propose_pushes_a_branch_for_a_merge_request_and_never_the_watched_one(served: Served) -> None:
    main = served.commits()
    asked = {"plugin": "billing", "version": "1.7.0", "policy": "fast", "propose": True}
    answer = served.call("POST", "/internal/version/upgrade/plan", json=asked)
    assert answer.status_code == 200, answer.text
    proposal = answer.json()["proposal"]
    assert proposal["branch"] == "grayops/propose/billing-1.7.0"
    assert answer.json()["plugins"][0]["toVersion"] == "1.7.0"
    assert served.commits() == main  # the watched branch is untouched
    branch = "grayops/propose/billing-1.7.0"
    assert git(served.human.remote, "log", "-1", "--format=%H%n%P", branch).split() == [proposal["commit"], main[0]]
    message = git(served.human.remote, "log", "-1", "--format=%B", branch)
    assert message.startswith("billing 1.7.0\n") and "Requested-By: ops-bot (api token release-bot)" in message
    changed = git(served.human.remote, "show", f"{branch}:plugins/billing.yaml")
    assert changed == plugin_yaml("billing", "1.7.0", policy="fast")  # the file as written, two fields changed
    assert git(served.human.remote, "diff", "--name-only", main[0], branch).split() == ["plugins/billing.yaml"]
    again = served.call("POST", "/internal/version/upgrade/plan", json=asked)
    assert again.status_code == 409 and "already has a branch grayops/propose/billing-1.7.0" in again.json()["error"]
    bad = served.call("POST", "/internal/version/upgrade/plan", json={**asked, "version": "1..7"})
    assert bad.status_code == 400 and "not a valid branch name" in bad.json()["error"]


# --- refusals ------------------------------------------------------------------------------------------------


def test_bad_requests_are_refused_with_their_status_and_commit_nothing(served: Served) -> None:
    before = served.commits()
    rollback = "/internal/version/upgrade/rollback"
    asked = {"plugin": "billing", "reason": "customer reports"}
    no_token = served.call("POST", rollback, token=None, json=asked)
    assert no_token.status_code == 401 and no_token.headers["WWW-Authenticate"] == "Bearer"
    assert served.call("POST", rollback, token="gro_not_a_token", json=asked).status_code == 401
    assert served.call("POST", rollback, token="", json=asked).status_code == 401
    scope = served.call("POST", rollback, token="reader", json=asked)
    assert scope.status_code == 403 and scope.json() == {
        "error": "token reader lacks the scope rollback; nothing was done"}
    assert served.call("POST", "/api/v1/rollouts/billing/pause", token="release-bot").status_code == 403
    malformed = served.call("POST", rollback, data=b'{"plugin": "billing",',
                            headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("the body is not JSON")
    missing = served.call("POST", rollback, json={"plugin": "billing"})
    assert missing.status_code == 400 and missing.json()["error"] == "reason: Field required"
    unknown_field = served.call("POST", rollback, json={**asked, "force": True})
    assert unknown_field.status_code == 400 and "force: Extra inputs are not permitted" in unknown_field.json()["error"]
    assert served.call("POST", rollback, json=["billing"]).status_code == 400
    long_reason = served.call("POST", rollback, json={"plugin": "billing", "reason": "x" * 201})
    assert long_reason.status_code == 400 and "reason" in long_reason.json()["error"]
    unquoted = served.call("POST", "/internal/version/upgrade/plan", json={"plugin": "billing", "version": 1.7})
    assert unquoted.status_code == 400 and "must be quoted" in unquoted.json()["error"]
    no_policy = served.call("POST", "/internal/version/upgrade/plan",
                            json={"plugin": "billing", "version": "1.7.0", "policy": "nope"})
    assert no_policy.status_code == 400 and "no policy named 'nope'" in no_policy.json()["error"]
    unknown = served.call("POST", rollback, json={"plugin": "payments", "reason": "x"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "no plugin named 'payments' (known: auth, billing)"
    assert served.call("GET", "/api/v1/rollouts/payments", token="reader").status_code == 404
    assert served.call("POST", "/api/v1/rollouts/payments/pause", token="oncall").status_code == 404
    huge = served.call("POST", rollback, data=b"{" + b" " * (1024 * 1024) + b"}",
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    assert served.commits() == before and served.woken == []


def test_a_token_past_its_rate_is_refused_with_429(fleet_repo: Human, tmp_path: Path) -> None:
    seed_fleet(fleet_repo)
    frozen = 1000.0  # no time passes: the bucket does not refill
    with api_on(fleet_repo, tmp_path / "work", [], rate=Rate(per_second=1.0, burst=3),
                monotonic=lambda: frozen) as base:
        def get(token: str) -> requests.Response:
            return requests.get(base + "/api/v1/rollouts", headers={"Authorization": f"Bearer {TOKENS[token]}"},
                                timeout=60)

        assert [get("reader").status_code for _ in range(3)] == [200, 200, 200]
        over = get("reader")
        assert over.status_code == 429 and over.headers["Retry-After"] == "1"
        assert get("release-bot").status_code == 200  # per token


# --- reading the record ----------------------------------------------------------------------------------


def test_rollouts_status_and_report_read_the_record(served: Served) -> None:
    listed = served.call("GET", "/api/v1/rollouts", token="reader")
    assert listed.status_code == 200
    assert [(r["plugin"], r["phase"], r["targetVersion"]) for r in listed.json()["rollouts"]] == \
        [("billing", "Progressing", "1.6.0")]
    one = served.call("GET", "/api/v1/rollouts/billing", token="reader").json()
    assert one["plugin"] == "billing" and one["status"]["desiredCommit"] == served.version_commit
    assert [b["name"] for b in one["status"]["batches"]] == ["canary", "wave-1"]
    assert served.call("GET", "/api/v1/rollouts/auth", token="reader").json() == {"plugin": "auth", "status": None}
    report = served.call("GET", "/api/v1/rollouts/billing/report", token="reader")
    assert report.status_code == 200 and report.json()["path"] == "reports/billing/1.5.0-0123456789.md"
    assert report.json()["report"] == remote_file(served.human, "reports/billing/1.5.0-0123456789.md")
    none = served.call("GET", "/api/v1/rollouts/auth/report", token="reader")
    assert none.status_code == 404 and none.json()["error"].startswith("no report for auth yet")
    assert served.call("GET", "/api/v1/rollouts", token="oncall").status_code == 403  # read is a scope too


def test_without_a_reconciler_reads_share_one_read_of_the_clone_per_freshness_period(fleet_repo: Human,
                                                                                     tmp_path: Path) -> None:
    """`grayops serve`: the clone is fetched and read at most once per `fresh_for`; reads meanwhile answer from
    that read, so many clients do not queue behind the clone's lock (here held, as a command's push holds it)."""
    seed_fleet(fleet_repo)
    with api_on(fleet_repo, tmp_path / "work", [], fresh_for=600.0) as base:
        def get(path: str) -> requests.Response:
            return requests.get(base + path, headers={"Authorization": f"Bearer {TOKENS['reader']}"}, timeout=20)

        assert get("/api/v1/rollouts").status_code == 200  # the one read of this period
        with clone_locked(tmp_path / "work"):
            listed = get("/api/v1/rollouts")
            assert [r["plugin"] for r in listed.json()["rollouts"]] == ["billing"], listed.text
            one = get("/api/v1/rollouts/billing")
            assert one.status_code == 200 and one.json()["status"]["targetVersion"] == "1.6.0", one.text


def test_a_body_that_trickles_in_is_cut_with_408_and_nothing_committed(fleet_repo: Human, tmp_path: Path) -> None:
    """A client that sends its headers, then its body a byte at a time, holds a worker no longer than the bound."""
    seed_fleet(fleet_repo)
    before = fleet_repo.log("--format=%H").split()
    with api_on(fleet_repo, tmp_path / "work", [], body_timeout=1.0) as base:
        where = urlsplit(base)
        with socket.create_connection((where.hostname, where.port), timeout=30) as conn:
            conn.sendall(b"POST /internal/version/upgrade/rollback HTTP/1.1\r\nHost: grayops\r\n"
                         b"Authorization: Bearer " + TOKENS["release-bot"].encode() + b"\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            answer = trickle(conn)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"did not arrive within 1s" in answer and b"connection: close" in answer.lower()
    assert fleet_repo.log("--format=%H").split() == before


def trickle(conn: socket.socket, limit: float = 60.0) -> bytes:
    """Send a byte every 0.2 s until the server answers; all it sends until it closes the connection."""
    for _ in range(int(limit / 0.2)):
        conn.sendall(b" ")
        if select.select([conn], [], [], 0.2)[0]:
            break
    answer = b""
    while chunk := conn.recv(65536):
        answer += chunk
    return answer


@contextmanager
def clone_locked(workdir: Path) -> Iterator[None]:
    """Hold the clone's lock, as another process's (or a tick's) long git operation does."""
    fd = os.open(workdir / ".grayops.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# --- the rollout commands ----------------------------------------------------------------------------------


def test_pause_and_resume_are_commits_by_the_tokens_person(served: Served) -> None:
    paused = served.call("POST", "/api/v1/rollouts/billing/pause", token="oncall", json={"reason": "incident 42"})
    assert paused.status_code == 202, paused.text
    message = served.last_message()
    assert message.startswith("pause billing: incident 42")
    assert "Requested-By: ops-bot (api token oncall)" in message and "Grayops-Action: pause" in message
    assert "paused: true" in (remote_file(served.human, "plugins/billing.yaml") or "")
    resumed = served.call("POST", "/api/v1/rollouts/billing/resume", token="oncall")  # no body at all
    assert resumed.status_code == 202 and resumed.json()["commit"] == served.commits()[0]
    assert "paused: false" in (remote_file(served.human, "plugins/billing.yaml") or "")
    assert served.woken == ["wake", "wake"]


def approval_token(served: Served, action: str, token: str = "rita", ttl: str = "10m") -> dict[str, Any]:
    issued = served.call("POST", "/api/v1/rollouts/billing/approval-tokens", token=token,
                         json={"action": action, "ttl": ttl})
    assert issued.status_code == 201, issued.text
    return dict(issued.json())


def test_approve_keeps_the_two_person_rule_for_the_tokens_person(served: Served, tmp_path: Path) -> None:
    before = served.commits()
    refused = served.call("POST", "/api/v1/rollouts/billing/approve", token="alice",  # Alice wrote billing 1.6.0
                          json={"approvalToken": approval_token(served, "approve")["token"]})
    assert refused.status_code == 409 and "two-person rule" in refused.json()["error"]
    assert served.commits()[1:] == before  # only the token's issue
    approved = served.call("POST", "/api/v1/rollouts/billing/approve", token="rita",
                           json={"batch": "all", "approvalToken": approval_token(served, "approve")["token"]})
    assert approved.status_code == 202, approved.text
    message = served.last_message()
    assert "Approved-By: rita (api token rita-cli)" in message and "Grayops-Batch: all" in message
    assert f"Desired-Commit: {served.version_commit}" in message
    assert "by: rita (api token rita-cli)" in (remote_file(served.human, "approvals/billing.yaml") or "")
    # the reconciler counts it: judged as it judges every approval it reads
    reader = GitRepo(str(served.human.remote), tmp_path / "reader")
    reader.ensure_clone()
    fleet = load_fleet(reader.desired_files(), builtin_policies(), adapters=full_registry().models)
    accepted, refused_approvals = judge_plugin_approvals(reader, fleet, "billing")
    assert [(a.by, a.batch) for a in accepted] == [("rita (api token rita-cli)", "all")] and not refused_approvals
    retry = served.call("POST", "/api/v1/rollouts/billing/retry", token="rita",
                        json={"approvalToken": approval_token(served, "retry")["token"]})
    assert retry.status_code == 409 and retry.json()["error"].startswith("nothing failed to retry in billing")
    batch = served.call("POST", "/api/v1/rollouts/billing/pause", token="oncall", json={"batch": "all"})
    assert batch.status_code == 400


def test_critical_operations_need_an_approval_token_used_once(served: Served) -> None:
    before = served.commits()
    bare = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall")
    assert bare.status_code == 403 and "needs an approval token" in bare.json()["error"]
    assert served.call("POST", "/api/v1/rollouts/billing/approval-tokens", token="oncall",
                       json={"action": "approve", "ttl": "2d"}).status_code == 400
    assert served.call("POST", "/api/v1/rollouts/billing/approval-tokens", token="reader",
                       json={"action": "approve"}).status_code == 403
    assert served.commits() == before
    issued = approval_token(served, "approve", token="oncall", ttl="10m")
    assert (issued["plugin"], issued["version"], issued["action"]) == ("billing", "1.6.0", "approve")
    recorded = remote_file(served.human, "approvals/billing.yaml") or ""
    assert digest(issued["token"]) in recorded and issued["token"] not in recorded  # its digest only
    assert issued["token"] not in served.human.log("-1", "--format=%B")
    wrong = served.call("POST", "/api/v1/rollouts/billing/retry", token="oncall",
                        json={"approvalToken": issued["token"]})
    assert wrong.status_code == 403 and "was issued for approve, not retry" in wrong.json()["error"]
    forged = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall",
                         json={"approvalToken": "grayops-approval-guess"})
    assert forged.status_code == 403
    used = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall",
                       json={"approvalToken": issued["token"]})
    assert used.status_code == 202, used.text
    assert f"Approval-Token: {issued['id']}" in served.last_message()
    again = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall",
                        json={"approvalToken": issued["token"], "batch": "all"})
    assert again.status_code == 409 and "already used" in again.json()["error"]
    late = approval_token(served, "approve", token="oncall", ttl="30s")
    served.clock.advance(31)
    expired = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall",
                          json={"approvalToken": late["token"]})
    assert expired.status_code == 403 and "expired" in expired.json()["error"]
    stale = approval_token(served, "approve", token="oncall")
    served.human.pull()
    served.human.commit("billing 1.7.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.7.0", policy="gated")})
    moved = served.call("POST", "/api/v1/rollouts/billing/approve", token="oncall",
                        json={"approvalToken": stale["token"]})
    assert moved.status_code == 403 and "issued for billing 1.6.0; 1.7.0 is committed now" in moved.json()["error"]


def test_resuming_a_rollout_grayops_paused_needs_an_approval_token(fleet_repo: Human, tmp_path: Path) -> None:
    seed_fleet(fleet_repo)
    state = replace(progressing(), phase=Phase.PAUSED, paused_by="grayops", pause_reason="error_rate 0.2 > 0.05",
                    paused_at=progressing().started, policy="gated")
    fleet_repo.commit("grayops: billing paused", {"status/billing.yaml": dump_status(state),
                                                  "plugins/billing.yaml": plugin_yaml("billing", "1.6.0", "gated",
                                                                                      "  paused: true\n")})
    with api_on(fleet_repo, tmp_path / "work", []) as base:
        served = Served(fleet_repo, base, "")
        bare = served.call("POST", "/api/v1/rollouts/billing/resume", token="oncall")
        assert bare.status_code == 403 and "needs an approval token" in bare.json()["error"]
        resumed = served.call("POST", "/api/v1/rollouts/billing/resume", token="oncall",
                              json={"approvalToken": approval_token(served, "resume", token="oncall")["token"]})
        assert resumed.status_code == 202, resumed.text
    assert "paused: false" in (remote_file(fleet_repo, "plugins/billing.yaml") or "")


# --- webhooks ------------------------------------------------------------------------------------------------


def github_push(ref: str = "refs/heads/main") -> bytes:
    """A push event as GitHub documents it (trimmed to the fields a receiver reads, plus some it does not)."""
    return json.dumps({
        "ref": ref, "before": "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "after": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "created": False, "deleted": False, "forced": False,
        "repository": {"id": 186853002, "name": "fleet", "full_name": "ops/fleet", "default_branch": "main"},
        "pusher": {"name": "alice", "email": "alice@example.com"}, "sender": {"login": "alice", "id": 21031067},
        "commits": [{"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "billing 1.7.0",
                     "author": {"name": "Alice Ops", "email": "alice@example.com"},
                     "modified": ["plugins/billing.yaml"]}],
        "head_commit": {"id": "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", "message": "billing 1.7.0"},
    }).encode()


def github_headers(body: bytes, event: str = "push", delivery: str | None = None,
                   secret: str = SECRET) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/044aadd", "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or str(uuid.uuid4()), "X-GitHub-Hook-ID": "292430182",
            "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


def test_a_github_push_to_the_watched_branch_fetches_once_per_delivery(served: Served) -> None:
    body = github_push()
    headers = github_headers(body, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    first = served.call("POST", "/webhooks/git", token=None, data=body, headers=headers)
    assert first.status_code == 202 and first.json()["fetch"] is True
    assert served.woken == ["wake"]
    again = served.call("POST", "/webhooks/git", token=None, data=body, headers=headers)  # GitHub's redelivery
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert served.woken == ["wake"]
    other = github_push("refs/heads/feature")
    ignored = served.call("POST", "/webhooks/git", token=None, data=other, headers=github_headers(other))
    assert ignored.status_code == 202 and "not refs/heads/main" in ignored.json()["ignored"]
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 292430182}).encode()
    pong = served.call("POST", "/webhooks/git", token=None, data=ping, headers=github_headers(ping, event="ping"))
    assert pong.status_code == 202 and pong.json()["ignored"] == "not a push event"
    assert served.woken == ["wake"]


def test_unverified_deliveries_are_401_and_wake_nothing(served: Served) -> None:
    body = github_push()
    forged = served.call("POST", "/webhooks/git", token=None, data=body, headers=github_headers(body, secret="guess"))
    assert forged.status_code == 401
    tampered = served.call("POST", "/webhooks/git", token=None, data=body.replace(b"feature", b"main") + b" ",
                           headers=github_headers(body))
    assert tampered.status_code == 401
    unsigned = served.call("POST", "/webhooks/git", token=None, data=body,
                           headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": "x"})
    assert unsigned.status_code == 401
    gitlab = served.call("POST", "/webhooks/git", token=None, data=gitlab_push(),
                         headers={**gitlab_headers(), "X-Gitlab-Token": "wrong"})
    assert gitlab.status_code == 401
    huge = served.call("POST", "/webhooks/git", token=None, data=b" " * (1024 * 1024 + 1), headers=github_headers(b""))
    assert huge.status_code == 413
    assert served.woken == []


def gitlab_push() -> bytes:
    """A Push Hook as GitLab documents it."""
    return json.dumps({
        "object_kind": "push", "event_name": "push", "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
        "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "ref": "refs/heads/main", "ref_protected": True,
        "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "user_id": 4, "user_name": "Alice Ops",
        "user_username": "alice", "project_id": 15,
        "project": {"id": 15, "name": "fleet", "path_with_namespace": "ops/fleet", "default_branch": "main"},
        "commits": [{"id": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7", "message": "billing 1.7.0",
                     "author": {"name": "Alice Ops", "email": "alice@example.com"},
                     "added": [], "modified": ["plugins/billing.yaml"], "removed": []}],
        "total_commits_count": 1, "repository": {"name": "fleet", "homepage": "https://gitlab.example.com/ops/fleet"},
    }).encode()


def gitlab_headers(uuid_: str | None = None) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": "GitLab/17.4.0", "X-Gitlab-Event": "Push Hook",
            "X-Gitlab-Token": SECRET, "X-Gitlab-Instance": "https://gitlab.example.com",
            "X-Gitlab-Webhook-UUID": "16a42a3c-1d22-4f2c-9a0f-42d0f0d6d1f6",
            "X-Gitlab-Event-UUID": uuid_ or str(uuid.uuid4())}


def gitea_push() -> bytes:
    """A push event as Gitea documents it (Forgejo sends the same)."""
    return json.dumps({
        "ref": "refs/heads/main", "before": "28e1879d029cb852e4844d9c718537df08844e03",
        "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
        "compare_url": "http://localhost:3000/ops/fleet/compare/28e1879d029c...bffeb7422404",
        "commits": [{"id": "bffeb74224043ba2feb48d137756c8a9331c449a", "message": "billing 1.7.0",
                     "author": {"name": "Alice Ops", "email": "alice@example.com", "username": "alice"}}],
        "repository": {"id": 140, "name": "fleet", "full_name": "ops/fleet", "default_branch": "main"},
        "pusher": {"id": 1, "login": "alice"}, "sender": {"id": 1, "login": "alice"},
    }).encode()


def gitea_headers(body: bytes, delivery: str, secret: str = SECRET) -> dict[str, str]:
    """Gitea also sends GitHub's and Gogs' headers, for compatibility; its own signature is the one checked."""
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push",
            "X-Gogs-Delivery": delivery, "X-Gogs-Event": "push", "X-Gitea-Delivery": delivery,
            "X-Gitea-Event": "push", "X-Gitea-Event-Type": "push", "X-Gitea-Signature": signature,
            "X-Gogs-Signature": signature, "X-Hub-Signature-256": "sha256=" + signature}


def test_gitlab_and_gitea_pushes_are_verified_their_own_way(served: Served) -> None:
    body = gitlab_push()
    headers = gitlab_headers("13792a34-cac6-4fda-95a8-c58e00a3954e")
    assert served.call("POST", "/webhooks/git", token=None, data=body, headers=headers).status_code == 202
    assert served.call("POST", "/webhooks/git", token=None, data=body, headers=headers).json()["duplicate"] is True
    assert served.woken == ["wake"]
    gitea = gitea_push()
    delivery = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
    assert served.call("POST", "/webhooks/git", token=None, data=gitea,
                       headers=gitea_headers(gitea, delivery)).status_code == 202
    assert served.woken == ["wake", "wake"]
    forged = gitea_headers(gitea, "0b8e6e2c-0000-4000-8000-000000000000", secret="guess")
    forged["X-Hub-Signature-256"] = github_headers(gitea)["X-Hub-Signature-256"]  # a good GitHub one rescues nothing
    assert served.call("POST", "/webhooks/git", token=None, data=gitea, headers=forged).status_code == 401
    assert served.woken == ["wake", "wake"]


def test_without_a_secret_in_the_environment_every_delivery_is_401(fleet_repo: Human, tmp_path: Path) -> None:
    seed_fleet(fleet_repo)
    woken: list[str] = []
    with api_on(fleet_repo, tmp_path / "work", woken, env={}) as base:
        body = github_push()
        answer = requests.post(base + "/webhooks/git", data=body, headers=github_headers(body), timeout=60)
    assert answer.status_code == 401 and "GRAYOPS_WEBHOOK_SECRET" not in answer.text
    assert "git.webhook.secretEnv" in answer.json()["error"] and woken == []


def test_tokens_must_name_a_person_of_access_yaml(tmp_path: Path) -> None:
    fleet = tmp_path / "fleet"
    (fleet / "plugins").mkdir(parents=True)
    (fleet / "grayops.yaml").write_text(settings_yaml(TIERS, WEBHOOK))
    (fleet / "access.yaml").write_text(ACCESS.replace("person: rita", "person: ritta"))
    done = grayops("validate", str(fleet))
    assert done.returncode == 1
    assert ("access.yaml:11: tokens[3].person: ritta is not a name of people: (listed: ops-bot, alice, rita)"
            in done.stderr)
