"""Proof tests for the Kubernetes sandbox: real apiserver, scheduler, controllers and kwok GPU nodes.

They talk to the sandbox's clusters with the official ``kubernetes`` client, through the fixtures of
tests/fixtures/kube.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.fixtures.kube import Sandbox, wait_until

H100 = "NVIDIA-H100-80GB-HBM3"
GPU_TOLERATION = client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")


def gpu_pod(
    name: str, gpus: int | str = 1, resource: str = "nvidia.com/gpu", product: str | None = H100
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[
                client.V1Container(
                    name="main",
                    image="nvidia/cuda:12.4.1-base-ubuntu22.04",
                    command=["nvidia-smi"],
                    resources=client.V1ResourceRequirements(limits={resource: str(gpus)}),
                )
            ],
            tolerations=[GPU_TOLERATION],
            node_selector={"nvidia.com/gpu.product": product} if product else None,
            restart_policy="Never",
        ),
    )


def cpu_pod(name: str, **spec: object) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="busybox:1.36", command=["sleep", "3600"])],
            **spec,
        ),
    )


def wait_running(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 60) -> client.V1Pod:
    return wait_until(
        lambda: (p := core.read_namespaced_pod(name, namespace)).status.phase == "Running" and p,
        timeout=timeout,
        what=f"pod {namespace}/{name} Running",
    )


def test_gpu_pod_with_toleration_and_h100_selector_runs_on_h100_node(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(kube_namespace, gpu_pod("train"))

    pod = wait_running(core, kube_namespace, "train")

    node = core.read_node(pod.spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == H100
    assert int(node.status.allocatable["nvidia.com/gpu"]) >= 1
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready.get("Ready") == "True"


def test_pod_asking_for_nine_gpus_stays_pending_unschedulable(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(kube_namespace, gpu_pod("too-big", gpus=9, product=None))

    def unschedulable() -> client.V1PodCondition | None:
        pod = core.read_namespaced_pod("too-big", kube_namespace)
        for cond in pod.status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return cond
        return None

    cond = wait_until(unschedulable, timeout=60, what="PodScheduled=False/Unschedulable")
    assert "nvidia.com/gpu" in cond.message
    pod = core.read_namespaced_pod("too-big", kube_namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None


def test_resource_quota_on_gpus_refuses_a_pod_over_it(
    kube_client: client.ApiClient, kube_namespace: str
) -> None:
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_resource_quota(
        kube_namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="gpus"),
            spec=client.V1ResourceQuotaSpec(hard={"requests.nvidia.com/gpu": "2"}),
        ),
    )
    # The quota controller fills status.hard; until then admission cannot account for the quota.
    wait_until(
        lambda: (core.read_namespaced_resource_quota("gpus", kube_namespace).status.hard or {}).get(
            "requests.nvidia.com/gpu"
        ),
        what="ResourceQuota status",
    )

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(kube_namespace, gpu_pod("over-quota", gpus=4))
    assert refused.value.status == 403
    assert "exceeded quota" in refused.value.body

    core.create_namespaced_pod(kube_namespace, gpu_pod("within-quota", gpus=2))
    wait_until(
        lambda: (
            core.read_namespaced_resource_quota("gpus", kube_namespace).status.used.get(
                "requests.nvidia.com/gpu"
            )
            == "2"
        ),
        what="ResourceQuota usage",
    )


def test_restricted_pod_security_namespace_refuses_privileged_pod(
    make_namespace: Callable[..., str], kube_client: client.ApiClient
) -> None:
    namespace = make_namespace(labels={"pod-security.kubernetes.io/enforce": "restricted"})
    core = client.CoreV1Api(kube_client)
    privileged = cpu_pod("privileged")
    privileged.spec.containers[0].security_context = client.V1SecurityContext(privileged=True)

    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body

    compliant = cpu_pod(
        "compliant",
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=1000,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    compliant.spec.containers[0].security_context = client.V1SecurityContext(
        allow_privilege_escalation=False, capabilities=client.V1Capabilities(drop=["ALL"])
    )
    core.create_namespaced_pod(namespace, compliant)
    wait_running(core, namespace, "compliant")


def test_deleting_a_namespace_completes_and_removes_its_pods(
    make_namespace: Callable[..., str], kube_client: client.ApiClient
) -> None:
    namespace = make_namespace(prefix="delete-me")
    core = client.CoreV1Api(kube_client)
    core.create_namespaced_pod(namespace, cpu_pod("worker"))
    core.create_namespaced_pod(namespace, gpu_pod("gpu-worker"))
    wait_running(core, namespace, "worker")
    wait_running(core, namespace, "gpu-worker")

    core.delete_namespace(namespace)

    def gone() -> bool:
        try:
            core.read_namespace(namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_until(gone, timeout=120, what=f"namespace {namespace} deleted")
    assert core.list_namespaced_pod(namespace).items == []


def test_network_policy_is_accepted(kube_client: client.ApiClient, kube_namespace: str) -> None:
    net = client.NetworkingV1Api(kube_client)
    policy = client.V1NetworkPolicy(
        metadata=client.V1ObjectMeta(name="isolate-tenant"),
        spec=client.V1NetworkPolicySpec(
            pod_selector=client.V1LabelSelector(),
            policy_types=["Ingress", "Egress"],
            ingress=[
                client.V1NetworkPolicyIngressRule(
                    _from=[client.V1NetworkPolicyPeer(pod_selector=client.V1LabelSelector())]
                )
            ],
            egress=[
                client.V1NetworkPolicyEgressRule(
                    to=[client.V1NetworkPolicyPeer(pod_selector=client.V1LabelSelector())]
                )
            ],
        ),
    )
    net.create_namespaced_network_policy(kube_namespace, policy)

    stored = net.read_namespaced_network_policy("isolate-tenant", kube_namespace)
    assert stored.spec.policy_types == ["Ingress", "Egress"]
    assert [p.metadata.name for p in net.list_namespaced_network_policy(kube_namespace).items] == [
        "isolate-tenant"
    ]


def test_every_region_answers_with_its_own_fleet(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient]
) -> None:
    assert len(kube_clients) >= 2
    for region, api in kube_clients.items():
        version = client.VersionApi(api).get_code()
        assert version.git_version.startswith("v1.35."), version.git_version
        nodes = client.CoreV1Api(api).list_node().items
        assert nodes, f"region {region} has no nodes"
        assert {n.metadata.labels["topology.kubernetes.io/region"] for n in nodes} == {region}
        gpu_nodes = [n for n in nodes if n.metadata.labels.get("nvidia.com/gpu.present") == "true"]
        assert gpu_nodes
        for n in gpu_nodes:
            assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in n.spec.taints or [])
            ready = {c.type: c.status for c in n.status.conditions or []}
            assert ready.get("Ready") == "True", n.metadata.name
        h100 = [
            n
            for n in gpu_nodes
            if n.metadata.labels["nvidia.com/gpu.product"] == H100 and "mig" not in n.metadata.name
        ]
        assert h100 and all(n.status.allocatable["nvidia.com/gpu"] == "8" for n in h100)


def test_mig_node_exposes_its_slices_as_extended_resources(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], make_namespace: Callable[..., str]
) -> None:
    region = sandbox.default_region
    core = client.CoreV1Api(kube_clients[region])
    nodes = core.list_node(label_selector="nvidia.com/mig.strategy=mixed").items
    assert len(nodes) == 1
    node = nodes[0]
    assert node.status.allocatable["nvidia.com/mig-1g.10gb"] == "7"
    assert node.status.capacity["nvidia.com/mig-1g.10gb"] == "7"
    assert node.metadata.labels["nvidia.com/mig-1g.10gb.count"] == "7"

    namespace = make_namespace(region=region)
    core.create_namespaced_pod(namespace, gpu_pod("slice", resource="nvidia.com/mig-1g.10gb", product=None))
    pod = wait_running(core, namespace, "slice")
    assert pod.spec.node_name == node.metadata.name
