"""Proof on real nodes (issue 21): a 2-node cluster on the sandbox's two real kubelet nodes of us-east-1 runs
`mpirun --hostfile` over the cluster's own SSH (the platform's SSH server in each pod, the cluster's key and
the OMPI_MCA_plm_rsh_args the operator sets) with an MPI allreduce (mpi4py) that sums to the right value on
both ranks, and a torch-style rendezvous from the wiring's environment (MASTER_ADDR/MASTER_PORT, NODE_RANK,
NUM_NODES, WORLD_SIZE).

The real nodes (sandbox/realnodes.sh, docs/sandbox.md "Real nodes") are one block
(`network.topology.nvidia.com/spine=us-east-1-real-b0`) of the GPU type `sandbox-cpu`: two CPUs each, with
`nvidia.com/gpu: 2` advertised as a device plugin would. The catalog's only type there, `sandbox-cpu-1x`,
takes one of the two GPUs, so the test adds a whole-node type of its own (both GPUs, one vCPU, one GiB).
The image is the catalog's `pytorch`, whose sandbox stand-in is the instance image (Debian with OpenMPI,
mpi4py and the OpenSSH client; sandbox/images.sh).

The sandbox has no cluster DNS, so the nodes' DNS names (hostfile, MASTER_ADDR) do not resolve there: the
MPI hostfile is made from `node_ips` and the rendezvous dials MASTER_IP, both from the cluster's ConfigMap
mounted at /etc/gpucloud/cluster, which the operator completes once both pods have addresses (the kubelet
then refreshes the mounted copy). Commands run in the pods with `kubectl exec` as the administrator
(kubernetes.stream); everything past that (ssh between the pods, orted, the MPI traffic, the rendezvous's
TCP connection) is the pods' own, through the real NetworkPolicy enforcer.

Real nodes hold one such node each: run under `flock /tmp/gpucloud-real-nodes.lock` like the other
real-node tests. Waits are bounds for a hung cluster, not performance assertions.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from kubernetes import client
from kubernetes.stream import stream
from kubernetes.stream.ws_client import WSClient

from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import GpuType, InstanceType
from apps.instances import cluster_services
from apps.instances.cluster_services import ClusterRequest
from apps.instances.cluster_states import ClusterState
from apps.instances.models import Cluster, Instance
from apps.instances.states import Action
from apps.operator import cluster_nodes
from apps.operator.client import api_client
from apps.operator.cluster import Cluster as Kube
from apps.operator.manifests import CONTAINER
from apps.operator.operator_loop import refresh_capacity
from apps.operator.reconciler import reconcile
from tests.fixtures.kube import Sandbox
from tests.instances.helpers import Catalog
from tests.operator.sandbox_support import SandboxTenant, connect, drive, state_is, wait_for
from tests.quotas.conftest import set_quota

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "us-east-1"
BLOCK_LABEL = "network.topology.nvidia.com/spine"
REAL_BLOCK = "us-east-1-real-b0"
GPUS_PER_NODE = 2  # what each real node advertises (sandbox/fleet.yaml, shape sandbox-cpu)
REAL_TIMEOUT = 240.0  # a first image pull on a real node
FREE_TIMEOUT = 120.0  # another test's pods leaving the real nodes
CONFIG_TIMEOUT = 180.0  # the kubelet refreshes a mounted ConfigMap on its pod sync (1 min by default)
RUN_TIMEOUT = 120.0

# One line per rank: its MPI rank, the pod it runs in, and the allreduce of rank+1 over the world.
ALLREDUCE = (
    "from mpi4py import MPI; c = MPI.COMM_WORLD; "
    "print('allreduce', c.rank, c.size, MPI.Get_processor_name(), c.allreduce(c.rank + 1), flush=True)"
)
# The hostfile mpirun gets: the published addresses, one slot each (one rank per node). The DNS names of
# GPUCLOUD_HOSTFILE would do the same where cluster DNS exists.
MPIRUN = (
    "awk 'NF { print $1 \" slots=1\" }' /etc/gpucloud/cluster/node_ips > /tmp/hosts && "
    f'exec mpirun --hostfile /tmp/hosts -np 2 python3 -c "{ALLREDUCE}"'
)

# torch.distributed's env:// rendezvous, without torch: rank 0 listens on MASTER_PORT, every other rank
# connects to the master and says who it is; the master answers all of them with the whole world. The master
# is dialled by MASTER_IP (the cluster's env file): MASTER_ADDR is a DNS name the sandbox cannot resolve.
RENDEZVOUS = r"""
import json, os, socket, time

wiring = {k: os.environ[k] for k in ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "NUM_NODES", "WORLD_SIZE",
                                     "GPUS_PER_NODE", "NODE_NAMES")}
