"""Loopback fakes of the two merge request comment APIs grayops uses, as GitHub and GitLab document them:
GitHub's issue comments (Bearer token, Link pagination, `{"message": ...}` errors) and GitLab's merge request notes
(PRIVATE-TOKEN, X-Next-Page pagination). They keep what was posted, so tests read it back as a reviewer would."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "t0ken-s3cret"


@dataclass
class Forge:
    kind: str  # github | gitlab
    url: str = ""
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # request number -> comments
    calls: list[str] = field(default_factory=list)

    def bodies(self, number: int) -> list[str]:
        return [str(c["body"]) for c in self.comments.get(number, [])]


def _handler(forge: Forge) -> type[BaseHTTPRequestHandler]:
    next_id = [1000]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, code: int, doc: Any, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(doc).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if forge.kind == "github":
                ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
                if not ok:
                    self._answer(401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com"})
            else:
                ok = self.headers.get("PRIVATE-TOKEN") == TOKEN
                if not ok:
                    self._answer(401, {"message": "401 Unauthorized"})
            return ok

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            doc: dict[str, Any] = json.loads(self.rfile.read(length) or b"{}")
            return doc

        def _route(self, method: str) -> None:
            forge.calls.append(f"{method} {self.path}")
            if not self._authorised():
                return
            parts = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if forge.kind == "github":
                self._github(method, parts.path, query)
            else:
                self._gitlab(method, parts.path, query)

        def _page(self, items: list[dict[str, Any]], query: dict[str, str]) -> tuple[list[dict[str, Any]], bool]:
            size, page = min(int(query.get("per_page", 30)), 100), int(query.get("page", 1))
            return items[(page - 1) * size:page * size], page * size < len(items)

        def _github(self, method: str, path: str, query: dict[str, str]) -> None:
            listing = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path)
            one = re.fullmatch(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)", path)
            if listing and int(listing.group(2)) in forge.comments:
                thread = forge.comments[int(listing.group(2))]
                if method == "GET":
                    page, more = self._page(thread, query)
                    link = {}
                    if more:
                        following = int(query.get("page", 1)) + 1
                        link = {"Link": f'<{forge.url}{path}?per_page={query.get("per_page", 30)}&page={following}>; '
                                        'rel="next"'}
                    return self._answer(200, page, link)
                if method == "POST":
                    next_id[0] += 1
                    made = {"id": next_id[0], "body": self._body()["body"],
                            "html_url": f"https://github.example/pull/{listing.group(2)}#issuecomment-{next_id[0]}"}
                    thread.append(made)
                    return self._answer(201, made)
            if one and method == "PATCH":
                for thread in forge.comments.values():
                    for comment in thread:
                        if comment["id"] == int(one.group(2)):
                            comment["body"] = self._body()["body"]
                            return self._answer(200, comment)
            self._answer(404, {"message": "Not Found"})

        def _gitlab(self, method: str, path: str, query: dict[str, str]) -> None:
            notes = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes(?:/(\d+))?", path)
            if notes and int(notes.group(2)) in forge.comments:
                thread = forge.comments[int(notes.group(2))]
                if method == "GET" and notes.group(3) is None:
                    page, more = self._page(thread, query)
                    return self._answer(200, page, {"X-Next-Page": str(int(query.get("page", 1)) + 1) if more else ""})
                if method == "POST" and notes.group(3) is None:
                    next_id[0] += 1
                    made = {"id": next_id[0], "body": self._body()["body"], "system": False}
                    thread.append(made)
                    return self._answer(201, made)
                if method == "PUT" and notes.group(3):
                    for note in thread:
                        if note["id"] == int(notes.group(3)):
                            note["body"] = self._body()["body"]
                            return self._answer(200, note)
            self._answer(404, {"message": "404 Not found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def do_PATCH(self) -> None:
            self._route("PATCH")

        def do_PUT(self) -> None:
            self._route("PUT")

    return Handler


@contextmanager
def serve(kind: str) -> Iterator[Forge]:
    forge = Forge(kind)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(forge))
    forge.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield forge
    finally:
        server.shutdown()
        server.server_close()
