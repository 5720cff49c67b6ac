"""The real container registry for tests (Debian's `docker-registry`, the CNCF distribution registry) and what a
CI pipeline does with it: push images as OCI manifests, sign them in cosign's layout, attach Trivy reports as
OCI referrers. Pushes go through the registry's HTTP API, as any client's do.

Distribution 2.8 has no referrers API (its 404 makes clients use the `sha256-<hex>` tag index), so reports are
attached the way clients do then: the report manifest pushed by digest, and the tag index updated.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from tests.conftest import free_port, stop_process, wait_for

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
REPORT_TYPE = "application/vnd.grayops.trivy.report.v1+json"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def registry_binary() -> str:
    found = shutil.which("docker-registry") or ("/usr/bin/docker-registry"
                                                 if Path("/usr/bin/docker-registry").exists() else None)
    if found is None:
        pytest.fail("docker-registry is not installed: apt-get install docker-registry (the CNCF distribution "
                    "registry); the supply-chain tests never skip", pytrace=False)
    return found


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class Registry:
    """One registry process on a free loopback port, its storage in `workdir`; `stop()` and `start()` again
    keep the content (a registry that goes down and comes back)."""

    workdir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    extra_config: str = ""
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> Registry:
        config = self.workdir / "config.yml"
        self.workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(
            "version: 0.1\n"
            "log: {level: error, accesslog: {disabled: true}}\n"
            f"storage:\n  filesystem: {{rootdirectory: {self.workdir / 'data'}}}\n  delete: {{enabled: true}}\n"
            f"http: {{addr: '{self.host}'}}\n" + self.extra_config)
        log = (self.workdir / "registry.log").open("ab")
        self.process = subprocess.Popen([registry_binary(), "serve", str(config)], stdout=log, stderr=log,
                                        stdin=subprocess.DEVNULL)
        wait_for(self._answers, timeout=60, what=f"the registry on {self.host}")
        return self

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"docker-registry exited: {(self.workdir / 'registry.log').read_text()[-2000:]}")
        try:
            return requests.get(f"{self.url}/v2/", timeout=2).status_code in (200, 401)
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    # --- what a pipeline pushes ---------------------------------------------------------------------------

    def push_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        digest = digest_of(data)
        started = self.session.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=30)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        location = location if location.startswith("http") else self.url + location
        done = self.session.put(location, params={"digest": digest}, data=data,
                                headers={"Content-Type": "application/octet-stream"}, timeout=30)
        assert done.status_code == 201, done.text
        return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}

    def push_manifest(self, repo: str, reference: str, data: bytes, media_type: str = OCI_MANIFEST) -> str:
        done = self.session.put(f"{self.url}/v2/{repo}/manifests/{reference}", data=data,
                                headers={"Content-Type": media_type}, timeout=30)
        assert done.status_code == 201, done.text
        return digest_of(data)

    def push_image(self, repo: str, tag: str, content: str = "") -> str:
        """A small image (a config and one layer) at `repo:tag`; returns its manifest digest."""
        layer = self.push_blob(repo, f"layer of {repo}:{tag} {content}".encode())
        config = self.push_blob(repo, compact({"architecture": "amd64", "os": "linux",
                                               "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"},
                    "layers": [{**layer, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}]}
        return self.push_manifest(repo, tag, compact(manifest))

    def sign(self, repo: str, digest: str, keys: Sequence[PrivateKey], *, names: str | None = None,
             signature: str | None = None) -> str:
        """cosign's classic signature of `digest` at tag `sha256-<hex>.sig`: one simple-signing layer per key,
        its payload naming `names` (default: `digest`), signed by the key (or the given base64 `signature`)."""
        layers = []
        for key in keys:
            payload = simple_signing(f"{self.host}/{repo}", names or digest)
            blob = self.push_blob(repo, payload)
            signed = signature if signature is not None else base64.b64encode(sign(key, payload)).decode()
            layers.append({**blob, "mediaType": SIMPLE_SIGNING,
                           "annotations": {"dev.cosignproject.cosign/signature": signed}})
        config = self.push_blob(repo, compact({"architecture": "", "os": "", "config": {},
                                               "rootfs": {"type": "layers",
                                                          "diff_ids": [layer["digest"] for layer in layers]}}))
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {**config, "mediaType": "application/vnd.oci.image.config.v1+json"}, "layers": layers}
        return self.push_manifest(repo, digest.replace(":", "-") + ".sig", compact(manifest))

    def attach_report(self, repo: str, digest: str, report: bytes, created: str = "2025-03-01T10:00:00Z",
                      subject: str | None = None) -> str:
        """A Trivy JSON report as an OCI 1.1 referrer of `digest` (subject), listed in the tag index."""
        empty = self.push_blob(repo, b"{}")
        layer = self.push_blob(repo, report)
        subject_digest = subject or digest
        manifest = compact({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": REPORT_TYPE,
            "config": {**empty, "mediaType": "application/vnd.oci.empty.v1+json"},
            "layers": [{**layer, "mediaType": "application/json"}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject_digest, "size": 100},
            "annotations": {"org.opencontainers.image.created": created}})
        report_digest = self.push_manifest(repo, digest_of(manifest), manifest)
        index_tag = digest.replace(":", "-")
        found = self.session.get(f"{self.url}/v2/{repo}/manifests/{index_tag}", headers={"Accept": OCI_INDEX},
                                 timeout=30)
        index: dict[str, Any]  # the referrers index, as JSON
        index = found.json() if found.status_code == 200 else {"schemaVersion": 2, "mediaType": OCI_INDEX,
                                                                "manifests": []}
        index["manifests"].append({"mediaType": OCI_MANIFEST, "digest": report_digest, "size": len(manifest),
                                   "artifactType": REPORT_TYPE,
                                   "annotations": {"org.opencontainers.image.created": created}})
        self.push_manifest(repo, index_tag, compact(index), OCI_INDEX)
        return report_digest


def simple_signing(reference: str, digest: str) -> bytes:
    """The payload cosign signs, byte for byte as cosign writes it (tests/trust/data shows the same bytes)."""
    return compact({"critical": {"identity": {"docker-reference": reference},
                                 "image": {"docker-manifest-digest": digest},
                                 "type": "cosign container image signature"}, "optional": None})


def sign(key: PrivateKey, payload: bytes) -> bytes:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(payload, ec.ECDSA(hashes.SHA256()))
    return key.sign(payload)


def public_pem(key: PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def trivy_report(findings: Sequence[Mapping[str, str]], repo_digests: Sequence[str] = ()) -> bytes:
    """A report shaped as `trivy image --format json` writes it."""
    vulns = [{"VulnerabilityID": f["id"], "PkgName": f.get("pkg", "openssl"),
              "InstalledVersion": f.get("installed", "3.0.1"), **({"FixedVersion": f["fixed"]} if "fixed" in f
                                                                  else {}),
              "Severity": f["severity"], "Title": "a finding"} for f in findings]
    return json.dumps({"SchemaVersion": 2, "CreatedAt": "2025-03-01T10:00:00Z", "ArtifactName": "billing:1.5.0",
                       "ArtifactType": "container_image",
                       "Metadata": {"OS": {"Family": "debian", "Name": "12.5"}, "RepoDigests": list(repo_digests)},
                       "Results": [{"Target": "billing (debian 12.5)", "Class": "os-pkgs", "Type": "debian",
                                    "Vulnerabilities": vulns}]}, indent=2).encode()
