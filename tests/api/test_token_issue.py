"""`grayops token issue`: the approval token the API issues, from the real command in a child process; the API
under uvicorn takes it once (README "HTTP API", Approval tokens)."""

from __future__ import annotations

from tests.api.test_api_http import Served, digest, served
from tests.conftest import grayops, remote_file

__all__ = ["served"]  # fixture


def issue(served: Served, *args: str) -> tuple[int, str, str]:
    done = grayops("token", "issue", "--repo", str(served.human.remote), *args)
    return done.returncode, done.stdout, done.stderr


def test_a_token_issued_from_the_cli_is_taken_once_by_the_api(served: Served) -> None:
    before = served.commits()
    code, out, err = issue(served, "--plugin", "billing", "--action", "approve", "--ttl", "10m", "--as", "rita")
    assert code == 0, err
    token = out.strip()
    assert out == token + "\n" and token.startswith("grayops-approval-")  # stdout: the token alone
    assert "for approve of billing 1.6.0, single use, until" in err and token not in err
    assert served.commits()[1:] == before  # one commit: the token's record
    message = served.last_message()
    assert "Requested-By: rita" in message and "Grayops-Action: approval-token" in message
    assert token not in message
    recorded = remote_file(served.human, "approvals/billing.yaml") or ""
    assert digest(token) in recorded and token not in recorded
    token_id = message.split("approval token ", 1)[1].split()[0]
    assert token_id in err

    used = served.call("POST", "/api/v1/rollouts/billing/approve", token="rita", json={"approvalToken": token})
    assert used.status_code == 202, used.text
    assert f"Approval-Token: {token_id}" in served.last_message()
    again = served.call("POST", "/api/v1/rollouts/billing/approve", token="rita",
                        json={"approvalToken": token, "batch": "all"})
    assert again.status_code == 409 and "already used" in again.json()["error"]
    retry = served.call("POST", "/api/v1/rollouts/billing/retry", token="rita", json={"approvalToken": token})
    assert retry.status_code == 403 and "issued for approve, not retry" in retry.json()["error"]


def test_what_cannot_be_issued_is_one_line_and_no_commit(served: Served) -> None:
    before = served.commits()
    code, out, err = issue(served, "--plugin", "nope", "--action", "approve", "--as", "rita")
    assert (code, out) == (1, "") and err == "grayops: no plugin named nope (known: auth, billing)\n"
    code, out, err = issue(served, "--plugin", "billing", "--action", "retry", "--ttl", "2d", "--as", "rita")
    assert (code, out) == (2, "") and err == "grayops: ttl: between 1s and 24h\n"
    code, out, err = issue(served, "--plugin", "billing", "--action", "retry", "--ttl", "soon", "--as", "rita")
    assert (code, out) == (2, "") and err.startswith("grayops: --ttl: 'soon' is not a duration")
    assert served.commits() == before
