"""Preflight in the real `grayops run` (README "Supply chain"): every plugin with an `image` has its `image:version`
looked up in the registry before the first instance is touched, with no signatures or scan asked for. A tag that
is not there fails the rollout in seconds (not after instanceTimeout) with nothing touched; a registry that is down
blocks and the rollout proceeds when it is back; a registry that hangs does not delay a pause."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import (
    FAST_POLICY,
    Human,
    git,
    grayops,
    make_fleet_repo,
    plugin_yaml,
    remote_status,
    settings_yaml,
    stop_process,
    wait_for,
)
from tests.kube import test_run as kube_run
from tests.kube import test_run_blue_green as blue_green
from tests.kube.conftest import kube  # noqa: F401  (the emulated clusters)
from tests.kube.fleet import Fleet as KubeFleet
from tests.trust.registry import Registry
from tests.trust.test_run_gate import sim_versions, status_is

REPO = "plugins/billing"
SLOW_POLICY = FAST_POLICY.replace("instanceTimeout: 20s", "instanceTimeout: 10m")  # a timeout cannot fail it
SCAN_POLICY = SLOW_POLICY.replace("spec:\n", "spec:\n  scan: {maxSeverity: HIGH}\n", 1)


def registries(host: str) -> str:
    return f"registries:\n  - {{host: '{host}', insecure: true}}\n"


def plugin(image: str, version: str) -> dict[str, str]:
    return {"plugins/billing.yaml": plugin_yaml("billing", version, extra=f"  image: {image}\n")}


@contextmanager
def grayops_run(tmp_path: Path, remote: Path, *args: str) -> Iterator[Callable[[str], Callable[[], bool]]]:
    """`grayops run` (with `args`) in a child process for the duration; yields `said(text)`, a check on its log."""
    log = tmp_path / "run.log"
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "run", "--repo", str(remote), "--workdir", str(tmp_path / "work"),
             "--interval", "0.05", "--poll", "0.2", "--no-progress", *args], stdout=out, stderr=subprocess.STDOUT)
    try:
        yield lambda text: lambda: text in log.read_text()
        assert daemon.poll() is None, log.read_text()[-3000:]
    finally:
        assert stop_process(daemon) == 0


def test_a_tag_missing_from_the_registry_fails_the_rollout_in_seconds(tmp_path: Path, own_registry: Registry) -> None:
    registry, image = own_registry, f"{own_registry.host}/{REPO}"
    first = registry.push_image(REPO, "1.0.0")
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, registries(registry.host)),
                           "policies/fast.yaml": SLOW_POLICY, **plugin(image, "1.0.0")})
    workdir = tmp_path / "work"
    with grayops_run(tmp_path, human.remote) as said:
        wait_for(status_is(human, "1.0.0", "Succeeded"), timeout=120, what="1.0.0 rolled out")
        assert (remote_status(human, "billing") or {})["artifact"] == {"image": image, "digest": first}

        human.commit("2.0.0, whose image was never pushed", plugin(image, "2.0.0"))
        wait_for(status_is(human, "2.0.0", "Failed"), timeout=120, what="the rollout of a missing tag failed")
        status = remote_status(human, "billing") or {}
        assert status["reason"].startswith(f"artifact_missing: {image}:2.0.0: not found (MANIFEST_UNKNOWN); "
                                           "no instance touched; a human must decide: push the image")
        assert not status.get("batches") and not status.get("waiting")
        assert sim_versions(workdir) == {"1.0.0"}
        wait_for(said(f"ALERT artifact_missing (critical): billing 2.0.0: no instance touched: {image}:2.0.0: "),
                 what="the alert")
        report = git(human.remote, "grep", "-h", "| Result |", "main", "--", "reports/billing")
        assert "| Result | Failed |" in report  # the failed rollout has its record

        pushed = registry.push_image(REPO, "2.0.0")  # the pipeline was late: push, then retry
        retried = grayops("retry", "billing", "--repo", str(human.remote), "--as", "alice")
        assert retried.returncode == 0, retried.stderr
        wait_for(status_is(human, "2.0.0", "Succeeded"), timeout=120, what="2.0.0 after the retry")
        assert (remote_status(human, "billing") or {})["artifact"]["digest"] == pushed

        registry.push_image(REPO, "3.0.0")
        registry.stop()
        human.commit("3.0.0", plugin(image, "3.0.0"))
        wait_for(said(f"ALERT registry_unreachable (critical): billing 3.0.0: no instance touched: {image}:3.0.0: "),
                 what="the registry down blocks")
        # the alert is said before the tick's status commit is pushed: wait for the commit, not the line
        wait_for(status_is(human, "3.0.0", "Pending"), what="3.0.0 recorded as Pending while the registry is down")
        assert sim_versions(workdir) == {"2.0.0"}
        registry.start()
        wait_for(status_is(human, "3.0.0", "Succeeded"), timeout=120, what="3.0.0 once the registry is back")


@dataclass
class HangingRegistry:
    """A registry that takes every request and answers it one byte at a time, never finishing: each read arrives
    within any read timeout, so a client waits for as long as the server holds on."""

    server: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    requests: list[str] = field(default_factory=list)
    open: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.getsockname()[1]}"

    def serve(self) -> None:
        self.server.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed: the test is over
                return
            threading.Thread(target=self._hold, args=(conn,), daemon=True).start()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            self.requests.append(conn.recv(65536).split(b"\r\n", 1)[0].decode())
            self.open += 1
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
                while not self.stopping.wait(0.2):
                    conn.sendall(b" ")
            except OSError:
                pass
            finally:
                self.open -= 1


def test_a_hanging_registry_does_not_delay_a_pause(tmp_path: Path) -> None:
    """With a scan gate too, as the gate has the most to ask the registry then."""
    hanging = HangingRegistry()
    threading.Thread(target=hanging.serve, daemon=True).start()
    image = f"{hanging.host}/{REPO}"
    human = make_fleet_repo(tmp_path)
    human.commit("fleet", {"grayops.yaml": settings_yaml({"canary": 1, "prod": 2}, registries(hanging.host)),
                           "policies/fast.yaml": SCAN_POLICY, **plugin(image, "1.0.0")})
    try:
        with grayops_run(tmp_path, human.remote):
            wait_for(lambda: any("/manifests/1.0.0" in r for r in hanging.requests) and hanging.open,
                     what="the preflight's request held by the registry")
            paused = grayops("pause", "billing", "--repo", str(human.remote), "--reason", "hold on", "--as", "alice")
            assert paused.returncode == 0, paused.stderr
            wait_for(status_is(human, "1.0.0", "Paused"), timeout=60, what="the pause obeyed")
            assert hanging.open  # obeyed while the registry still holds the check: the tick never waited for it
            assert not (tmp_path / "work" / "sim-fleet.json").exists()  # and nothing was touched
    finally:
        hanging.stopping.set()
        hanging.server.close()


def test_on_kubernetes_a_missing_workload_or_tag_fails_the_rollout_before_any_patch(
        fleet_repo: Human, kube: KubeFleet, own_registry: Registry, tmp_path: Path) -> None:  # noqa: F811
    human, registry, image = fleet_repo, own_registry, f"{own_registry.host}/{REPO}"
    for version in ("1.0.0", "1.1.0"):
        registry.push_image(REPO, version)
    for emulator in kube.emulators.values():
        for ns in kube_run.NAMESPACES:
            if (emulator.name, ns) != ("kube-prod", "tenant-b"):
                emulator.add_deployment(ns, "billing", f"{image}:1.0.0", replicas=2)
        emulator.exec_handler = lambda pod, cmd: ("PONG\n", 0)
    extra = kube_run.PLUGIN + f"  image: {image}\n"
    human.commit("billing on kubernetes", {
        "grayops.yaml": kube_run.settings(kube) + registries(registry.host),
        "policies/kube.yaml": kube_run.POLICY.replace("OFFLINE", "wait").replace("instanceTimeout: 30s",
                                                                                 "instanceTimeout: 10m"),
        "plugins/billing.yaml": plugin_yaml("billing", "1.1.0", "kube", extra)})
    workdir = tmp_path / "work"

    kube_run.run_once(human, workdir)
    status = remote_status(human, "billing") or {}
    assert status["phase"] == "Failed" and status["reason"].startswith(
        "workload_missing: 1 instance(s) lack their workload or container: kube-prod/tenant-b: Deployment "
        "tenant-b/billing on cluster kube-prod: not found; no instance touched"), status["reason"]
    assert not any(e.patches for e in kube.emulators.values())  # nothing touched, nothing to roll back

    kube["kube-prod"].add_deployment("tenant-b", "billing", f"{image}:1.0.0", replicas=2)
    human.commit("billing 9.9.9, never pushed", {"plugins/billing.yaml": plugin_yaml("billing", "9.9.9", "kube",
                                                                                     extra)})
    kube_run.run_once(human, workdir)
    status = remote_status(human, "billing") or {}
    assert status["phase"] == "Failed" and status["reason"].startswith(f"artifact_missing: {image}:9.9.9: not found")
    assert not any(e.patches for e in kube.emulators.values())

    pushed = registry.push_image(REPO, "1.2.0")
    human.commit("billing 1.2.0", {"plugins/billing.yaml": plugin_yaml("billing", "1.2.0", "kube", extra)})
    kube_run.run_once(human, workdir)
    status = remote_status(human, "billing") or {}
    assert status["phase"] == "Succeeded", status["reason"]
    assert kube_run.images(kube) == {f"{image}:1.2.0@{pushed}"}  # the digest the preflight found, pinned


def test_a_blue_green_instance_without_its_deployment_service_or_container_fails_before_any_operation(
        fleet_repo: Human, kube: KubeFleet, tmp_path: Path) -> None:  # noqa: F811
    human = fleet_repo
    blue_green.seed(human, kube, "1.1.0")
    services = kube["kube-staging"].resource("services", "", "v1")
    kube["kube-staging"].delete(services, blue_green.NS, "billing")
    prod = kube["kube-prod"]
    prod.delete(prod.resource("deployments"), blue_green.NS, "billing")
    prod.add_deployment(blue_green.NS, "billing", f"{blue_green.IMAGE}:1.0.0", container="sidecar")
    before = {name: (e.requests["POST"], e.requests["PATCH"], e.requests["PUT"]) for name, e in kube.emulators.items()}

    blue_green.run_once(human, tmp_path / "work")
    status = remote_status(human, "billing") or {}
    assert status["phase"] == "Failed" and status["reason"].startswith(
        "workload_missing: 2 instance(s) lack their workload or container: "
        f"kube-prod/{blue_green.NS}: Deployment {blue_green.NS}/billing on cluster kube-prod: no container named "
        f"'billing' (it has: sidecar); kube-staging/{blue_green.NS}: Service {blue_green.NS}/billing on cluster "
        "kube-staging: not found; no instance touched"), status["reason"]
    assert not status.get("batches")
    after = {name: (e.requests["POST"], e.requests["PATCH"], e.requests["PUT"]) for name, e in kube.emulators.items()}
    assert after == before  # no Adopt, no Stage: nothing created or changed on any cluster
    assert blue_green.selector(kube, "kube-canary") == '{"app":"billing"}'  # not even the ready instance adopted
