"""A cluster's objects in its tenant's namespace, and what its nodes' pods carry beyond an instance's: pure
builders, as manifests.py (docs/clusters.md "What each node gets").

- A headless Service `c-<cluster hex>` selecting the cluster's pods: each pod's hostname is its node's name
  and its subdomain the Service, so rank R answers at `NAME-R.c-<hex>` (stable DNS per rank). It owns the
  cluster's other objects, so Kubernetes deletes them with it.
- The gang (gang.py): a Workload of the same name; every node pod names it, and the scheduler binds none of
  them before all fit.
- A ConfigMap of the same name, mounted at /etc/gpucloud/cluster: `hostfile` (one line per rank,
  `NAME-R.c-<hex> slots=GPUS`, for mpirun and DeepSpeed) from the start, and `node_ips` and `env` once every
  pod has its address (the operator writes them then: addresses exist only after the gang is bound).
- A NetworkPolicy of the same name: the cluster's pods reach one another on every port, in and out; the
  tenant's other policies are unchanged (policies only add).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from typing import Any

from apps.operator import gang, names

CLUSTER_LABEL = "gpucloud.io/cluster"
CLUSTER_VOLUME = "gpucloud-cluster"
CLUSTER_PATH = "/etc/gpucloud/cluster"
HOSTFILE = f"{CLUSTER_PATH}/hostfile"
# The cluster's private key, in each node's SSH Secret (mounted at manifests.SSH_MOUNT_PATH).
CLUSTER_KEY_FILE = "cluster_key"
SSH_MOUNT_PATH = "/etc/gpucloud/ssh"
MASTER_PORT = 29500  # torch.distributed's customary port


def object_name(cluster_id: Any) -> str:
    """`c-<32 hex>`: the cluster's Service, Workload, ConfigMap and NetworkPolicy."""
    return f"c-{uuid.UUID(str(cluster_id)).hex}"


@dataclass(frozen=True, kw_only=True, slots=True)
class ClusterNodeSpec:
    cluster_id: str
    tenant_id: str
    namespace: str
    rank: int
    hostnames: tuple[str, ...]  # each rank's node name, which is its pod's hostname
    gpus_per_node: int
    block_label: str = ""  # empty: placement `any`
    block: str = ""
    fabric_env: tuple[tuple[str, str], ...] = ()
    rdma_resources: tuple[tuple[str, int], ...] = ()
    ssh_port: int
    cluster_key: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < len(self.hostnames):
            raise ValueError("rank out of range")
        if bool(self.block_label) != bool(self.block):
            raise ValueError("block and block_label go together")

    @property
    def name(self) -> str:
        return object_name(self.cluster_id)

    @property
    def nodes(self) -> int:
        return len(self.hostnames)

    def address(self, rank: int) -> str:
        """The stable DNS name of `rank`, short form (the pod's search path completes it)."""
        return f"{self.hostnames[rank]}.{self.name}"


def _labels(spec: ClusterNodeSpec) -> dict[str, str]:
    return dict(sorted({**names.common_labels(spec.tenant_id), CLUSTER_LABEL: spec.cluster_id}.items()))


def _metadata(spec: ClusterNodeSpec) -> dict[str, Any]:
    return {"name": spec.name, "namespace": spec.namespace, "labels": _labels(spec)}


def make_cluster_service(spec: ClusterNodeSpec) -> dict[str, Any]:
    """Headless: DNS names per pod, no virtual IP, addresses published before the pods are Ready (a node
    must find the others while its own training process starts)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec),
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {CLUSTER_LABEL: spec.cluster_id},
        },
    }


def hostfile(spec: ClusterNodeSpec) -> str:
    return "".join(f"{spec.address(rank)} slots={spec.gpus_per_node}\n" for rank in range(spec.nodes))


def make_hosts_config(spec: ClusterNodeSpec, ips: tuple[str, ...] = ()) -> dict[str, Any]:
    data = {"hostfile": hostfile(spec)}
    if ips:
        data["node_ips"] = "".join(f"{ip}\n" for ip in ips)
        data["env"] = f"NODE_IPS={','.join(ips)}\nMASTER_IP={ips[0]}\n"
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(spec), "data": data}


def make_cluster_policy(spec: ClusterNodeSpec) -> dict[str, Any]:
    peers = [{"podSelector": {"matchLabels": {CLUSTER_LABEL: spec.cluster_id}}}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(spec),
        "spec": {
            "podSelector": {"matchLabels": {CLUSTER_LABEL: spec.cluster_id}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers}],
            "egress": [{"to": peers}],
        },
    }


def make_gang(spec: ClusterNodeSpec) -> dict[str, Any]:
    workload = gang.make_gang(
        gang.GangSpec(name=spec.name, namespace=spec.namespace, tenant_id=spec.tenant_id, size=spec.nodes)
    )
    workload["metadata"]["labels"] = _labels(spec)
    return workload


def wiring_env(spec: ClusterNodeSpec) -> dict[str, str]:
    """What every node's container gets (docs/clusters.md "Environment"): the names dstack, SkyPilot and
    torchrun's users expect, and the fabric's settings of the region."""
    env = dict(spec.fabric_env)
    env.update(
        {
            "MASTER_ADDR": spec.address(0),
            "MASTER_PORT": str(MASTER_PORT),
            "NODE_RANK": str(spec.rank),
            "NUM_NODES": str(spec.nodes),
            "GPUS_PER_NODE": str(spec.gpus_per_node),
            "WORLD_SIZE": str(spec.nodes * spec.gpus_per_node),
            "NODE_NAMES": ",".join(spec.address(r) for r in range(spec.nodes)),
            "GPUCLOUD_CLUSTER_ID": spec.cluster_id,
            "GPUCLOUD_HOSTFILE": HOSTFILE,
            # mpirun and DeepSpeed's launcher reach the other nodes with the cluster's key, on the port the
            # platform's SSH server listens on in every pod.
            "OMPI_MCA_plm_rsh_args": (
                f"-p {spec.ssh_port} -i {SSH_MOUNT_PATH}/{CLUSTER_KEY_FILE} "
                "-o StrictHostKeyChecking=accept-new"
            ),
        }
    )
    return env


def make_node_pod(pod: dict[str, Any], spec: ClusterNodeSpec) -> dict[str, Any]:
    """The instance's pod (manifests.make_pod) as a node of the cluster: in the gang, on the cluster's block,
    named for DNS, with the wiring in its environment and the hostfile mounted."""
    node = gang.join_gang(copy.deepcopy(pod), spec.name)
    node["metadata"]["labels"] = dict(
        sorted({**node["metadata"]["labels"], CLUSTER_LABEL: spec.cluster_id}.items())
    )
    body = node["spec"]
    body["hostname"] = spec.hostnames[spec.rank]
    body["subdomain"] = spec.name
    if spec.block_label:
        body["nodeSelector"] = {**(body.get("nodeSelector") or {}), spec.block_label: spec.block}
    body["volumes"].append({"name": CLUSTER_VOLUME, "configMap": {"name": spec.name}})
    container = body["containers"][0]
    container["volumeMounts"].append({"name": CLUSTER_VOLUME, "mountPath": CLUSTER_PATH, "readOnly": True})
    env = {item["name"]: item["value"] for item in container["env"]}
    env.update(wiring_env(spec))
    container["env"] = [{"name": key, "value": value} for key, value in sorted(env.items())]
    for resource, count in spec.rdma_resources:
        for amounts in (container["resources"]["requests"], container["resources"]["limits"]):
            amounts[resource] = str(count)
    return node
