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

from reconciler.cli import build_parser

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
    assert ("coordination.k8s.io", "leases") in verbs
    assert not any(v & {"delete", "deletecollection", "escalate", "bind", "impersonate"} for v in verbs.values())


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
