"""helm/gpucloud against the sandbox's apiserver (the default region): server-side dry runs of both values
files, then a real `helm install` (kwok fakes the pods, so Deployments and the migrations hook's Job run
without images) into a fresh namespace that enforces the restricted Pod Security Standard, and
`kubectl auth can-i` as each component's ServiceAccount.

The migrations hook runs for real here: kwok's pod-complete stage turns a Job's Running pod Succeeded,
the Job completes, and helm proceeds (no --no-hooks needed).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.fixtures.kube import Sandbox, create_namespace, delete_namespace
from tests.helm.support import CHART, COMPONENTS, PRODUCTION_VALUES, helm, kubectl_bin, run, template_text

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


@dataclass(frozen=True)
class Installed:
    namespace: str
    release: str
    kubeconfig: Path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return kubectl(self.kubeconfig, *args)

    def account(self, comp: str) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.release}-gpucloud-{comp}"

    def cluster_name(self, suffix: str) -> str:
        return f"{self.namespace}-{self.release}-gpucloud-{suffix}"

    def as_(self, comp: str, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        """A real request as the component's ServiceAccount (the administrator impersonating it)."""
        return kubectl(self.kubeconfig, *args, f"--as={self.account(comp)}", input_text=input_text)

    def can(self, comp: str, *args: str) -> bool:
        result = self.kubectl("auth", "can-i", *args, f"--as={self.account(comp)}")
        assert result.stdout.strip() in ("yes", "no"), result.stdout + result.stderr
        return result.stdout.strip() == "yes"


