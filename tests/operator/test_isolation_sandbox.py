"""Isolation of a tenant namespace, checked against the Kubernetes sandbox's real apiserver.

The namespace is made by the reconciler (`tenant_namespaces.ensure`, on the first launch through the API);
the tests then try, as cluster admin, what a bug or a hostile spec would try, and read back what the
namespace holds. Pod Security Admission and ResourceQuota are the apiserver's own admission plugins.
NetworkPolicies are stored but not enforced in the sandbox (no network plugin), so their selection is
checked by evaluating their selectors with the apiserver against the namespace's pods and namespaces.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from apps.accounts.models import SshKey
from apps.operator import names
from apps.quotas.services import quota_for
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is

pytestmark = pytest.mark.django_db

TENANT_GPU_LIMIT = 3


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, tenant_owner: Actor
) -> Iterator[SandboxTenant]:
    connect(catalog.us_east, sandbox)
    quota = quota_for(tenant_owner.tenant)
    quota.max_gpus = TENANT_GPU_LIMIT
    quota.save()
    sandbox_tenant = SandboxTenant(actor=tenant_owner, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


@pytest.fixture
def running(tenant: SandboxTenant, ssh_key: SshKey) -> dict[str, Any]:
    """A running H100 instance: its launch made the tenant namespace."""
    launched = tenant.launch(
        instance_type="gpu-h100x1", region="us-east-1", image="pytorch", ssh_key_ids=[str(ssh_key.pk)]
    )
    drive(launched["id"], state_is("running"), what="running")
    return launched


def restricted_pod(name: str, **spec: Any) -> dict[str, Any]:
    """A pod that meets Pod Security `restricted`; each test breaks exactly one rule of it."""
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": False,
            "nodeSelector": {"gpucloud.io/pool": "cpu"},
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "c",
                    "image": "busybox:1",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "64Mi"},
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                    },
                }
            ],
        },
    }
    body["spec"].update(spec)
    return body


def _refusal(tenant: SandboxTenant, body: dict[str, Any]) -> str:
    with pytest.raises(ApiException) as refused:
        tenant.core().create_namespaced_pod(tenant.namespace, body)
    assert refused.value.status == 403, refused.value.body
    return str(json.loads(refused.value.body)["message"])


def test_pod_security_refuses_privileged_hostpath_and_hostnetwork_pods(
    tenant: SandboxTenant, running: dict[str, Any]
) -> None:
    namespace = tenant.core().read_namespace(tenant.namespace)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"

    privileged = restricted_pod("privileged")
    container = privileged["spec"]["containers"][0]
    container["securityContext"] = {"privileged": True, "capabilities": {"drop": ["ALL"]}}
    message = _refusal(tenant, privileged)
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'privileged (container "c" must not set securityContext.privileged=true)' in message

    host_path = restricted_pod("host-path", volumes=[{"name": "host", "hostPath": {"path": "/"}}])
    host_path["spec"]["containers"][0]["volumeMounts"] = [{"name": "host", "mountPath": "/host"}]
    message = _refusal(tenant, host_path)
    assert 'violates PodSecurity "restricted:latest"' in message
    assert 'volume "host" uses restricted volume type "hostPath"' in message

    message = _refusal(tenant, restricted_pod("host-network", hostNetwork=True))
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "host namespaces (hostNetwork=true)" in message

    # The same pod without the broken rule is admitted: the refusals above are Pod Security's.
    created = tenant.core().create_namespaced_pod(tenant.namespace, restricted_pod("compliant"))
    assert created.metadata.name == "compliant"


def test_resource_quota_mirrors_the_tenant_gpu_limit_and_refuses_a_pod_over_it(
    tenant: SandboxTenant, running: dict[str, Any]
) -> None:
    quota = tenant.core().read_namespaced_resource_quota("tenant-quota", tenant.namespace)
    assert quota.spec.hard["requests.nvidia.com/gpu"] == str(TENANT_GPU_LIMIT)
    assert quota.metadata.labels[names.MANAGED_BY_LABEL] == "gpucloud"

    greedy = restricted_pod("greedy")
    gpus = {"nvidia.com/gpu": str(TENANT_GPU_LIMIT + 1)}
    greedy["spec"]["containers"][0]["resources"]["requests"].update(gpus)
    greedy["spec"]["containers"][0]["resources"]["limits"].update(gpus)
    message = _refusal(tenant, greedy)
    assert "exceeded quota: tenant-quota" in message
    assert "requests.nvidia.com/gpu" in message


def _selector_string(selector: client.V1LabelSelector | None) -> str:
    """A LabelSelector as the label-selector string the apiserver evaluates (empty: everything)."""
    if selector is None:
        return ""
    parts = [f"{key}={value}" for key, value in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        operator, key, values = expression.operator, expression.key, ",".join(expression.values or [])
        parts.append(
            {
                "Exists": key,
                "DoesNotExist": f"!{key}",
                "In": f"{key} in ({values})",
                "NotIn": f"{key} notin ({values})",
            }[operator]
        )
    return ",".join(parts)


def test_network_policies_exist_and_select_what_they_should(
    tenant: SandboxTenant, running: dict[str, Any]
) -> None:
    core, namespace = tenant.core(), tenant.namespace
    core.create_namespaced_pod(namespace, restricted_pod("not-an-instance"))
    instance_pod = names.instance_object_name(running["id"])
    policies = {p.metadata.name: p for p in tenant.net().list_namespaced_network_policy(namespace).items}
    assert set(policies) == {"default-deny", "allow-dns", "allow-internet-egress", "allow-ssh-ingress"}

    def selected(policy: str) -> set[str]:
        selector = _selector_string(policies[policy].spec.pod_selector)
        return {p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector=selector).items}

    # Default deny: every pod, both directions, nothing allowed.
    deny = policies["default-deny"].spec
    assert selected("default-deny") == {instance_pod, "not-an-instance"}
    assert sorted(deny.policy_types) == ["Egress", "Ingress"]
    assert not deny.ingress and not deny.egress

    # SSH ingress: only instance pods, only TCP to the SSH port.
    ssh = policies["allow-ssh-ingress"].spec
    assert selected("allow-ssh-ingress") == {instance_pod}
    assert ssh.policy_types == ["Ingress"]
    assert [(p.protocol, p.port) for rule in ssh.ingress for p in rule.ports] == [("TCP", 2222)]

    # DNS: every pod may reach kube-dns in kube-system (and only that namespace), on port 53.
    dns = policies["allow-dns"].spec
    assert selected("allow-dns") == {instance_pod, "not-an-instance"}
    (peer,) = dns.egress[0].to
    dns_namespaces = core.list_namespace(label_selector=_selector_string(peer.namespace_selector)).items
    assert [n.metadata.name for n in dns_namespaces] == ["kube-system"]
    assert sorted((p.protocol, p.port) for p in dns.egress[0].ports) == [("TCP", 53), ("UDP", 53)]

    # Internet egress: IPv4 anywhere except link-local (cloud metadata) and the cluster's own ranges, so
    # this namespace's pod and Service addresses (and hence other tenants') are not reachable.
    internet = policies["allow-internet-egress"].spec
    (block,) = [peer.ip_block for rule in internet.egress for peer in rule.to]
    assert block.cidr == "0.0.0.0/0"
    excepted = [ipaddress.ip_network(cidr) for cidr in block._except]
    assert ipaddress.ip_network("169.254.0.0/16") in excepted
    # ... on every TCP port but 25 (SMTP) and every UDP port: the apiserver keeps the endPort ranges.
    (rule,) = internet.egress
    opened = {(p.protocol, p.port, p.end_port) for p in rule.ports}
    assert opened == {("TCP", 1, 24), ("TCP", 26, 65535), ("UDP", 1, 65535)}
    pod_ip = core.read_namespaced_pod(instance_pod, namespace).status.pod_ip
    service_ip = core.read_namespaced_service(instance_pod, namespace).spec.cluster_ip
    for address in (pod_ip, service_ip):
        assert address and any(ipaddress.ip_address(address) in net for net in excepted), address


def test_tenant_namespace_holds_no_credentials(
    tenant: SandboxTenant, running: dict[str, Any], ssh_key: SshKey
) -> None:
    core, namespace = tenant.core(), tenant.namespace
    ssh_secret = names.ssh_secret_name(running["id"])

    secrets = core.list_namespaced_secret(namespace).items
    assert [(s.metadata.name, s.type) for s in secrets] == [(ssh_secret, "Opaque")]
    # The tenant's public keys, and the instance's own SSH host key (apps/operator/host_keys.py: derived for
    # this instance alone; it lets its holder pose as this instance and nothing else). No credential of the
    # platform or the cluster.
    assert set(secrets[0].data) == {"authorized_keys", "ssh_host_ed25519_key"}

    account = core.read_namespaced_service_account("tenant", namespace)
    assert account.automount_service_account_token is False
    assert not account.secrets
    # One binding only: the console's logs identity may read pod logs here; nothing in the namespace is bound.
    bindings = client.RbacAuthorizationV1Api(tenant.kube_clients["us-east-1"])
    [binding] = bindings.list_namespaced_role_binding(namespace).items
    assert (binding.role_ref.kind, binding.role_ref.name) == ("ClusterRole", "sandbox-gpucloud-pod-logs")
    assert [(s.kind, s.name, s.namespace) for s in binding.subjects] == [("User", "gpucloud-logs", None)]
    role = bindings.read_cluster_role("sandbox-gpucloud-pod-logs")
    assert [(r.resources, r.verbs) for r in role.rules] == [(["pods/log"], ["get"])]

    pod = core.read_namespaced_pod(names.instance_object_name(running["id"]), namespace)
    assert pod.spec.service_account_name == "tenant"
    assert pod.spec.automount_service_account_token is False
    for volume in pod.spec.volumes or []:
        assert not volume.name.startswith("kube-api-access-")
        sources = volume.projected.sources if volume.projected else []
        assert all(source.service_account_token is None for source in sources)
    mounts = [m.mount_path for c in pod.spec.containers for m in c.volume_mounts or []]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" not in mounts
