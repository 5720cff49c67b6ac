"""deploy/kubernetes: every manifest valid against the Kubernetes OpenAPI schema, least privilege, and a
Deployment that runs the command grayops actually accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from reconciler.adapters.kube.client import connect_default
from reconciler.adapters.kube.lease import LeaderElector, ShardLeases
from reconciler.cli import build_parser
from tests.kube.emulator import Emulator, kubeconfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def all_documents() -> list[dict[str, Any]]:
    return [d for p in MANIFESTS for d in documents(p)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_documents() if d["kind"] == kind]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, "1.30", strict=True)


def test_the_kustomization_lists_the_manifests_and_builds() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in MANIFESTS} - {"secret.example.yaml"}
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed: .ci/run installs Debian's kubernetes-client")
    built = subprocess.run([kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60,
                           check=False)
    assert built.returncode == 0, built.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(built.stdout) if d)
    assert kinds == sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                            "Deployment", "Service"])


def test_rbac_is_least_privilege() -> None:
    rules = [r for role in by_kind("ClusterRole") + by_kind("Role") for r in role["rules"]]
    for rule in rules:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    verbs = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    assert verbs[("apps", "deployments")] == {"get", "list", "watch", "patch"}
    assert verbs[("", "pods/exec")] == {"create"}
    assert verbs[("coordination.k8s.io", "leases")] == {"get", "list", "create", "update", "delete"}
    assert not any(v & {"deletecollection", "escalate", "bind", "impersonate"} for v in verbs.values())
    deleting = {(g, r) for (g, r), v in verbs.items() if "delete" in v}
    assert deleting == {("coordination.k8s.io", "leases")}  # a dead replica's presence Lease, nothing else
    cluster_wide = {r for role in by_kind("ClusterRole") for rule in role["rules"] for r in rule["resources"]}
    assert "leases" not in cluster_wide  # Leases in grayops' own namespace only


def test_the_deployment_runs_grayops_safely_with_leader_election() -> None:
    (deployment,) = by_kind("Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = [a.replace("$(GIT_REPO)", "https://git.example.com/fleet.git") for a in container["args"]]
    parsed = build_parser().parse_args(args)
    assert parsed.leader_elect and parsed.listen == "0.0.0.0:9100" and parsed.workdir == "/var/lib/grayops"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["telemetry"] == 9100 and container["livenessProbe"]["httpGet"]["port"] == "telemetry"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert {"/var/lib/grayops", "/tmp"} <= set(mounts)
    assert all("emptyDir" in volumes[mounts[p]] for p in ("/var/lib/grayops", "/tmp"))
    assert pod["serviceAccountName"] == "grayops"


def test_the_secret_is_an_example_with_placeholders_only() -> None:
    (secret,) = by_kind("Secret")
    values = secret["stringData"]
    assert {"GIT_REPO", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} <= set(values)
    assert all("REPLACE" in v for v in values.values())


def test_the_strategies_role_grants_what_the_driver_does_and_no_more() -> None:
    path = DEPLOY / "strategies" / "rbac.yaml"
    docs = documents(path)
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    (role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    verbs = {(g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert all("*" not in v for v in verbs.values()) and all("*" not in g + r for g, r in verbs)
    assert verbs == {
        ("apps", "deployments"): {"create", "delete"},
        ("", "services"): {"get", "list", "watch", "create", "patch", "delete"},
        ("", "endpoints"): {"get", "list", "watch"},
        ("gateway.networking.k8s.io", "httproutes"): {"get", "list", "watch", "patch"},
        ("batch", "jobs"): {"get", "list", "create", "delete"},
        ("", "pods/log"): {"get"},
        ("", "configmaps"): {"get"},
    }
    (binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "grayops", "namespace": "grayops"}]


def lease_verbs(lease: str | None) -> set[tuple[str, str]]:
    """The (verb, "leases") the Roles grant on a Lease named `lease` (None: on any name, as a list needs)."""
    return {(verb, "leases") for role in by_kind("Role") for rule in role["rules"]
            if "coordination.k8s.io" in rule["apiGroups"] and "leases" in rule["resources"]
            and ("resourceNames" not in rule or (lease is not None and lease in rule["resourceNames"]))
            for verb in rule["verbs"]}


def test_the_role_grants_every_lease_request_of_sharding(tmp_path: Path) -> None:
    """`grayops run --shards N` against an API server that enforces the Role: Lease names vary with N and the pod
    names, so its rules must grant what ShardLeases calls on any name (README "Sharding")."""
    emulator = Emulator("home", controller=False).start()
    try:
        emulator.allowed = lease_verbs(None)
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig([emulator])))
        a, b = (ShardLeases(connect_default(str(path)), "grayops", "grayops", who, 2, duration=30.0) for who in "ab")
        a.step()  # list, create the presence and both shards
        assert a.snapshot() == {0, 1}, a.last_error
        b.step()
        a.step()  # a sees b: it stops acting for one shard, and gives its Lease back a round later (get, update)
        a.step()
        b.step()
        assert len(a.snapshot()) == len(b.snapshot()) == 1, (a.last_error, b.last_error)
        b.stop(release=True)  # a clean stop releases b's shard and deletes its presence Lease
        items, _ = emulator.list(emulator.resource("leases", "coordination.k8s.io"), "grayops")
        holders = {item["metadata"]["name"]: item["spec"].get("holderIdentity") for item in items}
        assert holders == {"grayops-0": "a", "grayops-1": None, "grayops-replica-a": "a"} or \
            holders == {"grayops-0": None, "grayops-1": "a", "grayops-replica-a": "a"}
    finally:
        emulator.stop()


def test_the_role_grants_every_lease_request_of_leader_election(tmp_path: Path) -> None:
    emulator = Emulator("home", controller=False).start()
    try:
        emulator.allowed = lease_verbs("grayops")
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig([emulator])))
        a = LeaderElector(connect_default(str(path)), "grayops", "grayops", "a", duration=30.0)
        assert a.try_acquire_or_renew(), a.last_error  # create
        assert a.try_acquire_or_renew(), a.last_error  # get, update
    finally:
        emulator.stop()