def kubectl(kubeconfig: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return run([kubectl_bin(), "--kubeconfig", str(kubeconfig), *args], input_text=input_text)


@pytest.fixture
def restricted_namespace(make_namespace: Callable[..., str]) -> str:
    return make_namespace(labels=RESTRICTED, prefix="chart-dry-run")


@pytest.mark.parametrize(
    "values",
    [[], ["-f", str(PRODUCTION_VALUES), "--set", "serviceMonitor.enabled=false"]],
    ids=["default", "production"],
)
def test_server_side_dry_run_accepts_the_chart(
    sandbox: Sandbox, restricted_namespace: str, values: list[str]
) -> None:
    # The sandbox has no Prometheus Operator CRDs: the ServiceMonitor is checked by rendering only.
    text = template_text(*values, namespace=restricted_namespace)
    objects = [d for d in yaml.safe_load_all(text) if d]
    result = kubectl(
        sandbox.kubeconfig_for(),
        "apply",
        "--dry-run=server",
        "-n",
        restricted_namespace,
        "-f",
        "-",
        input_text=text,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects)
    assert "violate PodSecurity" not in result.stderr


@pytest.fixture(scope="module")
def installed(sandbox: Sandbox) -> Iterator[Installed]:
    kubeconfig = sandbox.kubeconfig_for()
    api = sandbox.api_client()
    suffix = uuid.uuid4().hex[:6]
    release = f"gc{suffix}"
    namespace = create_namespace(api, f"chart-install-{suffix}", RESTRICTED)
    try:
        # The Secret the chart references (made by the operator of an installation, never by the chart).
        secret = kubectl(
            kubeconfig,
            "-n",
            namespace,
            "create",
            "secret",
            "generic",
            "gpucloud",
            "--from-literal=SECRET_KEY=test-only",
            "--from-literal=DATABASE_URL=postgres://test@db/test",
            "--from-literal=REDIS_URL=redis://redis:6379/0",
            "--from-literal=FIELD_ENCRYPTION_KEYS=test-only",
        )
        assert secret.returncode == 0, secret.stderr
        result = helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "240s",
            kubeconfig=kubeconfig,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        yield Installed(namespace=namespace, release=release, kubeconfig=kubeconfig)
    finally:
        helm(
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--wait",
            "--timeout",
            "120s",
            kubeconfig=kubeconfig,
        )
        delete_namespace(api, namespace)
        api.close()


def _get(installed: Installed, *args: str) -> dict[str, Any]:
    result = installed.kubectl("-n", installed.namespace, "get", *args, "-o", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_install_runs_every_component(installed: Installed) -> None:
    status = json.loads(
        helm(
            "status",
            installed.release,
            "-n",
            installed.namespace,
            "-o",
            "json",
            kubeconfig=installed.kubeconfig,
        ).stdout
    )
    assert status["info"]["status"] == "deployed"
    hooks = {h["kind"]: h["last_run"]["phase"] for h in status["hooks"]}
    assert hooks == {"Job": "Succeeded", "ServiceAccount": "Succeeded"}

    deployments = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in _get(installed, "deployments", "-l", f"app.kubernetes.io/instance={installed.release}")[
            "items"
        ]
    }
    assert set(deployments) == set(COMPONENTS)
    for comp, deployment in deployments.items():
        assert deployment["status"].get("readyReplicas") == deployment["spec"]["replicas"], comp
    assert deployments["operator"]["spec"]["replicas"] == 2
    assert deployments["beat"]["spec"]["replicas"] == 1
    pods = _get(installed, "pods", "-l", f"app.kubernetes.io/instance={installed.release}")["items"]
    running = {
        p["metadata"]["labels"]["app.kubernetes.io/component"]
        for p in pods
        if p["status"]["phase"] == "Running"
    }
    assert running == set(COMPONENTS)
    # The hook's Job and ServiceAccount were removed once it succeeded.
    assert _get(installed, "jobs")["items"] == []

    kinds = {
        (o["kind"], o["metadata"]["name"])
        for o in _get(installed, "services,configmaps,serviceaccounts,hpa,pdb")["items"]
    }
    name = f"{installed.release}-gpucloud"
    assert {
        ("Service", f"{name}-web"),
        ("Service", f"{name}-worker-metrics"),
        ("Service", f"{name}-operator-metrics"),
        ("ConfigMap", f"{name}-config"),
        *{("ServiceAccount", f"{name}-{c}") for c in COMPONENTS},
        ("HorizontalPodAutoscaler", f"{name}-web"),
        ("HorizontalPodAutoscaler", f"{name}-worker"),
        ("PodDisruptionBudget", f"{name}-web"),
        ("PodDisruptionBudget", f"{name}-worker"),
        ("PodDisruptionBudget", f"{name}-operator"),
    } <= kinds
    role = installed.kubectl("get", "clusterrole", f"{installed.namespace}-{name}-operator", "-o", "name")
    assert role.returncode == 0, role.stderr


# What the operator does (apps/operator; see templates/operator-rbac.yaml), in tenant namespaces that
# do not exist yet ("-A": in every namespace).
OPERATOR_MAY = [
    ("create", "namespaces"),
    ("patch", "namespaces"),
    ("list", "namespaces"),
    ("delete", "namespaces"),
    ("create", "pods", "-A"),
    ("get", "pods", "-n", "gpucloud-t-abc"),
    ("watch", "pods", "-A"),
    ("delete", "pods", "-n", "gpucloud-t-abc"),
    ("patch", "secrets", "-n", "gpucloud-t-abc"),
    ("delete", "secrets", "-n", "gpucloud-t-abc"),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", "gpucloud-t-abc"),
    ("patch", "rolebindings.rbac.authorization.k8s.io", "-n", "gpucloud-t-abc"),
    ("create", "services", "-n", "gpucloud-t-abc"),
    ("get", "services", "-n", "gpucloud-t-abc"),
    ("create", "persistentvolumeclaims", "-n", "gpucloud-t-abc"),
    ("patch", "persistentvolumeclaims", "-n", "gpucloud-t-abc"),
    ("create", "resourcequotas", "-n", "gpucloud-t-abc"),
    ("patch", "limitranges", "-n", "gpucloud-t-abc"),
    ("create", "serviceaccounts", "-n", "gpucloud-t-abc"),
    ("patch", "networkpolicies.networking.k8s.io", "-n", "gpucloud-t-abc"),
    ("create", "configmaps", "-n", "gpucloud-t-abc"),
    ("patch", "configmaps", "-n", "gpucloud-t-abc"),
    ("create", "workloads.scheduling.k8s.io", "-n", "gpucloud-t-abc"),
    ("watch", "events", "-A"),
    ("get", "nodes"),
    ("list", "nodes"),
    ("watch", "nodes"),
]
OPERATOR_MAY_NOT = [
    ("delete", "nodes"),
    ("patch", "nodes"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "rolebindings.rbac.authorization.k8s.io", "-n", "gpucloud-t-abc"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io/cluster-admin"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    # It never reads a Secret: a cluster-wide list would read every Secret of the cluster.
    ("list", "secrets", "-A"),
    ("list", "secrets", "-n", "gpucloud-t-abc"),
    ("get", "secrets", "-n", "gpucloud-t-abc"),
    ("watch", "secrets", "-A"),
    ("impersonate", "serviceaccounts", "-A"),
    ("update", "secrets", "-n", "gpucloud-t-abc"),
    ("create", "pods", "--subresource=exec", "-n", "gpucloud-t-abc"),
    ("get", "pods", "--subresource=log", "-n", "gpucloud-t-abc"),
    ("create", "serviceaccounts", "--subresource=token", "-n", "gpucloud-t-abc"),
    ("update", "leases.coordination.k8s.io", "-n", "gpucloud-t-abc"),
    ("get", "configmaps", "-n", "gpucloud-t-abc"),
    ("create", "persistentvolumes"),
    ("create", "deployments.apps", "-n", "gpucloud-t-abc"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
]


@pytest.mark.parametrize("check", OPERATOR_MAY, ids=" ".join)
def test_operator_may(installed: Installed, check: tuple[str, ...]) -> None:
    assert installed.can("operator", *check)


def test_operator_may_bind_the_logs_role_and_no_other(installed: Installed) -> None:
    logs_role = installed.cluster_name("pod-logs")
    assert installed.can("operator", "bind", f"clusterroles.rbac.authorization.k8s.io/{logs_role}")
    assert not installed.can("operator", "get", "pods", "--subresource=log", "-A")  # binds it, not holds it


@pytest.mark.parametrize("check", OPERATOR_MAY_NOT, ids=" ".join)
def test_operator_may_not(installed: Installed, check: tuple[str, ...]) -> None:
    assert not installed.can("operator", *check)


# What every authenticated identity may do anyway (system:basic-user, system:discovery ...).
SELF_REVIEWS = {
    "selfsubjectreviews.authentication.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io",
    "selfsubjectrulesreviews.authorization.k8s.io",
}


@pytest.mark.parametrize("comp", ["web", "worker", "beat", "logs"])
def test_other_components_may_do_nothing(installed: Installed, comp: str) -> None:
    for namespace in (installed.namespace, "gpucloud-t-abc"):
        listing = installed.kubectl(
            "auth", "can-i", "--list", "-n", namespace, f"--as={installed.account(comp)}"
        )
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].split()[:2] == ["Resources", "Non-Resource"]
        resources = {line.split()[0] for line in lines[1:] if line and not line.startswith(" ")}
        assert resources <= SELF_REVIEWS, (comp, namespace, resources - SELF_REVIEWS)
    assert not installed.can(comp, "get", "pods", "-n", installed.namespace)
    assert not installed.can(comp, "get", "secrets", "-n", installed.namespace)


# ---- the admission policy: real requests as the operator, refused or let through by the apiserver ------

MANAGED = {"app.kubernetes.io/managed-by": "gpucloud"}


@pytest.fixture
def tenant_namespace(installed: Installed, make_namespace: Callable[..., str]) -> str:
    """A namespace as the operator makes them: gpucloud's label and the restricted Pod Security level."""
    return make_namespace(labels={**MANAGED, **RESTRICTED, "pod-security.kubernetes.io/audit": "restricted"})


def _refused(result: subprocess.CompletedProcess[str], reason: str) -> bool:
    """Refused by the admission policy (not by RBAC), for `reason`."""
    return result.returncode != 0 and "denied request" in result.stderr and reason in result.stderr


def _wait_for_the_policy(installed: Installed) -> None:
    """A policy is in force a moment after it is created: probe with a server dry run (admission runs,
    nothing is stored) until the operator's write outside gpucloud's namespaces is refused."""
    deadline = time.monotonic() + 30
    while True:
        probe = installed.as_(
            "operator", "-n", installed.namespace, "create", "secret", "generic", "probe", "--dry-run=server"
        )
        if _refused(probe, "managed-by=gpucloud"):
            return
        assert time.monotonic() < deadline, probe.stdout + probe.stderr
        time.sleep(0.5)


def test_the_policy_type_checks(installed: Installed) -> None:
    _wait_for_the_policy(installed)
    policy = json.loads(
        installed.kubectl(
            "get", "validatingadmissionpolicy", installed.cluster_name("operator"), "-o", "json"
        ).stdout
    )
    warnings = (policy.get("status") or {}).get("typeChecking", {}).get("expressionWarnings") or []
    assert warnings == [], warnings


def _labels(
    installed: Installed, namespace: str, labels: dict[str, str | None]
) -> subprocess.CompletedProcess[str]:
    """Set (or, with None, remove) labels of a namespace as the operator: a merge patch, as the operator's own
    apply is a patch. With the Python client impersonating the operator's ServiceAccount (kubectl label and
    kubectl patch would first read the namespace, which the operator may not); the answer in the shape of
    a kubectl run."""
    api = config.new_client_from_config(config_file=str(installed.kubeconfig))
    api.set_default_header("Impersonate-User", installed.account("operator"))
    try:
        client.CoreV1Api(api).patch_namespace(namespace, {"metadata": {"labels": labels}})
        return subprocess.CompletedProcess([], 0, "", "")
    except ApiException as exc:
        return subprocess.CompletedProcess([], 1, "", f"{exc.status} {exc.body}")
    finally:
        api.close()


def test_the_operator_cannot_remove_or_weaken_pod_security(
    installed: Installed, tenant_namespace: str
) -> None:
    _wait_for_the_policy(installed)
    # RBAC alone would let it: it may patch namespaces.
    assert installed.can("operator", "patch", "namespaces")

    # The enforce label: rule 3 (it must stay restricted) answers first; rule 4 covers every other label.
    removed = _labels(installed, tenant_namespace, {"pod-security.kubernetes.io/enforce": None})
    assert _refused(removed, "pod-security.kubernetes.io/enforce=restricted"), removed.stderr
    weakened = _labels(installed, tenant_namespace, {"pod-security.kubernetes.io/enforce": "privileged"})
    assert _refused(weakened, "pod-security.kubernetes.io/enforce=restricted"), weakened.stderr
    audit_removed = _labels(installed, tenant_namespace, {"pod-security.kubernetes.io/audit": None})
    assert _refused(audit_removed, "Pod Security label"), audit_removed.stderr
    unmanaged = _labels(installed, tenant_namespace, {"app.kubernetes.io/managed-by": None})
    assert _refused(unmanaged, "keeps app.kubernetes.io/managed-by=gpucloud"), unmanaged.stderr

    labels = json.loads(installed.kubectl("get", "namespace", tenant_namespace, "-o", "json").stdout)[
        "metadata"
    ]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert labels["pod-security.kubernetes.io/audit"] == "restricted"
    assert labels["app.kubernetes.io/managed-by"] == "gpucloud"
    # Its own changes still go through: the refusals are the policy's, not a missing permission.
    allowed = _labels(installed, tenant_namespace, {"gpucloud.io/touched": "yes"})
    assert allowed.returncode == 0, allowed.stderr


def test_the_operator_writes_only_in_gpucloud_namespaces(installed: Installed, tenant_namespace: str) -> None:
    _wait_for_the_policy(installed)
    secret = ["create", "secret", "generic", "planted", "--from-literal=a=b"]
    outside = installed.as_("operator", "-n", installed.namespace, *secret)
    assert _refused(outside, "writes only in namespaces labelled"), outside.stderr
    inside = installed.as_("operator", "-n", tenant_namespace, *secret)
    assert inside.returncode == 0, inside.stderr

    # Nor can it make a foreign namespace its own, or delete one.
    for target in (installed.namespace, "kube-system"):
        takeover = _labels(installed, target, {"app.kubernetes.io/managed-by": "gpucloud"})
        assert _refused(takeover, "changes or deletes only namespaces labelled"), takeover.stderr
    deleted = installed.as_("operator", "delete", "namespace", installed.namespace, "--dry-run=server")
    assert _refused(deleted, "changes or deletes only namespaces labelled"), deleted.stderr
    bare = installed.as_("operator", "create", "namespace", "gpucloud-bare", "--dry-run=server")
    assert _refused(bare, "keeps app.kubernetes.io/managed-by=gpucloud"), bare.stderr


def _role_binding(namespace: str, role: str, subject: dict[str, str], name: str = "gpucloud-pod-logs") -> str:
    return json.dumps(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": namespace, "labels": MANAGED},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [subject],
        }
    )


def test_the_logs_identity_reads_pod_logs_in_tenant_namespaces_only(
    installed: Installed, tenant_namespace: str
) -> None:
    """The binding the operator makes in each tenant namespace (manifests.make_logs_role_binding), made here
    as the operator: the logs ServiceAccount then reads pod logs there and nowhere else, and never Secrets.
    The operator cannot bind anything else, nor the logs role to anyone else."""
    _wait_for_the_policy(installed)
    logs_role = installed.cluster_name("pod-logs")
    logs_sa = {
        "kind": "ServiceAccount",
        "name": f"{installed.release}-gpucloud-logs",
        "namespace": installed.namespace,
    }
    apply = ["apply", "--server-side", "--field-manager=gpucloud", "-f", "-"]

    bound = installed.as_("operator", *apply, input_text=_role_binding(tenant_namespace, logs_role, logs_sa))
    assert bound.returncode == 0, bound.stderr
    assert installed.can("logs", "get", "pods", "--subresource=log", "-n", tenant_namespace)
    assert not installed.can("logs", "get", "pods", "--subresource=log", "-n", installed.namespace)
    assert not installed.can("logs", "get", "pods", "--subresource=log", "-n", "kube-system")
    assert not installed.can("logs", "get", "pods", "-n", tenant_namespace)
    assert not installed.can("logs", "list", "secrets", "-n", tenant_namespace)
    assert not installed.can("logs", "list", "secrets", "-A")

    admin = installed.as_(
        "operator",
        *apply,
        input_text=_role_binding(tenant_namespace, "cluster-admin", logs_sa, name="escalate"),
    )
    assert admin.returncode != 0 and "forbidden" in admin.stderr.lower(), admin.stderr  # RBAC: no escalation
    tenant_sa = {"kind": "ServiceAccount", "name": "tenant", "namespace": tenant_namespace}
    elsewhere = installed.as_(
        "operator",
        *apply,
        input_text=_role_binding(tenant_namespace, logs_role, tenant_sa, name="to-the-tenant"),
    )
    assert _refused(elsewhere, "only to the logs identity"), elsewhere.stderr
