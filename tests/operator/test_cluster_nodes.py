"""The pure builders of a cluster's objects and its nodes' pods (apps/operator/cluster_nodes.py), and the
cluster's derived SSH key pair (apps/operator/host_keys.py)."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives import serialization

from apps.operator import cluster_nodes, gang, host_keys
from apps.operator.cluster_nodes import ClusterNodeSpec

CLUSTER = uuid.UUID("0b7e5a4e-7f8e-4d1c-9c55-6a3fd1b2c001")
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "i-1", "namespace": "t-a", "labels": {"gpucloud.io/instance": "1"}},
    "spec": {
        "nodeSelector": {"nvidia.com/gpu.product": "H100"},
        "volumes": [],
        "containers": [
            {
                "name": "instance",
                "env": [{"name": "MASTER_PORT", "value": "1"}, {"name": "MINE", "value": "x"}],
                "volumeMounts": [],
                "resources": {"requests": {"nvidia.com/gpu": "8"}, "limits": {"nvidia.com/gpu": "8"}},
            }
        ],
    },
}


def spec(rank: int = 1, **fields: object) -> ClusterNodeSpec:
    values: dict[str, object] = {
        "cluster_id": str(CLUSTER),
        "tenant_id": str(uuid.uuid4()),
        "namespace": "t-a",
        "rank": rank,
        "hostnames": ("llm-0", "llm-1", "llm-2"),
        "gpus_per_node": 8,
        "block_label": "network.topology.nvidia.com/spine",
        "block": "spine-1",
        "fabric_env": (("NCCL_SOCKET_IFNAME", "eth0"),),
        "rdma_resources": (("rdma/ib", 1),),
        "ssh_port": 2222,
        **fields,
    }
    return ClusterNodeSpec(**values)  # type: ignore[arg-type]


def test_a_node_pod_is_in_the_gang_on_its_block_with_the_wiring() -> None:
    node = cluster_nodes.make_node_pod(POD, spec())
    name = f"c-{CLUSTER.hex}"
    assert gang.gang_of(node) == name
    body = node["spec"]
    assert (body["hostname"], body["subdomain"]) == ("llm-1", name)
    assert body["nodeSelector"] == {
        "nvidia.com/gpu.product": "H100",
        "network.topology.nvidia.com/spine": "spine-1",
    }
    assert node["metadata"]["labels"][cluster_nodes.CLUSTER_LABEL] == str(CLUSTER)
    env = {e["name"]: e["value"] for e in body["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"llm-0.{name}" and env["MASTER_PORT"] == "29500"  # ours win
    assert (env["NODE_RANK"], env["NUM_NODES"], env["GPUS_PER_NODE"], env["WORLD_SIZE"]) == (
        "1",
        "3",
        "8",
        "24",
    )
    assert env["NODE_NAMES"] == f"llm-0.{name},llm-1.{name},llm-2.{name}"
    assert env["NCCL_SOCKET_IFNAME"] == "eth0" and env["MINE"] == "x"
    assert "-p 2222 -i /etc/gpucloud/ssh/cluster_key" in env["OMPI_MCA_plm_rsh_args"]
    assert body["volumes"] == [{"name": "gpucloud-cluster", "configMap": {"name": name}}]
    assert body["containers"][0]["resources"]["limits"]["rdma/ib"] == "1"
    assert POD["spec"]["volumes"] == []  # the instance's pod is not changed


def test_placement_any_selects_no_block() -> None:
    node = cluster_nodes.make_node_pod(POD, spec(block_label="", block=""))
    assert node["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    with pytest.raises(ValueError, match="block"):
        spec(block_label="x", block="")
    with pytest.raises(ValueError, match="rank"):
        spec(rank=3)


def test_the_hostfile_and_the_addresses() -> None:
    name = f"c-{CLUSTER.hex}"
    config = cluster_nodes.make_hosts_config(spec())
    assert config["data"] == {
        "hostfile": f"llm-0.{name} slots=8\nllm-1.{name} slots=8\nllm-2.{name} slots=8\n"
    }
    later = cluster_nodes.make_hosts_config(spec(), ("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    assert later["data"]["node_ips"] == "10.0.0.1\n10.0.0.2\n10.0.0.3\n"
    assert later["data"]["env"] == "NODE_IPS=10.0.0.1,10.0.0.2,10.0.0.3\nMASTER_IP=10.0.0.1\n"


def test_the_policy_opens_the_cluster_to_itself_only() -> None:
    policy = cluster_nodes.make_cluster_policy(spec())
    peers = [{"podSelector": {"matchLabels": {cluster_nodes.CLUSTER_LABEL: str(CLUSTER)}}}]
    assert policy["spec"]["podSelector"] == peers[0]["podSelector"]
    assert policy["spec"]["ingress"] == [{"from": peers}] and policy["spec"]["egress"] == [{"to": peers}]
    service = cluster_nodes.make_cluster_service(spec())
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert cluster_nodes.make_gang(spec())["spec"]["podGroups"][0]["policy"]["gang"]["minCount"] == 3


def test_a_clusters_key_pair_is_derived_stable_and_openssh_readable() -> None:
    private, public = host_keys.cluster_key_pair(CLUSTER, secret="s3cret")
    assert host_keys.cluster_key_pair(CLUSTER, secret="s3cret") == (private, public)
    key = serialization.load_ssh_private_key(private.encode(), password=None)
    derived = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert derived.decode() == public
    other, _ = host_keys.cluster_key_pair(uuid.uuid4(), secret="s3cret")
    assert other != private
    assert public != host_keys.host_public_key(CLUSTER, secret="s3cret")  # not an instance's host key