published = dict(line.split("=", 1) for line in open("/etc/gpucloud/cluster/env").read().split())
rank, nodes, port = int(wiring["NODE_RANK"]), int(wiring["NUM_NODES"]), int(wiring["MASTER_PORT"])
me = {"rank": rank, "hostname": socket.gethostname(), "wiring": wiring}

def send(sock, obj):
    sock.sendall(json.dumps(obj).encode() + b"\n")

def receive(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the peer closed the connection")
        data += chunk
    return json.loads(data)

if rank == 0:
    server = socket.create_server(("", port))
    server.settimeout(90)
    world, peers = {0: me}, []
    while len(world) < nodes:
        peer, _ = server.accept()
        peer.settimeout(30)
        hello = receive(peer)
        world[hello["rank"]] = hello
        peers.append(peer)
    ordered = [world[r] for r in sorted(world)]
    for peer in peers:
        send(peer, ordered)
else:
    deadline = time.monotonic() + 90
    while True:
        try:
            sock = socket.create_connection((published["MASTER_IP"], port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    sock.settimeout(30)
    send(sock, me)
    ordered = receive(sock)
print("RENDEZVOUS " + json.dumps({"me": me, "master_ip": published["MASTER_IP"], "world": ordered}))
"""


def whole_node_type() -> InstanceType:
    """Both GPUs of a real node: a whole-node type of the real nodes' GPU type (seeded by the catalog)."""
    return InstanceType.objects.create(
        slug="sandbox-cpu-2x-node",
        name="Sandbox CPU, whole real node",
        gpu_type=GpuType.objects.get(slug="sandbox-cpu"),
        gpu_count=GPUS_PER_NODE,
        vcpu=1,
        memory_gib=1,
        ephemeral_disk_gib=2,
        price_per_hour=Decimal("0.1200"),
        whole_node=True,
    )


def nodes_of(cluster: Cluster) -> list[Instance]:
    return list(Instance.objects.filter(cluster=cluster).order_by("rank"))


def run_in_pods(sandbox: Sandbox, pods: list[client.V1Pod], argv: list[str]) -> list[tuple[int, str, str]]:
    """Runs argv in each pod's container at the same time (exec as the administrator); waits for all and
    returns (exit code, stdout, stderr) per pod. One API client per exec: kubernetes.stream swaps the
    client's request method while it connects."""
    apis = [sandbox.api_client(REGION) for _ in pods]
    try:
        sessions: list[WSClient] = [
            stream(
                client.CoreV1Api(api).connect_get_namespaced_pod_exec,
                pod.metadata.name,
                pod.metadata.namespace,
                container=CONTAINER,
                command=argv,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            for api, pod in zip(apis, pods, strict=True)
        ]
        out = [""] * len(pods)
        err = [""] * len(pods)
        deadline = time.monotonic() + RUN_TIMEOUT
        while any(s.is_open() for s in sessions):
            assert time.monotonic() < deadline, f"{argv!r} still runs after {RUN_TIMEOUT:.0f}s: {out} {err}"
            for i, session in enumerate(sessions):
                if session.is_open():
                    session.update(timeout=0.5)
                    out[i] += session.read_stdout(timeout=0)
                    err[i] += session.read_stderr(timeout=0)
        results = []
        for i, session in enumerate(sessions):
            out[i] += session.read_stdout(timeout=0)
            err[i] += session.read_stderr(timeout=0)
            code = session.returncode
            assert code is not None, f"no exit status from {pods[i].metadata.name}: {out[i]} {err[i]}"
            results.append((code, out[i], err[i]))
            session.close()
        return results
    finally:
        for api in apis:
            api.close()


def test_a_two_node_cluster_on_real_nodes_runs_mpi_over_its_ssh_and_a_rendezvous(
    sandbox: Sandbox, tenant: SandboxTenant, catalog: Catalog
) -> None:
    real = sorted(n["name"] for n in sandbox.real_nodes.get("nodes", []) if n["region"] == REGION)
    assert len(real) == 2, f"the sandbox instance runs no two real nodes in {REGION}: {sandbox.real_nodes}"
    region = connect(catalog.us_east, sandbox)
    instance_type = whole_node_type()
    actor = tenant.actor
    set_quota(actor.tenant, max_gpus=8, max_instances=4, max_vcpu=8, max_memory_gib=16)
    kube = Kube(api_client(region))

    def both_free() -> bool:  # pods of an earlier test may still be going (namespaces are deleted unwaited)
        refresh_capacity(kube, region)
        free = catalog_selectors.whole_nodes_free(region=region, instance_type=instance_type)
        return free.get(REAL_BLOCK) == 2

    try:
        wait_for(both_free, what="both real nodes to be wholly free", timeout=FREE_TIMEOUT)
    except AssertionError as exc:
        core = tenant.core(REGION)
        held = [
            f"{p.metadata.namespace}/{p.metadata.name} on {p.spec.node_name}"
            for node in real
            for p in core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node}").items
        ]
        raise AssertionError(f"{exc}; pods on them: {held}") from exc

    req = ClusterRequest(
        instance_type=instance_type.slug, region=REGION, image="pytorch", node_count=2, name="mpi"
    )
    cluster = cluster_services.cluster_create(actor=actor.user, tenant=actor.tenant, req=req)
    assert (cluster.block, cluster.block_label) == (REAL_BLOCK, BLOCK_LABEL)
    for node in nodes_of(cluster):
        drive(node.pk, state_is("running"), what="running", timeout=REAL_TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.RUNNING

    name = cluster_nodes.object_name(cluster.pk)
    pods = [tenant.read_pod(node.pk, REGION) for node in nodes_of(cluster)]
    placed = [pod for pod in pods if pod is not None]
    assert len(placed) == 2, pods
    assert sorted(str(pod.spec.node_name) for pod in placed) == real  # one node of the cluster on each
    for rank, pod in enumerate(placed):
        assert pod.spec.hostname == f"mpi-{rank}" and pod.spec.node_selector[BLOCK_LABEL] == REAL_BLOCK
    ips = [pod.status.pod_ip for pod in placed]

    # The operator publishes the addresses once both pods have one (each node's reconcile tries).
    core = tenant.core(REGION)

    def published() -> dict[str, str] | None:
        for node in nodes_of(cluster):
            reconcile(node.pk)
        data = core.read_namespaced_config_map(name, tenant.namespace).data or {}
        return data if "node_ips" in data else None

    data = wait_for(published, what="the nodes' addresses in the ConfigMap", timeout=REAL_TIMEOUT)
    assert data["node_ips"].split() == ips and f"MASTER_IP={ips[0]}" in data["env"].split()

    # ... and the kubelet brings them into each pod's mounted copy.
    def mounted() -> bool:
        files = ["/etc/gpucloud/cluster/node_ips", "/etc/gpucloud/cluster/env"]
        seen = run_in_pods(sandbox, placed, ["cat", *files])
        return all(code == 0 and out.split()[:2] == ips for code, out, _ in seen)

    wait_for(mounted, what="the addresses in both pods' /etc/gpucloud/cluster", timeout=CONFIG_TIMEOUT)

    # mpirun on rank 0 starts orted on rank 1 with ssh (the cluster's key and port from
    # OMPI_MCA_plm_rsh_args) through the platform's SSH server there; the ranks then talk over TCP.
    [(code, out, err)] = run_in_pods(sandbox, placed[:1], ["sh", "-c", MPIRUN])
    assert code == 0, f"mpirun failed ({code}):\n{out}\n{err}"
    lines = sorted(line.split() for line in out.splitlines() if line.startswith("allreduce "))
    assert lines == [
        ["allreduce", "0", "2", "mpi-0", "3"],
        ["allreduce", "1", "2", "mpi-1", "3"],
    ], f"{out}\n{err}"

    # torch-style rendezvous on both nodes at once, from the wiring's variables.
    results = run_in_pods(sandbox, placed, ["python3", "-c", RENDEZVOUS])
    reports = []
    for rank, (code, out, err) in enumerate(results):
        assert code == 0, f"rank {rank}'s rendezvous failed ({code}):\n{out}\n{err}"
        [line] = [line for line in out.splitlines() if line.startswith("RENDEZVOUS ")]
        reports.append(json.loads(line.removeprefix("RENDEZVOUS ")))
    expected_world = [
        {
            "rank": rank,
            "hostname": f"mpi-{rank}",
            "wiring": {
                "MASTER_ADDR": f"mpi-0.{name}",
                "MASTER_PORT": str(cluster_nodes.MASTER_PORT),
                "NODE_RANK": str(rank),
                "NUM_NODES": "2",
                "WORLD_SIZE": str(2 * GPUS_PER_NODE),
                "GPUS_PER_NODE": str(GPUS_PER_NODE),
                "NODE_NAMES": f"mpi-0.{name},mpi-1.{name}",
            },
        }
        for rank in range(2)
    ]
    for rank, report in enumerate(reports):
        assert report["me"] == expected_world[rank]
        assert report["master_ip"] == ips[0]
        assert report["world"] == expected_world  # both ranks agree on the whole world

    cluster = cluster_services.cluster_act(actor=actor.user, cluster=cluster, action=Action.TERMINATE)
    for node in nodes_of(cluster):
        drive(node.pk, state_is("terminated"), what="terminated", timeout=REAL_TIMEOUT)
    cluster.refresh_from_db()
    assert cluster.state == ClusterState.TERMINATED
