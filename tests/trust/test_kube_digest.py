"""The pinned digest on Kubernetes (README "Supply chain"): every instance of a gated rollout gets
`image:version@digest`, so a tag moved mid-rollout cannot swap content; grayops still reads the version from it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.core.effects import SetVersion
from reconciler.core.plan import InstanceRef
from tests.conftest import wait_for
from tests.kube.conftest import kube  # noqa: F401  (the emulated clusters, as the driver's tests use them)
from tests.kube.fleet import NAMES, Fleet, plugin

IMAGE = "registry.example.com/plugins/billing"
DIGEST = "sha256:" + "cd" * 32
REFS = [InstanceRef(c, "tenant-a") for c in NAMES]


@pytest.fixture
def driver(kube: Fleet) -> Iterator[KubernetesDriver]:  # noqa: F811
    made = kube.driver()
    yield made
    made.close()


def test_a_pinned_digest_is_what_every_deployment_runs(kube: Fleet, driver: KubernetesDriver) -> None:  # noqa: F811
    for emulator in kube.emulators.values():
        emulator.add_deployment("tenant-a", "billing", f"{IMAGE}:1.0.0", replicas=2)
    changes = [SetVersion("billing", ref.id, "1.1.0", "r-1", "1.0.0", DIGEST) for ref in REFS]
    assert driver.apply(plugin(), changes) == {}
    for emulator in kube.emulators.values():
        deployment = emulator.get(emulator.resource("deployments"), "tenant-a", "billing")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == f"{IMAGE}:1.1.0@{DIGEST}"
    wait_for(lambda: all(o.version == "1.1.0" and o.ready for o in driver.observe(plugin(), REFS).values()),
             what="the pinned version ready")
    assert driver.apply(plugin(), changes) == {}  # applying twice changes nothing
