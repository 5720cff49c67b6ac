"""A small OCI distribution client: what the artifact gate reads from a container registry, every byte checked.

Owns talking to registries (README "Supply chain"):

- `resolve(repo, tag)`: the manifest a tag names now and its digest, computed from the bytes (a
  `Docker-Content-Digest` header that disagrees is a `digest_mismatch`); `manifest(repo, digest)` and
  `blob(repo, digest)` fetch by digest and refuse bytes that do not hash to it;
- `referrers(repo, digest)`: the OCI 1.1 referrers API, or on a 404 its tag-schema fallback (the image index at
  tag `sha256-<hex>`), as the distribution spec says clients do;
- authentication: a 401's `WWW-Authenticate` challenge, Basic or Bearer (a token fetched from the realm for
  `repository:<name>:pull`, cached until it expires), with the credentials of `registries:` in grayops.yaml read at
  each use from their env variable or file; they never appear in a message or a log line;
- `fetch(url)`: a plain GET for a report URL, with the same rules for http and sizes.

https only, except `insecure: true` for a loopback registry (the settings model refuses it elsewhere). Nothing
raises to the caller: every failure is a `RegistryFailure` value, `unreachable` (connection refused, timeout,
5xx), `not_found`, `denied`, `digest_mismatch` or `invalid` (an answer that is not what the spec says), with a
message naming the reference.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlparse

import requests

from reconciler.adapters.secrets import SecretMissing, read_secret
from reconciler.core.spec import RegistrySettings, is_loopback_host

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
MAX_MANIFEST_BYTES = 4 << 20  # as the distribution registry limits them
MAX_BLOB_BYTES = 32 << 20  # a signature payload or a scan report; images' layers are never read
DEFAULT_TIMEOUT = 10.0
DOCKER_HUB = "registry-1.docker.io"
_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")

FailureKind = Literal["unreachable", "not_found", "denied", "digest_mismatch", "invalid"]


@dataclass(frozen=True)
class RegistryFailure:
    kind: FailureKind
    message: str  # names the reference; never a credential


@dataclass(frozen=True)
class Repository:
    """A repository in a registry: `registry.example.com:5000` + `plugins/billing`."""

    registry: str
    name: str

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"


def parse_repository(image: str) -> Repository | str:
    """The repository of an image reference (a tag or digest on it is dropped); or why it is not one. A first
    component without a dot, a colon or `localhost` is Docker Hub's, as docker reads it."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: len(name) - len(last)] + last.split(":", 1)[0]
    first, slash, rest = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        first, rest = DOCKER_HUB, name if slash else f"library/{name}"
    if first == "docker.io":
        first = DOCKER_HUB
    if not re.fullmatch(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", rest):
        return f"{image!r} is not an image reference (registry/repository, lower case)"
    return Repository(first, rest)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """A manifest or index as the registry served it: its bytes, their digest and the parsed document."""

    digest: str
    media_type: str
    data: bytes
    document: Mapping[str, Any]

    @property
    def layers(self) -> list[Descriptor]:
        return _descriptors(self.document.get("layers"))

    @property
    def manifests(self) -> list[Descriptor]:
        return _descriptors(self.document.get("manifests"))

    @property
    def subject(self) -> str | None:
        subject = self.document.get("subject")
        digest = subject.get("digest") if isinstance(subject, dict) else None
        return digest if isinstance(digest, str) else None

    @property
    def artifact_type(self) -> str:
        """`artifactType`, or the config's media type as OCI 1.1 says for manifests from before it."""
        found = self.document.get("artifactType")
        if isinstance(found, str) and found:
            return found
        config = self.document.get("config")
        media = config.get("mediaType") if isinstance(config, dict) else None
        return media if isinstance(media, str) else ""


def _descriptors(value: Any) -> list[Descriptor]:
    found = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("digest"), str):
            continue
        annotations = item.get("annotations")
        found.append(Descriptor(str(item.get("mediaType", "")), item["digest"],
                                item["size"] if isinstance(item.get("size"), int) else -1,
                                str(item.get("artifactType", "") or ""),
                                {str(k): str(v) for k, v in annotations.items()}
                                if isinstance(annotations, dict) else {}))
    return found


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def tag_for(digest: str, suffix: str = "") -> str:
    """The tag that holds an artifact of `digest` in cosign's and the referrers fallback's schema:
    `sha256-<hex>` + suffix (`.sig` for cosign signatures)."""
    return digest.replace(":", "-", 1) + suffix


