"""A container registry for `grayops demo --secure` (README "Supply chain"): Debian's `docker-registry` (the CNCF
distribution registry) on a free loopback port, and what a build pipeline does with it: push a small image as an
OCI manifest and sign it as `cosign sign --key` does (the simple-signing payload as a layer of the manifest at tag
`sha256-<hex>.sig`, the signature in its annotation). Pushes go through the registry's HTTP API."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
STARTUP = 30.0  # seconds for the registry to answer


def registry_binary() -> str | None:
    return shutil.which("docker-registry")


def _compact(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class DemoRegistry:
    """One registry process, its storage and log in `workdir`."""

    def __init__(self, binary: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            self.host = f"127.0.0.1:{probe.getsockname()[1]}"
        config = workdir / "config.yml"
        config.write_text("version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\n"
                          f"storage: {{filesystem: {{rootdirectory: '{workdir / 'data'}'}}}}\n"
                          f"http: {{addr: '{self.host}'}}\n")
        self._log = workdir / "registry.log"
        with self._log.open("ab") as log:
            self._process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL)
        self._session = requests.Session()
        self._wait_until_it_answers()

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _wait_until_it_answers(self) -> None:
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"docker-registry exited: {self._log.read_text()[-500:]}")
            try:
                if self._session.get(f"{self.url}/v2/", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"docker-registry did not answer on {self.host} within {STARTUP:g}s")

    def stop(self) -> None:
        self._session.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def push_image(self, repo: str, tag: str) -> str:
        """A small image (a config and one layer) at `repo:tag`; returns its manifest digest."""
        layer = self._blob(repo, f"the files of {repo}:{tag}".encode())
        config = self._blob(repo, _compact({"architecture": "amd64", "os": "linux",
                                            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}))
        return self._manifest(repo, tag, {"config": {**config, "mediaType": OCI_CONFIG},
                                          "layers": [{**layer, "mediaType": "application/vnd.oci.image.layer.v1.tar"}]})

    def sign(self, repo: str, digest: str, key: ec.EllipticCurvePrivateKey) -> None:
        """cosign's classic signature of `digest` by `key`."""
        payload = _compact({"critical": {"identity": {"docker-reference": f"{self.host}/{repo}"},
                                         "image": {"docker-manifest-digest": digest},
                                         "type": "cosign container image signature"}, "optional": None})
        signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
        layer = {**self._blob(repo, payload), "mediaType": SIMPLE_SIGNING,
                 "annotations": {"dev.cosignproject.cosign/signature": signature}}
        config = self._blob(repo, _compact({"architecture": "", "os": "", "config": {},
                                            "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}))
        self._manifest(repo, digest.replace(":", "-") + ".sig",
                       {"config": {**config, "mediaType": OCI_CONFIG}, "layers": [layer]})

    def _blob(self, repo: str, data: bytes) -> dict[str, Any]:
        started = self._session.post(f"{self.url}/v2/{repo}/blobs/uploads/", timeout=30)
        started.raise_for_status()
        location = started.headers["Location"]
        location = location if location.startswith("http") else self.url + location
        self._session.put(location, params={"digest": _digest(data)}, data=data, timeout=30,
                          headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        return {"mediaType": "application/octet-stream", "digest": _digest(data), "size": len(data)}

    def _manifest(self, repo: str, reference: str, parts: dict[str, Any]) -> str:
        data = _compact({"schemaVersion": 2, "mediaType": OCI_MANIFEST, **parts})
        self._session.put(f"{self.url}/v2/{repo}/manifests/{reference}", data=data, timeout=30,
                          headers={"Content-Type": OCI_MANIFEST}).raise_for_status()
        return _digest(data)
