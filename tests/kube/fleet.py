"""Three emulated API servers as one fleet: a kubeconfig with one context each, cluster specs and drivers on them."""

from __future__ import annotations

from pathlib import Path

import yaml

from reconciler.adapters.kube import KubernetesCluster
from reconciler.adapters.kube.driver import KubernetesDriver
from reconciler.core.spec import Plugin
from tests.kube.emulator import Emulator, kubeconfig

NAMES = ("kube-canary", "kube-staging", "kube-prod")


class Fleet:
    def __init__(self, emulators: list[Emulator], path: Path) -> None:
        self.emulators = {e.name: e for e in emulators}
        self.kubeconfig = path

    def clusters(self, **labels: str) -> list[KubernetesCluster]:
        tiers = {"kube-canary": "canary", "kube-staging": "staging", "kube-prod": "prod"}
        return [KubernetesCluster(name=name, labels={"tier": tiers.get(name, "prod"), **labels}, driver="kubernetes",
                                  kube_context=name, kubeconfig=str(self.kubeconfig)) for name in self.emulators]

    def driver(self) -> KubernetesDriver:
        return KubernetesDriver(self.clusters())

    def __getitem__(self, name: str) -> Emulator:
        return self.emulators[name]


def clusters_for(emulators: list[Emulator], directory: Path) -> list[KubernetesCluster]:
    """Cluster specs for emulators outside the fleet fixture, through a kubeconfig of their own in `directory`."""
    path = directory / f"kubeconfig-{emulators[0].name}"
    path.write_text(yaml.safe_dump(kubeconfig(emulators)))
    return [KubernetesCluster(name=e.name, driver="kubernetes", kube_context=e.name, kubeconfig=str(path))
            for e in emulators]


def plugin(name: str = "billing", version: str = "1.0.0", workload: dict[str, object] | None = None,
           image: str | None = "registry.example.com/plugins/billing") -> Plugin:
    spec: dict[str, object] = {"version": version, "namespaces": ["tenant-a", "tenant-b"],
                               "workload": workload or {"kind": "Deployment", "name": name, "container": name}}
    if image:
        spec["image"] = image
    return Plugin.model_validate({"apiVersion": "grayops.dev/v1", "kind": "Plugin", "metadata": {"name": name},
                                  "spec": spec})
