"""The Kubernetes cluster driver: grayops acting on real clusters through the official `kubernetes` client.

Owns: one API client per cluster (`client`), one list+watch cache per cluster and resource kind (`cache`), what
a Deployment, StatefulSet or custom resource reports and how it is changed (`workloads`), the http/exec/metric
checks (`checks`), the `KubernetesDriver` that implements the `ClusterDriver` port (`driver`), and leader
election on a coordination.k8s.io Lease (`lease`).

Must not: decide anything (the engine does; the driver reports and makes the changes it is asked for), raise out
of the port's methods (a cluster that cannot be reached or refuses a change is an observation or an error string
naming the cluster, namespace and object), or log secrets from kubeconfigs.

The driver's settings and declaration are here, so that knowing the `kubernetes` driver (to validate
grayops.yaml) does not load the Kubernetes client; building the driver does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from reconciler.adapters.ports import Context, DriverAdapter
from reconciler.core.spec import ClusterSpec

if TYPE_CHECKING:
    from reconciler.adapters.kube.driver import KubernetesDriver


class KubernetesCluster(ClusterSpec):
    """`driver: kubernetes`: a cluster reached with the official client (README "Kubernetes clusters")."""

    driver: Literal["kubernetes"]
    kube_context: str | None = None
    kubeconfig: str | None = None


def _driver(clusters: Sequence[KubernetesCluster], context: Context) -> KubernetesDriver:
    from reconciler.adapters.kube.driver import KubernetesDriver

    return KubernetesDriver(clusters, context.metrics)


DRIVER = DriverAdapter("kubernetes", KubernetesCluster, _driver)
