"""Smoke tests against emulated API servers: a Job from the policy's spec (or a ConfigMap) run to completion,
failing with its log, timing out, removed in every case; http and exec smoke tests aimed at the staged color."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest
import yaml

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.adapters.kube.strategies import COLOR, MANAGED_BY
from reconciler.core.plan import InstanceRef
from reconciler.core.spec import ExecCheck, HttpCheck, JobCheck
from reconciler.core.strategy import Adopt, Operation, OperationResult, RunSmoke, SmokeResult, SmokeTarget, Stage
from tests.conftest import wait_for
from tests.kube.emulator import Emulator, Obj
from tests.kube.fleet import Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
REF = InstanceRef("kube-canary", "tenant-a")
JOB_SPEC = {"template": {"spec": {"containers": [{"name": "smoke", "image": "curlimages/curl:8.8.0",
                                                  "args": ["-fsS", "http://billing:8080/health"]}]}}}
BLUE_GREEN = plugin(workload={"kind": "Deployment", "name": "billing", "container": "billing",
                              "strategy": "blueGreen", "service": "billing"})


def job(template: dict[str, Any] | str = JOB_SPEC, timeout: str = "30s") -> JobCheck:
    return JobCheck.model_validate({"type": "job", "template": template, "timeout": timeout})


def smoke(*checks: HttpCheck | ExecCheck | JobCheck, after: Literal["upgrade", "rollback"] = "upgrade",
          target: SmokeTarget = "serving") -> RunSmoke:
    return RunSmoke("billing", REF.id, "1.1.0", "3f2a9c1d8e", after, target, checks)


def perform(driver: KubernetesDriver, op: Operation) -> OperationResult:
    result = driver.perform(BLUE_GREEN, op)
    assert isinstance(result, OperationResult)
    return result


def leftovers(emulator: Emulator) -> list[str]:
    jobs, _ = emulator.list(emulator.resource("jobs", "batch", "v1"), REF.namespace)
    pods, _ = emulator.list(emulator.resource("pods", "", "v1"), REF.namespace, "job-name")
    return [o["metadata"]["name"] for o in jobs + pods]


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:
    d = kube.driver()
    yield d
    d.close()


@pytest.fixture
def emulator(kube: Fleet) -> Emulator:
    found = kube["kube-canary"]
    found.add_deployment(REF.namespace, "billing", f"{IMAGE}:1.1.0")
    found.add_service(REF.namespace, "billing", {"app": "billing"})
    return found


def test_a_job_that_completes_passes_and_is_removed(emulator: Emulator, driver: KubernetesDriver) -> None:
    ran: list[dict[str, Any]] = []

    def completes(obj: Obj) -> tuple[str, str]:
        ran.append(obj)
        return "complete", "ok"

    emulator.job_handler = completes
    result = driver.smoke(plugin(), smoke(job()))
    assert result == SmokeResult(REF.id, "1.1.0", "upgrade", True, "smoke Job tenant-a/billing-smoke-upgrade-"
                                 "3f2a9c1d8e on cluster kube-canary completed")
    created = ran[0]
    assert created["metadata"]["labels"] == {MANAGED_BY: "grayops", "grayops.dev/plugin": "billing",
                                             "grayops.dev/smoke": "upgrade"}
    assert (created["spec"]["backoffLimit"], created["spec"]["activeDeadlineSeconds"]) == (0, 30)
    pod = created["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env == {"GRAYOPS_PLUGIN": "billing", "GRAYOPS_VERSION": "1.1.0", "GRAYOPS_ROLLOUT": "3f2a9c1d8e",
                   "GRAYOPS_CLUSTER": "kube-canary", "GRAYOPS_NAMESPACE": "tenant-a", "GRAYOPS_SERVICE": "billing"}
    wait_for(lambda: not leftovers(emulator), what="the Job and its pod removed")


def test_a_failing_job_fails_with_its_last_output(emulator: Emulator, driver: KubernetesDriver) -> None:
    emulator.job_handler = lambda obj: ("fail", "connecting\ncurl: (7) Failed to connect to billing port 8080\n")
    result = driver.smoke(plugin(), smoke(job(), after="rollback"))
    assert not result.ok and result.after == "rollback"
    assert result.message == ("smoke Job tenant-a/billing-smoke-rollback-3f2a9c1d8e on cluster kube-canary failed: "
                              "BackoffLimitExceeded: Job has reached the specified backoff limit; last output: "
                              "'connecting | curl: (7) Failed to connect to billing port 8080'")
    wait_for(lambda: not leftovers(emulator), what="the failed Job and its pod removed")


def test_a_job_that_never_finishes_fails_at_its_timeout(emulator: Emulator, driver: KubernetesDriver) -> None:
    emulator.job_handler = lambda obj: ("hang", "")
    result = driver.smoke(plugin(), smoke(job(timeout="1s")))
    assert not result.ok
    assert result.message == ("smoke Job tenant-a/billing-smoke-upgrade-3f2a9c1d8e on cluster kube-canary did not "
                              "finish within 1s")
    wait_for(lambda: not leftovers(emulator), what="the unfinished Job removed")


def test_a_job_spec_from_a_configmap(emulator: Emulator, driver: KubernetesDriver) -> None:
    configmaps = emulator.resource("configmaps", "", "v1")
    manifest = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "ignored"}, "spec": JOB_SPEC}
    emulator.create(configmaps, REF.namespace, {"metadata": {"name": "billing-smoke"},
                                                "data": {"job.yaml": yaml.safe_dump(manifest)}})
    images: list[str] = []

    def completes(obj: Obj) -> tuple[str, str]:
        images.append(obj["spec"]["template"]["spec"]["containers"][0]["image"])
        return "complete", ""

    emulator.job_handler = completes
    assert driver.smoke(plugin(), smoke(job("billing-smoke"))).ok
    assert images[0] == "curlimages/curl:8.8.0"
    missing = driver.smoke(plugin(), smoke(job("no-such-map")))
    assert not missing.ok and missing.message.endswith("ConfigMap tenant-a/no-such-map not found on cluster "
                                                       "kube-canary")


def test_a_job_found_from_an_earlier_ask_is_not_started_twice(emulator: Emulator, driver: KubernetesDriver) -> None:
    """A restart between creating the Job and reading its end: asking again waits for the same Job."""
    emulator.job_handler = lambda obj: ("complete", "")
    jobs = emulator.resource("jobs", "batch", "v1")
    spec = {**JOB_SPEC, "template": {"spec": {**JOB_SPEC["template"]["spec"], "restartPolicy": "Never"}}}
    emulator.create(jobs, REF.namespace, {"metadata": {"name": "billing-smoke-upgrade-3f2a9c1d8e"}, "spec": spec})
    posts = emulator.requests["POST"]
    assert driver.smoke(plugin(), smoke(job())).ok
    assert emulator.requests["POST"] == posts + 1  # one create, answered 409: the existing Job was used


def test_http_and_exec_smoke_tests_reach_the_staged_color_before_the_switch(emulator: Emulator,
                                                                            driver: KubernetesDriver) -> None:
    asked: list[str] = []
    ran_in: list[str] = []

    def answer_http(ns: str, service: str, path: str) -> tuple[int, str]:
        asked.append(service)
        return 200, "ok"

    def answer_exec(pod: Obj, cmd: list[str]) -> tuple[str, int]:
        ran_in.append(pod["metadata"]["labels"].get(COLOR, "-"))
        return "PONG\n", 0

    emulator.http_handler, emulator.exec_handler = answer_http, answer_exec
    wait_for(lambda: perform(driver, Adopt("billing", REF.id, "r-1")).ok)
    assert perform(driver, Stage("billing", REF.id, "1.2.0", "r-1", "1.1.0")).ok
    checks = (HttpCheck(type="http", path="/health", port=8080), ExecCheck(type="exec", command=["ping"],
                                                                          expect="PONG"))
    staged = wait_for(lambda: (r := driver.smoke(BLUE_GREEN, smoke(*checks, target="staged"))).ok and r,
                      what="the green pods ready for exec")
    assert asked[-1] == "billing-preview" and ran_in[-1] == "green"
    assert "service tenant-a/billing-preview:8080 /health" in staged.message
    serving = driver.smoke(BLUE_GREEN, smoke(*checks, target="serving"))
    assert serving.ok and asked[-1] == "billing" and ran_in[-1] == "blue"
    emulator.http_handler = lambda ns, service, path: (404, "no") if service == "billing-preview" else (200, "ok")
    failed = driver.smoke(BLUE_GREEN, smoke(*checks, target="staged"))
    assert not failed.ok and failed.message.endswith("answered 404, expected 200")


def test_a_cluster_gone_during_smoke_tests_is_unreachable(emulator: Emulator, driver: KubernetesDriver) -> None:
    emulator.down()
    result = driver.smoke(plugin(), smoke(job()))
    assert (result.ok, result.reachable) == (False, False)
    assert result.message.startswith("cluster kube-canary unreachable")
