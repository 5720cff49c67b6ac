"""The real Prometheus server (Debian's `prometheus` package) for tests: a generated config, a free loopback port,
storage in a temporary directory, a 1 s scrape interval. Missing binaries fail the test with a clear message;
they never skip it (CI installs them in .ci/run)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import free_port, stop_process, wait_for

T = TypeVar("T")


def binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if found is None:
        pytest.fail(f"{name} is not installed: install Debian's prometheus package (apt-get install prometheus); "
                    "the Prometheus tests never skip", pytrace=False)
    return found






@dataclass
class Prometheus:
    """One prometheus process scraping `targets` (host:port) every second."""

    workdir: Path
    targets: Sequence[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    web_config: Path | None = None  # --web.config.file (TLS)
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        jobs = "".join(
            f"  - job_name: t{i}\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
            for i, target in enumerate(self.targets)
        )
        config.write_text("global: {scrape_interval: 1s, evaluation_interval: 1s}\nscrape_configs:\n"
                          + (jobs or "  []\n"))
        log = (self.workdir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
             *([f"--web.config.file={self.web_config}"] if self.web_config else [])],
            stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=60, what=f"prometheus on {self.url} to be ready (log: {log.name})")
        return self

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            log = (self.workdir / "prometheus.log").read_text(errors="replace")[-2000:]
            raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2, context=_unverified()) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process(self.process)
        self.process = None

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            result: list[dict[str, Any]] = json.loads(response.read())["data"]["result"]
            return result

    def values(self, promql: str) -> list[float]:
        return [float(series["value"][1]) for series in self.query(promql)]

    def target_up(self, target: str) -> bool:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as response:
            active = json.loads(response.read())["data"]["activeTargets"]
        return any(t["scrapeUrl"].startswith(f"http://{target}/") and t["health"] == "up" for t in active)


def _unverified() -> ssl.SSLContext:
    """Readiness polling only: the tests of TLS itself verify with the CA."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