class RegistryClient:
    """Reads manifests, blobs and referrers; thread-safe; never raises to the caller."""

    def __init__(self, registries: Sequence[RegistrySettings] = (), env: Mapping[str, str] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        self._settings = {r.host: r for r in registries}
        self._env = os.environ if env is None else env
        self._timeout = timeout
        self._local = threading.local()  # one requests.Session per thread: sessions are not thread-safe
        self._tokens: dict[tuple[str, str], tuple[str, float]] = {}  # (registry, scope) -> header, expiry
        self._lock = threading.Lock()

    # --- the API ------------------------------------------------------------------------------------------

    def resolve(self, repo: Repository, tag: str) -> Manifest | RegistryFailure:
        """What `repo:tag` names now, with the digest of the bytes served."""
        return self._manifest(repo, tag, expect=None)

    def manifest(self, repo: Repository, digest: str) -> Manifest | RegistryFailure:
        """The manifest `digest` names; bytes that hash otherwise are a digest_mismatch."""
        if not _DIGEST.match(digest):
            return RegistryFailure("invalid", f"{repo}@{digest}: not a digest")
        return self._manifest(repo, digest, expect=digest)

    def blob(self, repo: Repository, digest: str, limit: int = MAX_BLOB_BYTES) -> bytes | RegistryFailure:
        ref = f"{repo}@{digest}"
        if not _DIGEST.match(digest):
            return RegistryFailure("invalid", f"{ref}: not a digest")
        got = self._get(repo, f"/blobs/{digest}", ref, accept="*/*", limit=limit)
        if isinstance(got, RegistryFailure):
            return got
        actual = digest_of(got[0], digest.split(":", 1)[0])
        if actual != digest:
            return RegistryFailure("digest_mismatch", f"{ref}: the registry served bytes of {actual}")
        return got[0]

    def referrers(self, repo: Repository, digest: str, artifact_type: str | None = None
                  ) -> list[Descriptor] | RegistryFailure:
        """The artifacts that refer to `digest` (of `artifact_type`, when given): the referrers API, or its
        `sha256-<hex>` tag index where the registry has no such API."""
        ref = f"{repo}@{digest}"
        if not _DIGEST.match(digest):
            return RegistryFailure("invalid", f"{ref}: not a digest")
        query = f"?{urlencode({'artifactType': artifact_type})}" if artifact_type else ""
        got = self._get(repo, f"/referrers/{digest}{query}", f"referrers of {ref}", accept=OCI_INDEX,
                        limit=MAX_MANIFEST_BYTES)
        if isinstance(got, RegistryFailure) and got.kind == "not_found":  # no referrers API: the tag schema
            index = self._manifest(repo, tag_for(digest), expect=None)
            if isinstance(index, RegistryFailure):
                return [] if index.kind == "not_found" else index
            descriptors = index.manifests
        elif isinstance(got, RegistryFailure):
            return got
        else:
            try:
                descriptors = _descriptors(json.loads(got[0]).get("manifests"))
            except (ValueError, AttributeError):
                return RegistryFailure("invalid", f"referrers of {ref}: the answer is not an image index")
        return [d for d in descriptors if artifact_type is None or d.artifact_type == artifact_type]

    def fetch(self, url: str, limit: int = MAX_BLOB_BYTES) -> bytes | RegistryFailure:
        """A plain GET (a scan report URL): https, or http to a loopback host only."""
        parsed = urlparse(url)
        if parsed.scheme != "https" and not (parsed.scheme == "http" and is_loopback_host(parsed.netloc)):
            return RegistryFailure("invalid", f"{url}: only https (or http to a loopback host) is read")
        got = self._send("GET", url, {}, url, limit)
        if isinstance(got, RegistryFailure):
            return got
        response, data = got
        return data if response.status_code == 200 else _failure(response.status_code, data, url)

    def close(self) -> None:
        session = getattr(self._local, "session", None)
        if session is not None:
            session.close()

    # --- requests -----------------------------------------------------------------------------------------

    def _manifest(self, repo: Repository, reference: str, expect: str | None) -> Manifest | RegistryFailure:
        ref = f"{repo}@{reference}" if expect else f"{repo}:{reference}"
        got = self._get(repo, f"/manifests/{reference}", ref, accept=",".join(MANIFEST_TYPES),
                        limit=MAX_MANIFEST_BYTES)
        if isinstance(got, RegistryFailure):
            return got
        data, headers = got
        algorithm = expect.split(":", 1)[0] if expect else "sha256"
        actual = digest_of(data, algorithm)
        said = headers.get("Docker-Content-Digest")
        if expect is not None and actual != expect:
            return RegistryFailure("digest_mismatch", f"{ref}: the registry served bytes of {actual}")
        if said and said.startswith(f"{algorithm}:") and said != actual:
            return RegistryFailure("digest_mismatch", f"{ref}: the registry says {said}, its bytes are {actual}")
        try:
            document = json.loads(data)
        except ValueError:
            return RegistryFailure("invalid", f"{ref}: the manifest is not JSON")
        if not isinstance(document, dict):
            return RegistryFailure("invalid", f"{ref}: the manifest is not a JSON object")
        media = str(document.get("mediaType") or headers.get("Content-Type", "").split(";")[0])
        return Manifest(actual, media, data, document)

    def _get(self, repo: Repository, path: str, ref: str, accept: str, limit: int
             ) -> tuple[bytes, Mapping[str, str]] | RegistryFailure:
        url = f"{self._base(repo.registry)}/v2/{repo.name}{path}"
        headers = {"Accept": accept}
        scope = f"repository:{repo.name}:pull"
        cached = self._cached_auth(repo.registry, scope)
        if cached:
            headers["Authorization"] = cached
        got = self._send("GET", url, headers, ref, limit)
        if isinstance(got, RegistryFailure):
            return got
        response, data = got
        if response.status_code == 401:
            auth = self._authorize(repo.registry, scope, response.headers.get("WWW-Authenticate", ""), ref)
            if isinstance(auth, RegistryFailure):
                return auth
            got = self._send("GET", url, {**headers, "Authorization": auth}, ref, limit)
            if isinstance(got, RegistryFailure):
                return got
            response, data = got
        if response.status_code != 200:
            return _failure(response.status_code, data, ref)
        return data, response.headers

    def _send(self, method: str, url: str, headers: Mapping[str, str], ref: str, limit: int
              ) -> tuple[requests.Response, bytes] | RegistryFailure:
        try:
            with self._session().request(method, url, headers=dict(headers), timeout=self._timeout,
                                         stream=True, allow_redirects=True) as response:
                data = b""
                for chunk in response.iter_content(65536):
                    data += chunk
                    if len(data) > limit:
                        return RegistryFailure("invalid", f"{ref}: larger than {limit} bytes")
                return response, data
        except requests.Timeout:
            return RegistryFailure("unreachable", f"{ref}: no answer within {self._timeout:g}s")
        except requests.RequestException as err:
            return RegistryFailure("unreachable", f"{ref}: {_cause(err)}")

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = True  # HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE; never .netrc (auth is ours)
            session.auth = None
        return session

    def _base(self, registry: str) -> str:
        settings = self._settings.get(registry)
        insecure = settings is not None and settings.insecure and is_loopback_host(registry)
        return f"{'http' if insecure else 'https'}://{registry}"

    # --- authentication ---------------------------------------------------------------------------------

    def _credentials(self, registry: str, ref: str) -> tuple[str, str] | RegistryFailure | None:
        settings = self._settings.get(registry)
        if settings is None or settings.username is None or settings.password is None:
            return None
        try:
            return read_secret(settings.username, self._env), read_secret(settings.password, self._env)
        except SecretMissing as err:
            return RegistryFailure("denied", f"{ref}: the credentials for {registry} cannot be read: {err}")

    def _cached_auth(self, registry: str, scope: str) -> str | None:
        with self._lock:
            found = self._tokens.get((registry, scope))
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def _authorize(self, registry: str, scope: str, challenge: str, ref: str) -> str | RegistryFailure:
        """The Authorization header that answers `challenge`, or why there is none."""
        scheme, params = parse_challenge(challenge)
        credentials = self._credentials(registry, ref)
        if isinstance(credentials, RegistryFailure):
            return credentials
        if scheme == "basic":
            if credentials is None:
                return RegistryFailure("denied", f"{ref}: the registry asks for a password and grayops.yaml gives "
                                                 f"none for {registry} (registries:)")
            header = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
            self._remember(registry, scope, header, 300.0)
            return header
        if scheme != "bearer" or "realm" not in params:
            return RegistryFailure("denied", f"{ref}: the registry's challenge is not Basic or Bearer")
        return self._token(registry, scope, params, credentials, ref)

    def _token(self, registry: str, scope: str, params: Mapping[str, str], credentials: tuple[str, str] | None,
               ref: str) -> str | RegistryFailure:
        realm = urlparse(params["realm"])
        if realm.scheme != "https" and not (realm.scheme == "http" and is_loopback_host(realm.netloc)):
            return RegistryFailure("denied", f"{ref}: the token realm {params['realm']} is not https")
        query = {"scope": params.get("scope", scope), **({"service": params["service"]} if "service" in params
                                                          else {})}
        try:
            with self._session().get(params["realm"], params=query, auth=credentials, timeout=self._timeout,
                                     allow_redirects=False) as response:
                answer = response.json() if response.status_code == 200 else None
                status = response.status_code
        except (requests.RequestException, ValueError) as err:
            return RegistryFailure("unreachable", f"{ref}: the token service did not answer: {_cause(err)}")
        token = (answer.get("token") or answer.get("access_token")) if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            kind: FailureKind = "denied" if status in (401, 403) else "invalid"
            return RegistryFailure(kind, f"{ref}: the token service answered {status} without a token")
        expires = answer.get("expires_in") if isinstance(answer, dict) else None
        header = f"Bearer {token}"
        self._remember(registry, scope, header, float(expires) if isinstance(expires, int | float) else 60.0)
        return header

    def _remember(self, registry: str, scope: str, header: str, seconds: float) -> None:
        with self._lock:
            self._tokens[(registry, scope)] = (header, time.monotonic() + max(seconds - 10.0, 1.0))


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth/token",service="registry",scope="..."` -> ("bearer", {realm: ..., ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
              for m in re.finditer(r'([A-Za-z_]+)\s*=\s*(?:"([^"]*)"|([^\s,]+))', rest)}
    return scheme.lower(), params


def _failure(status: int, body: bytes, ref: str) -> RegistryFailure:
    code = _error_code(body)
    said = f" ({code})" if code else ""
    if status == 404:
        return RegistryFailure("not_found", f"{ref}: not found{said}")
    if status in (401, 403):
        return RegistryFailure("denied", f"{ref}: access denied ({status}){said}")
    if status >= 500 or status == 429:
        return RegistryFailure("unreachable", f"{ref}: the registry answered {status}{said}")
    return RegistryFailure("invalid", f"{ref}: the registry answered {status}{said}")


def _error_code(body: bytes) -> str:
    """The first error code of a distribution error body (`MANIFEST_UNKNOWN`), if any."""
    try:
        errors = json.loads(body or b"{}").get("errors")
    except (ValueError, AttributeError):
        return ""
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("code", ""))
    return ""


def _cause(err: Exception) -> str:
    """A connection error's root cause in a few words (`Connection refused`), without the URL's query."""
    text = str(err)
    for pattern in (r"\[Errno -?\d+\] ([^'\")\]]+)", r"(Connection refused|Name or service not known|timed out)"):
        found = re.search(pattern, text)
        if found:
            return found.group(1).strip()
    return type(err).__name__
