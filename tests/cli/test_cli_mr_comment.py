"""`grayops plan --base REF -o markdown --comment github|gitlab` (README "Merge requests"): one comment per merge
request, posted once and then edited in place, against loopback fakes of both APIs; the field diffs of a
policy-only change and the instances already at the version are in it; refusals are one line without the token."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.forges import TOKEN, serve
from tests.conftest import FAST_POLICY, Human, grayops, plugin_yaml
from tests.e2e.test_run import seed

MARKER = "<!-- grayops plan -->"


def change(human: Human, bake: str) -> None:
    human.commit(f"slower wave-1: {bake}", {"policies/fast.yaml": FAST_POLICY.replace(
        "{name: wave-1, size: 50%, bake: 300ms}", f"{{name: wave-1, size: 50%, bake: {bake}}}")}, push=False)


def github_env(url: str, tmp_path: Path, number: int) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": number}}))
    return {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "ops/fleet", "GITHUB_API_URL": url,
            "GITHUB_EVENT_PATH": str(event)}


def plan(human: Human, forge: str, env: dict[str, str], *extra: str) -> tuple[int, str, str]:
    done = grayops("plan", "--base", "origin/main", "-o", "markdown", "--comment", forge, *extra,
                   cwd=human.clone, env=env)
    return done.returncode, done.stdout, done.stderr


def test_github_gets_one_comment_edited_in_place(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, "1.5.0")
    with serve("github") as forge:
        forge.comments[7] = [{"id": i, "body": f"review {i}", "html_url": ""} for i in range(150)]  # two pages
        env = github_env(forge.url, tmp_path, 7)
        change(human, "5m")
        code, out, err = plan(human, "github", env)
        assert code == 0, err
        assert forge.bodies(7)[-1] == f"{MARKER}\n{out}"
        assert "`policy fast.batches[1].bake: \"300ms\" -> \"5m\"`" in out
        change(human, "10m")
        code, out, err = plan(human, "github", env)
        assert code == 0, err
        ours = [body for body in forge.bodies(7) if MARKER in body]
        assert len(forge.bodies(7)) == 151 and ours == [f"{MARKER}\n{out}"]
        assert "-> \"10m\"" in ours[0]
        assert sum(call.startswith("PATCH ") for call in forge.calls) == 1


def test_gitlab_gets_one_note_edited_in_place(fleet_repo: Human) -> None:
    human = fleet_repo
    seed(human, "1.5.0")
    with serve("gitlab") as forge:
        forge.comments[12] = [{"id": 1, "body": "LGTM", "system": False}]
        env = {"GITLAB_TOKEN": TOKEN, "CI_API_V4_URL": f"{forge.url}/api/v4", "CI_PROJECT_ID": "ops/fleet",
               "CI_MERGE_REQUEST_IID": "12"}
        human.commit("billing 1.6.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.6.0")}, push=False)
        for _ in range(2):
            code, out, err = plan(human, "gitlab", env)
            assert code == 0, err
        assert forge.bodies(12) == ["LGTM", f"{MARKER}\n{out}"]
        assert "#### `billing` 1.5.0 → 1.6.0" in out
        assert "GET /api/v4/projects/ops%2Ffleet/merge_requests/12/notes?per_page=100&page=1" in forge.calls


def test_a_refused_comment_is_one_line_without_the_token(fleet_repo: Human, tmp_path: Path) -> None:
    human = fleet_repo
    seed(human, "1.5.0")
    with serve("github") as forge:
        forge.comments[7] = []
        env = github_env(forge.url, tmp_path, 7) | {"GITHUB_TOKEN": "wrong-" + TOKEN}
        code, _, err = plan(human, "github", env)
        assert code == 1 and TOKEN not in err
        assert err.splitlines() == [f"grayops: GET {forge.url}/repos/ops/fleet/issues/7/comments?per_page=100: 401 "
                                    "Bad credentials"]
        code, _, err = plan(human, "github", env | {"GITHUB_TOKEN": TOKEN}, "--pr", "8")  # no such pull request
        assert code == 1 and err.endswith("issues/8/comments?per_page=100: 404 Not Found\n")
    code, _, err = plan(human, "gitlab", {"GITLAB_TOKEN": TOKEN})
    assert code == 1 and err.splitlines() == ["grayops: --comment gitlab needs CI_MERGE_REQUEST_IID in the environment"]
