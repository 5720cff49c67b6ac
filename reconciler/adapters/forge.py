"""Merge request comments on GitHub and GitLab (README "Merge requests"): one comment per merge request, found
again by a marker and edited in place, so a pipeline run on every push keeps one current plan, as Atlantis does.

The token comes from the environment and is sent only in the Authorization header (GitHub) or PRIVATE-TOKEN
(GitLab); it is never part of an error message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import requests

MARKER = "<!-- grayops plan -->"  # how grayops finds its own comment again
TIMEOUT = 30.0


class ForgeError(Exception):
    """The forge refused or could not be reached; the message says which call and why, without the token."""


class MergeRequestThread(Protocol):
    def upsert(self, body: str) -> str:
        """Post `body` as grayops' comment, or edit the one posted before; its web URL."""
        ...


@dataclass(frozen=True)
class GitHubPullRequest:
    api: str  # e.g. https://api.github.com
    repository: str  # owner/name
    number: int
    token: str

    def upsert(self, body: str) -> str:
        text = f"{MARKER}\n{body}"
        mine = next((c for c in self._comments() if MARKER in str(c.get("body", ""))), None)
        if mine is None:
            made = _call("POST", f"{self.api}/repos/{self.repository}/issues/{self.number}/comments",
                         self._headers(), {"body": text})
        else:
            made = _call("PATCH", f"{self.api}/repos/{self.repository}/issues/comments/{mine['id']}",
                         self._headers(), {"body": text})
        return str(made.json().get("html_url", ""))

    def _comments(self) -> Iterator[dict[str, Any]]:
        url: str | None = f"{self.api}/repos/{self.repository}/issues/{self.number}/comments?per_page=100"
        while url:
            page = _call("GET", url, self._headers())
            yield from page.json()
            url = page.links.get("next", {}).get("url")

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}


@dataclass(frozen=True)
class GitLabMergeRequest:
    api: str  # e.g. https://gitlab.com/api/v4
    project: str  # the numeric id, or the path (url-encoded here)
    iid: int
    token: str

    def upsert(self, body: str) -> str:
        text = f"{MARKER}\n{body}"
        notes = f"{self.api}/projects/{quote(self.project, safe='')}/merge_requests/{self.iid}/notes"
        mine = next((n for n in self._notes(notes) if MARKER in str(n.get("body", ""))), None)
        if mine is None:
            made = _call("POST", notes, self._headers(), {"body": text})
        else:
            made = _call("PUT", f"{notes}/{mine['id']}", self._headers(), {"body": text})
        return f"note {made.json().get('id')}"

    def _notes(self, url: str) -> Iterator[dict[str, Any]]:
        page_number: str | None = "1"
        while page_number:
            page = _call("GET", f"{url}?per_page=100&page={page_number}", self._headers())
            yield from page.json()
            page_number = page.headers.get("X-Next-Page") or None

    def _headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token}


def _call(method: str, url: str, headers: Mapping[str, str], body: Any = None) -> requests.Response:
    try:
        answer = requests.request(method, url, headers=dict(headers), json=body, timeout=TIMEOUT)
    except requests.RequestException as err:
        raise ForgeError(f"{method} {url}: {type(err).__name__}") from None
    if answer.status_code >= 400:
        raise ForgeError(f"{method} {url}: {answer.status_code} {_message(answer)}")
    return answer


def _message(answer: requests.Response) -> str:
    try:
        doc = answer.json()
    except ValueError:
        return answer.reason or ""
    return str(doc.get("message") or doc.get("error") or answer.reason) if isinstance(doc, dict) else answer.reason


def thread_from_env(forge: str, number: int | None, env: Mapping[str, str] | None = None) -> MergeRequestThread:
    """The merge request the CI job runs for, from the variables GitHub Actions and GitLab CI set (README "Merge
    requests"); `number` overrides the one they name. Raises ForgeError naming what is missing."""
    env = os.environ if env is None else env

    def need(name: str) -> str:
        if not env.get(name):
            raise ForgeError(f"--comment {forge} needs {name} in the environment")
        return env[name]

    if forge == "github":
        token = need("GITHUB_TOKEN")
        return GitHubPullRequest(env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/"),
                                 need("GITHUB_REPOSITORY"), number or _github_number(env), token)
    token = need("GITLAB_TOKEN")
    iid = number or int(need("CI_MERGE_REQUEST_IID"))
    return GitLabMergeRequest(need("CI_API_V4_URL").rstrip("/"), need("CI_PROJECT_ID"), iid, token)


def _github_number(env: Mapping[str, str]) -> int:
    """The pull request's number from the event GitHub Actions ran for."""
    path = env.get("GITHUB_EVENT_PATH")
    try:
        event = json.loads(Path(path).read_text()) if path else {}
        return int(event["pull_request"]["number"])
    except (OSError, ValueError, KeyError, TypeError):
        raise ForgeError("--comment github needs --pr N, or a pull_request event (GITHUB_EVENT_PATH)") from None
