"""A loopback HTTP proxy in front of the real registry, for what Debian's distribution 2.8 does not do itself:

- `referrers_api`: answer the OCI 1.1 referrers API (`/v2/<name>/referrers/<digest>`) as a 1.1 registry does,
  from what the registry holds (the `sha256-<hex>` tag index), so both of the client's paths are exercised;
- `corrupt`: serve manifests whose bytes differ from the `Docker-Content-Digest` the registry gave (a registry or
  a man in the middle serving other content than it claims);
- `bearer`: the token authentication most registries use: a 401 with `WWW-Authenticate: Bearer realm=...`, a
  token service at `/token` that checks Basic credentials, and the bearer token required on every request.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import requests

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@dataclass
class Faults:
    referrers_api: bool = False
    corrupt: bool = False
    bearer: tuple[str, str] | None = None  # the (user, password) the token service accepts
    tokens: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)  # "GET /v2/..." with the Authorization header's scheme


@contextmanager
def proxy(upstream: str, faults: Faults) -> Iterator[str]:
    """`host:port` of a proxy to `upstream` (http://host:port) with `faults`, for the duration."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            faults.requests.append(f"GET {self.path} {auth.split(' ')[0]}".strip())
            url = urlparse(self.path)
            if url.path == "/token":
                return self._token(auth, parse_qs(url.query))
            if faults.bearer and auth.removeprefix("Bearer ") not in faults.tokens:
                host = self.headers["Host"]
                return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', {
                    "WWW-Authenticate": f'Bearer realm="http://{host}/token",service="test-registry"'})
            parts = url.path.split("/")
            if faults.referrers_api and len(parts) >= 5 and parts[-2] == "referrers":
                return self._referrers("/".join(parts[2:-2]), parts[-1], parse_qs(url.query))
            answer = requests.get(upstream + self.path, headers={"Accept": self.headers.get("Accept", "*/*")},
                                  timeout=30)
            body = answer.content
            if faults.corrupt and "/manifests/" in url.path and answer.status_code == 200:
                body = body.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
            headers = {k: v for k, v in answer.headers.items()
                       if k in ("Content-Type", "Docker-Content-Digest", "Location")}
            self._send(answer.status_code, body, headers)

        def _referrers(self, name: str, digest: str, query: dict[str, list[str]]) -> None:
            found = requests.get(f"{upstream}/v2/{name}/manifests/{digest.replace(':', '-')}",
                                 headers={"Accept": OCI_INDEX}, timeout=30)
            manifests = found.json()["manifests"] if found.status_code == 200 else []
            wanted = query.get("artifactType", [None])[0]
            listed = [m for m in manifests if wanted is None or m.get("artifactType") == wanted]
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listed}).encode()
            self._send(200, body, {"Content-Type": OCI_INDEX,
                                   **({"OCI-Filters-Applied": "artifactType"} if wanted else {})})

        def _token(self, auth: str, query: dict[str, list[str]]) -> None:
            expected = faults.bearer
            given = base64.b64decode(auth.removeprefix("Basic ")).decode() if auth.startswith("Basic ") else ""
            if expected is None or given != ":".join(expected) or query.get("service") != ["test-registry"]:
                return self._send(401, b'{"details":"incorrect username or password"}', {})
            token = secrets.token_hex(16)
            faults.tokens.add(token)
            self._send(200, json.dumps({"token": token, "expires_in": 300}).encode(),
                       {"Content-Type": "application/json"})

        def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
