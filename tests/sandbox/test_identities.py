"""The sandbox's restricted identities (docs/sandbox.md, "Identities"): the operator's user
`gpucloud-operator` and the console's logs user `gpucloud-logs`, with the chart's own RBAC and admission
policy. Real requests with their own client certificates against the real apiserver, not impersonation:
what they may not do is refused by RBAC or by the ValidatingAdmissionPolicy.

The operator tests (tests/operator/*_sandbox.py) connect regions with these identities, so what they
prove about the operator holds under this boundary.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from apps.operator import manifests, names
from apps.operator.cluster import Cluster
from apps.operator.specs import LogsReader, TenantNamespaceSpec
from tests.fixtures.kube import Sandbox, delete_namespace, wait_until
from tests.helm.support import one, render

PSA = {f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "audit", "warn")}
LOGS_ROLE = "sandbox-gpucloud-pod-logs"


@pytest.fixture(scope="module")
def operator_api(sandbox: Sandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(sandbox.operator_kubeconfig_for()))
    yield api
    api.close()


@pytest.fixture(scope="module")
def logs_api(sandbox: Sandbox) -> Iterator[client.ApiClient]:
    api = config.new_client_from_config(config_file=str(sandbox.logs_kubeconfig_for()))
    yield api
    api.close()


@pytest.fixture
def tenant_namespace(operator_api: client.ApiClient, kube_client: client.ApiClient) -> Iterator[str]:
    """A tenant namespace made by the operator's identity itself, with the objects the operator applies
    (manifests.make_namespace_objects, the logs RoleBinding included)."""
    tenant_id = str(uuid.uuid4())
    spec = TenantNamespaceSpec(
        tenant_id=tenant_id,
        tenant_slug="identities",
        namespace=names.namespace_name(tenant_id, "identities"),
        gpus=(("nvidia.com/gpu", 1),),
        cpu=4,
        memory_gib=8,
        max_pods=2,
        max_pvcs=1,
        storage_gib=1,
        logs_reader=LogsReader(cluster_role=LOGS_ROLE, subjects=(("User", "gpucloud-logs", ""),)),
    )
    cluster = Cluster(operator_api)
    try:
        for manifest in manifests.make_namespace_objects(spec):
            cluster.apply(manifest)
        yield spec.namespace
    finally:
        delete_namespace(kube_client, spec.namespace)


def _status(call: Callable[[], object]) -> int:
    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_the_sandbox_operator_role_is_the_charts(kube_client: client.ApiClient) -> None:
    """sandbox.sh renders the chart: the same rules, nothing added for the sandbox's convenience."""
    rbac = client.RbacAuthorizationV1Api(kube_client)
    applied = rbac.read_cluster_role("sandbox-gpucloud-operator").to_dict()["rules"]
    chart = one(render(), "ClusterRole", "operator")["rules"]

    def normal(rules: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return sorted(
            (
                tuple(r.get("api_groups") or r.get("apiGroups") or []),  # type: ignore[arg-type]
                tuple(r["resources"]),  # type: ignore[arg-type]
                tuple(r["verbs"]),  # type: ignore[arg-type]
                bool(r.get("resource_names") or r.get("resourceNames")),
            )
            for r in rules
        )

    assert normal(applied) == normal(chart)
    binding = rbac.read_cluster_role_binding("sandbox-gpucloud-operator")
    assert ("User", "gpucloud-operator") in {(s.kind, s.name) for s in binding.subjects}


def test_the_operator_reads_no_secret(operator_api: client.ApiClient, tenant_namespace: str) -> None:
    core = client.CoreV1Api(operator_api)
    assert _status(lambda: core.list_secret_for_all_namespaces(_request_timeout=10)) == 403
    assert _status(lambda: core.list_namespaced_secret(tenant_namespace, _request_timeout=10)) == 403
    assert _status(lambda: core.list_namespaced_secret("kube-system", _request_timeout=10)) == 403
    assert (
        _status(lambda: core.read_namespaced_secret("anything", tenant_namespace, _request_timeout=10)) == 403
    )
    # It still lists what it needs.
    assert _status(lambda: core.list_pod_for_all_namespaces(limit=1, _request_timeout=10)) == 200


def test_the_operator_cannot_remove_pod_security_from_a_tenant_namespace(
    operator_api: client.ApiClient, kube_client: client.ApiClient, tenant_namespace: str
) -> None:
    core = client.CoreV1Api(operator_api)
    with pytest.raises(ApiException) as refused:
        core.patch_namespace(
            tenant_namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": None}}}
        )
    assert refused.value.status == 403
    assert "ValidatingAdmissionPolicy" in str(refused.value.body)
    with pytest.raises(ApiException) as weakened:
        core.patch_namespace(
            tenant_namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}}
        )
    assert weakened.value.status == 403
    labels = client.CoreV1Api(kube_client).read_namespace(tenant_namespace).metadata.labels  # the admin reads
    assert {k: labels[k] for k in PSA} == PSA
    # Its other changes still go through.
    core.patch_namespace(tenant_namespace, {"metadata": {"labels": {"gpucloud.io/touched": "yes"}}})


def test_the_operator_writes_only_in_gpucloud_namespaces(
    operator_api: client.ApiClient, make_namespace: Callable[..., str]
) -> None:
    core = client.CoreV1Api(operator_api)
    foreign = make_namespace(labels=PSA)
    secret = {"metadata": {"name": "planted"}, "stringData": {"a": "b"}}
    for namespace in (foreign, "default", "kube-system"):
        assert _status(lambda ns=namespace: core.create_namespaced_secret(ns, secret)) == 403, namespace
    takeover = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "gpucloud"}}}
    assert _status(lambda: core.patch_namespace(foreign, takeover)) == 403
    assert _status(lambda: core.delete_namespace(foreign)) == 403


def test_the_logs_identity_reads_pod_logs_in_tenant_namespaces_only(
    logs_api: client.ApiClient, tenant_namespace: str, make_namespace: Callable[..., str]
) -> None:
    core = client.CoreV1Api(logs_api)
    foreign = make_namespace()

    def reads_logs(namespace: str) -> bool:
        review = client.AuthorizationV1Api(logs_api).create_self_subject_access_review(
            {
                "spec": {
                    "resourceAttributes": {
                        "namespace": namespace,
                        "verb": "get",
                        "resource": "pods",
                        "subresource": "log",
                    }
                }
            }
        )
        return bool(review.status.allowed)

    # The RoleBinding the operator applied with the namespace lets it in there (RBAC caches settle fast).
    wait_until(lambda: reads_logs(tenant_namespace), timeout=10, what="the logs binding to take effect")
    assert not reads_logs(foreign) and not reads_logs("kube-system")
    # A real request: past authorization in the tenant namespace (the pod does not exist: 404), refused
    # elsewhere.
    assert (
        _status(lambda: core.read_namespaced_pod_log("i-none", tenant_namespace, _request_timeout=10)) == 404
    )
    assert _status(lambda: core.read_namespaced_pod_log("i-none", foreign, _request_timeout=10)) == 403
    assert _status(lambda: core.list_namespaced_pod(tenant_namespace, _request_timeout=10)) == 403
    assert _status(lambda: core.list_namespaced_secret(tenant_namespace, _request_timeout=10)) == 403
