"""An instance's whole life through the REST API, against the Kubernetes sandbox (real apiserver, scheduler
and controllers; kwok plays the GPU nodes' kubelets). Nothing is mocked.

Launches go through the API with a tenant token; the on-commit task reconciles once (eager Celery), then the
tests call the reconciler in a bounded loop to advance the observations, as the operator's watch would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from apps.accounts.models import SshKey
from apps.operator import names
from tests.conftest import Actor
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for

pytestmark = pytest.mark.django_db

H100 = "NVIDIA-H100-80GB-HBM3"
GPU_PRODUCT = "nvidia.com/gpu.product"


@pytest.fixture
def tenant(
    sandbox: Sandbox, kube_clients: dict[str, client.ApiClient], catalog: Catalog, tenant_owner: Actor
) -> Iterator[SandboxTenant]:
    connect(catalog.us_east, sandbox)
    connect(catalog.eu_west, sandbox)
    sandbox_tenant = SandboxTenant(actor=tenant_owner, kube_clients=kube_clients)
    yield sandbox_tenant
    sandbox_tenant.cleanup()


def _node(tenant: SandboxTenant, name: str, region: str = "us-east-1") -> client.V1Node:
    return tenant.core(region).read_node(name)


def _launch_running(
    tenant: SandboxTenant, region: str = "us-east-1", **body: Any
) -> tuple[dict[str, Any], client.V1Pod]:
    launched = tenant.launch(region=region, image="pytorch", **body)
    pod = tenant.read_pod(launched["id"], region)
    assert pod is not None, "the on-commit reconcile created no pod"
    drive(launched["id"], state_is("running"), what="running")
    return launched, tenant.read_pod(launched["id"], region)


def test_launch_stop_start_restart_terminate(tenant: SandboxTenant, ssh_key: SshKey) -> None:
    launched, pod = _launch_running(tenant, instance_type="gpu-h100x1", ssh_key_ids=[str(ssh_key.pk)])
    instance_id = launched["id"]
    namespace = tenant.namespace
    core = tenant.core()

    # The pod lives in the tenant's namespace, on an H100 node, and runs.
    assert namespace.startswith(f"t-{tenant.actor.tenant.slug[:20]}")
    assert pod.metadata.namespace == namespace
    assert pod.metadata.labels[names.INSTANCE_LABEL] == instance_id
    assert pod.status.phase == "Running"
    node = _node(tenant, pod.spec.node_name)
    assert node.metadata.labels[GPU_PRODUCT] == H100
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"

    # Its Service and SSH Secret exist; the Secret holds the chosen public key.
    service = core.read_namespaced_service(names.instance_object_name(instance_id), namespace)
    node_port = service.spec.ports[0].node_port
    secret = core.read_namespaced_secret(names.ssh_secret_name(instance_id), namespace)
    assert secret.data and "authorized_keys" in secret.data

    # The detail shows it running with a ready-to-paste ssh command.
    detail = tenant.detail(instance_id)
    assert detail["state"] == "running"
    assert detail["running_since"] is not None
    connection = detail["connection"]
    assert connection["port"] == node_port
    assert connection["host"]
    assert connection["ssh_command"] == f"ssh -p {node_port} {connection['user']}@{connection['host']}"

    # Stop: the pod goes, the instance is stopped and keeps its data.
    first_uid = pod.metadata.uid
    assert tenant.act(instance_id, "stop")["desired_state"] == "stopped"
    stopped = drive(instance_id, state_is("stopped"), what="stopped")
    assert tenant.read_pod(instance_id) is None
    assert stopped.name == launched["name"]
    assert stopped.image_reference == launched["image"]
    assert list(stopped.ssh_keys.values_list("pk", flat=True)) == [ssh_key.pk]
    assert tenant.detail(instance_id)["state"] == "stopped"

    # Start: a new pod is scheduled on any H100 node that fits, and runs.
    tenant.act(instance_id, "start")
    drive(instance_id, state_is("running"), what="running again")
    restarted_pod = tenant.read_pod(instance_id)
    assert restarted_pod.metadata.uid != first_uid
    assert _node(tenant, restarted_pod.spec.node_name).metadata.labels[GPU_PRODUCT] == H100
    assert tenant.detail(instance_id)["connection"]["ssh_command"]

    # Restart: the pod is replaced by a new one (new uid), which runs.
    before_restart = restarted_pod.metadata.uid
    tenant.act(instance_id, "restart")
    drive(
        instance_id,
        lambda i: (
            i.state == "running"
            and (p := tenant.read_pod(instance_id)) is not None
            and p.metadata.uid != before_restart
        ),
        what="running on a new pod after restart",
    )
    assert tenant.read_pod(instance_id).status.phase == "Running"

    # Terminate: pod, Service and Secret are gone.
    tenant.act(instance_id, "terminate")
    drive(instance_id, state_is("terminated"), what="terminated")
    assert tenant.read_pod(instance_id) is None
    object_name = names.instance_object_name(instance_id)
    assert core.list_namespaced_service(namespace, field_selector=f"metadata.name={object_name}").items == []
    secret_name = names.ssh_secret_name(instance_id)
    assert core.list_namespaced_secret(namespace, field_selector=f"metadata.name={secret_name}").items == []
    assert tenant.detail(instance_id)["state"] == "terminated"


def test_mig_slice_lands_on_the_mig_node(tenant: SandboxTenant) -> None:
    launched, pod = _launch_running(tenant, instance_type="gpu-h100-mig-1g10gb")
    node = _node(tenant, pod.spec.node_name)
    assert node.metadata.labels["gpucloud.io/pool"] == "h100-mig"
    assert node.metadata.labels["nvidia.com/mig.strategy"] == "mixed"
    limits = pod.spec.containers[0].resources.limits
    assert limits["nvidia.com/mig-1g.10gb"] == "1"
    assert "nvidia.com/gpu" not in limits
    assert tenant.detail(launched["id"])["connection"]["ssh_command"]


def test_cpu_instance_lands_on_a_cpu_node_without_toleration(tenant: SandboxTenant) -> None:
    _, pod = _launch_running(tenant, instance_type="cpu-4x")
    node = _node(tenant, pod.spec.node_name)
    assert node.metadata.labels["gpucloud.io/pool"] == "cpu"
    assert GPU_PRODUCT not in node.metadata.labels
    assert not node.spec.taints
    assert all(t.key != "nvidia.com/gpu" for t in pod.spec.tolerations or [])
    assert GPU_PRODUCT not in (pod.spec.node_selector or {})


def test_each_region_runs_its_own_instances(tenant: SandboxTenant) -> None:
    launched, pod = _launch_running(tenant, region="eu-west-1", instance_type="gpu-h100x1")
    node = _node(tenant, pod.spec.node_name, "eu-west-1")
    assert node.metadata.labels["topology.kubernetes.io/region"] == "eu-west-1"
    assert node.metadata.labels[GPU_PRODUCT] == H100
    # The us-east-1 cluster has no such pod (and no namespace for this tenant).
    us_namespaces = tenant.core("us-east-1").list_namespace(
        field_selector=f"metadata.name={tenant.namespace}"
    )
    assert us_namespaces.items == []
    tenant.act(launched["id"], "terminate")
    drive(launched["id"], state_is("terminated"), what="terminated")
    wait_for(lambda: tenant.read_pod(launched["id"], "eu-west-1") is None, what="the pod to go")
