"""The Kubernetes cluster driver: grayops acting on real clusters through the official `kubernetes` client.

Owns: one API client per cluster (`client`), one list+watch cache per cluster and resource kind (`cache`), what
a Deployment, StatefulSet or custom resource reports and how it is changed (`workloads`), the http/exec/metric
checks (`checks`), the `KubernetesDriver` that implements the `ClusterDriver` port (`driver`), and leader
election on a coordination.k8s.io Lease (`lease`).

Must not: decide anything (the engine does; the driver reports and makes the changes it is asked for), raise out
of the port's methods (a cluster that cannot be reached or refuses a change is an observation or an error string
naming the cluster, namespace and object), or log secrets from kubeconfigs.
"""
