"""Clusters: a multi-node cluster launched through the API until every node runs, against the same gang of
pods created directly; then a burst of cluster creations, admissions a second.

On us-east-1 of the sandbox instance `bench` the benchmark adds NODES kwok nodes of its own (copies of
us-east-1-h100-0 with a GPU product label of their own and one topology block of their own, as
tests/operator/own_nodes.py makes them), a GPU type with that product label and a whole-node instance type
of it, so only its pods land on them; the nodes are deleted afterwards (and any an interrupted run left are
deleted first).

Launch (N rounds per size, SIZES nodes): ours is POST /clusters on gunicorn, admission (whole free nodes in
one block, as the operator's capacity pass last saw them), `manage.py operator` reconciling each node (the
cluster's headless Service, ConfigMap, NetworkPolicy and gang Workload, then the node's Secret, Service and
pod naming the Workload), kube-scheduler binding the gang, kwok running the pods, the operator recording
each `running`, until the client has seen every node running (the instance wait endpoint, node by node)
and the cluster `running`. Baseline, equal work: in a namespace holding the tenant's namespace objects, the
same cluster objects (apps/operator/cluster_nodes builders, the Workload created as the operator creates
it, apps/operator/cluster.Cluster.create_as_is) and per node the same Secret, Service and node pod (built
from the launched cluster's own rows, renamed), the nodes created at the operator's change-worker
concurrency, until a pod watch kept open on the namespace has seen every pod Running. The two alternate
and swap order every round; between launches each side's objects are deleted and the nodes seen free by
the operator again.

Burst: BURST cluster creations of BURST_NODES nodes each from BURST tenants-round-robin clients at once,
then the same count of single-instance launches of the same type (the per-request reference the API
gives: burst_admission measures single launches), then the same gangs created directly at the same
concurrency; each until all run. Admissions a second and the CPU each request costs (bench/cpu.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from typing import Any

import requests

from bench import common, cpu
from bench.common import Progress, ratio, summary_ms

DEFAULT_N = 5  # rounds of each size, ours and the baseline each
SIZES = (8, 64)
BURST = 50  # cluster creations at once
BURST_NODES = 2
BURST_TENANTS = 10
REGION = "us-east-1"
TEMPLATE_NODE = "us-east-1-h100-0"
PRODUCT = "BENCH-CLUSTER-H100"  # the product label of the benchmark's nodes (and of its GPU type)
BLOCK = "bench-cluster-b0"  # their topology block (the region's block label)
NODE_LABEL = "gpucloud-bench/cluster-node"  # finds them again, also after an interrupted run
PRODUCT_LABEL = "nvidia.com/gpu.product"
POLL = 0.02  # the client's poll of the cluster once every node runs (the cluster's state follows at once)
WAIT_TIMEOUT = 30
TIMEOUT = 600.0


# ---- the benchmark's nodes ------------------------------------------------------------------------------


def node_body(template: dict[str, Any], name: str, rack: int, block_label: str) -> dict[str, Any]:
    """A kwok node shaped like `template` (an H100 node of the sandbox), in the benchmark's block."""
    now = common.now_utc().isoformat()
    labels = dict(template["metadata"]["labels"])
    labels.update(
        {
            "kubernetes.io/hostname": name,
            PRODUCT_LABEL: PRODUCT,
            block_label: BLOCK,
            "network.topology.nvidia.com/leaf": f"{BLOCK}-r{rack}",
            NODE_LABEL: "true",
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            # kwok manages only nodes with this annotation (sandbox/sandbox.sh, sandbox/fleet.py).
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": labels,
        },
        "spec": {"taints": copy.deepcopy(template["spec"].get("taints") or [])},
        "status": {
            "capacity": dict(template["status"]["capacity"]),
            "allocatable": dict(template["status"]["allocatable"]),
            "conditions": [
                {**condition, "lastHeartbeatTime": now, "lastTransitionTime": now}
                for condition in template["status"].get("conditions") or []
            ],
        },
    }


def delete_nodes(core: Any) -> int:
    from kubernetes.client.rest import ApiException

    listed = json.loads(core.list_node(label_selector=NODE_LABEL, _preload_content=False).data)["items"]
    for node in listed:
        try:
            core.delete_node(node["metadata"]["name"], _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
    return len(listed)


def create_nodes(core: Any, count: int, block_label: str, progress: Progress) -> list[str]:
    template = json.loads(core.read_node(TEMPLATE_NODE, _preload_content=False).data)
    names = [f"{REGION}-bench-cluster-{i}" for i in range(count)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda i: core.create_node(
                    node_body(template, names[i], i // 2, block_label), _preload_content=False
                ),
                range(count),
            )
        )
    deadline = time.monotonic() + TIMEOUT
    while True:
        listed = json.loads(core.list_node(label_selector=NODE_LABEL, _preload_content=False).data)["items"]
        ready = [
            n
            for n in listed
            if (n["status"].get("allocatable") or {}).get("nvidia.com/gpu") == "8"
            and any(
                c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions") or []
            )
        ]
        if len(ready) == count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ready)} of {count} benchmark nodes Ready")
        time.sleep(1)
    progress(f"{count} kwok nodes Ready in block {BLOCK} ({block_label})")
    return names


def whole_type(region: Any) -> Any:
    """The GPU type of the benchmark's nodes and its whole-node instance type (8 GPUs)."""
    from apps.catalog.models import GpuType, InstanceType

    gpu_type = GpuType.objects.create(
        slug="bench-cluster-h100", model="H100 (cluster benchmark)", memory_gib=80, product_label=PRODUCT
    )
    return InstanceType.objects.create(
        slug="bench-cluster-h100x8",
        name="8x H100 (cluster benchmark)",
        gpu_type=gpu_type,
        gpu_count=8,
        vcpu=64,
        memory_gib=512,
        price_per_hour=Decimal("8.0000"),
        whole_node=True,
    )


def wait_free(region: Any, instance_type: Any, nodes: int, what: str) -> float:
    """Until the operator's capacity pass shows every benchmark node wholly free again (admission's view);
    returns the seconds waited."""
    from apps.catalog import selectors as catalog
    from apps.instances.cluster_states import UNPLACED
    from apps.instances.models import Cluster

    t0 = time.monotonic()
    while True:
        free = sum(catalog.whole_nodes_free(region=region, instance_type=instance_type).values())
        unplaced = Cluster.objects.filter(region=region, state__in=list(UNPLACED)).exists()
        if free >= nodes and not unplaced:
            return time.monotonic() - t0
        if time.monotonic() - t0 > TIMEOUT:
            raise RuntimeError(f"{what}: only {free} of {nodes} nodes free after {TIMEOUT:.0f}s")
        time.sleep(0.2)


# ---- the baseline: the same gang, created directly ------------------------------------------------------


@dataclasses.dataclass
class Gang:
    cluster_objects: list[dict[str, Any]]  # Service, ConfigMap, Workload, NetworkPolicy
    nodes: list[list[dict[str, Any]]]  # per node: Secret, Service, pod

    @property
    def pod_keys(self) -> list[str]:
        return [f"{objs[-1]['metadata']['namespace']}/{objs[-1]['metadata']['name']}" for objs in self.nodes]


def gang_objects(instances: list[Any], namespace: str, prefix: str) -> Gang:
    """The operator's objects of a launched cluster (its node rows, loaded as a reconcile loads them), moved
    into `namespace` under a cluster id and names of their own."""
    from apps.operator import cluster_nodes
    from apps.operator.specs import cluster_node_spec_for, spec_from_instance
    from bench import kube

    cluster_id = str(uuid.uuid4())
    nodes, first = [], None
    for instance in instances:
        name = f"{prefix}-{instance.rank}"
        ssh_port = spec_from_instance(instance).ssh_port
        node = dataclasses.replace(
            cluster_node_spec_for(instance, ssh_port=ssh_port), namespace=namespace, cluster_id=cluster_id
        )
        first = first or node
        secret, service, pod = kube.baseline_objects(instance, namespace, name)
        nodes.append([secret, service, cluster_nodes.make_node_pod(pod, node)])
    assert first is not None
    cluster_objects = [
        kube.unmanaged(build(first), namespace)
        for build in (
            cluster_nodes.make_cluster_service,
            cluster_nodes.make_hosts_config,
            cluster_nodes.make_gang,
            cluster_nodes.make_cluster_policy,
        )
    ]
    return Gang(cluster_objects, nodes)


def create_gang(api: Any, gang: Gang, concurrency: int) -> None:
    """As reconcile_clusters.ensure and the nodes' reconciles do: the Service applied, the ConfigMap and
    the Workload created as given and owned by it, the policy applied; then each node's Secret and Service
    beside its pod (created as given: it names the Workload), `concurrency` nodes at a time."""
    from kubernetes import client

    from apps.operator import manifests
    from apps.operator.cluster import Cluster
    from bench import kube

    kube_cluster = Cluster(api)
    core = client.CoreV1Api(api)
    service, config, workload, policy = gang.cluster_objects
    meta = kube_cluster.apply(service)["metadata"]
    owned = partial(manifests.owned_by, api_version="v1", kind="Service", name=meta["name"], uid=meta["uid"])
    kube_cluster.create_as_is(owned(config))
    kube_cluster.create_as_is(owned(workload))
    kube_cluster.apply(owned(policy))

    def node(objects: list[dict[str, Any]]) -> None:
        *others, pod = objects
        futures = [kube.SIDE.submit(kube.create_raw, core, m) for m in others]
        kube_cluster.create_as_is(pod)
        for future in futures:
            future.result()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(node, gang.nodes))


def delete_gang(api: Any, gang: Gang) -> None:
    """Each node's objects, and the cluster's Service (its ConfigMap, Workload and policy go with it)."""
    from kubernetes import client

    from bench import kube

    core = client.CoreV1Api(api)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda m: kube.delete_raw(core, m), [m for objs in gang.nodes for m in objs]))
    kube.delete_raw(core, gang.cluster_objects[0])


# ---- ours: through the API ------------------------------------------------------------------------------


def create_cluster(
    http: requests.Session, url: str, who: Any, name: str, instance_type: str, nodes: int
) -> requests.Response:
    body = {
        "name": name,
        "instance_type": instance_type,
        "region": REGION,
        "image": "pytorch",
        "node_count": nodes,
        "placement": "block",
    }
    return http.post(
        f"{url}/api/v1/tenants/{who.slug}/clusters",
        json=body,
        headers={**who.headers(), "Idempotency-Key": str(uuid.uuid4())},
        timeout=300,
    )


class Api:
    def __init__(self, url: str, who: Any):
        from bench.launch_latency import WaitClient

        self.url, self.who = url, who
        self.http = requests.Session()
        self.http.headers.update(who.headers())
        self.clusters = f"{url}/api/v1/tenants/{who.slug}/clusters"
        self.waiter = WaitClient(self.http, f"{url}/api/v1/tenants/{who.slug}/instances")

    def create(self, name: str, instance_type: str, nodes: int) -> Any:
        return create_cluster(self.http, self.url, self.who, name, instance_type, nodes)

    def until_running(self, cluster: dict[str, Any], deadline: float) -> None:
        """The cluster's state read; while it is not running, the first node not yet running waited for
        through the instance wait endpoint (long-poll), then the cluster read again: a handful of requests
        whatever the size, as the nodes turn running nearly together."""
        url = f"{self.clusters}/{cluster['id']}"
        while cluster["state"] != "running":
            if cluster["state"] == "failed" or time.perf_counter() > deadline:
                raise RuntimeError(f"cluster {cluster['id']}: state {cluster['state']}")
            waiting = next((node for node in cluster["nodes"] if node["state"] != "running"), None)
            if waiting is not None:
                self.waiter.until_running(waiting["instance_id"], waiting["state"], deadline)
            else:  # every node runs; the cluster's own state follows in the same transaction
                time.sleep(POLL)
            cluster = self.http.get(url, timeout=60).json()

    def terminate(self, cluster_id: str) -> None:
        response = self.http.post(f"{self.clusters}/{cluster_id}/terminate", timeout=60)
        if response.status_code not in (200, 202):
            raise RuntimeError(f"terminate {cluster_id}: {response.status_code} {response.text[:300]}")

    def until_terminated(self, cluster_id: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.http.get(f"{self.clusters}/{cluster_id}", timeout=60).json()["state"] != "terminated":
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster {cluster_id} never terminated")
            time.sleep(0.2)


def _stages(cluster_id: str, sent: float, saw: float) -> dict[str, float] | None:
    """One launch on one clock (client and servers on this machine): the request until the cluster's row;
    the row until the operator recorded the last node's pod created; that until the cluster ran; that until
    the client had seen it."""
    from django.db.models import Max

    from apps.instances.models import Cluster, InstanceEvent

    row = Cluster.objects.get(pk=cluster_id)
    made = InstanceEvent.objects.filter(instance__cluster_id=cluster_id, name="pod_created").aggregate(
        last=Max("created_at")
    )["last"]
    if row.ran_at is None or made is None:
        return None
    created, ran, last_pod = row.created_at.timestamp(), row.ran_at.timestamp(), made.timestamp()
    return {
        "request to row": created - sent,
        "row to last pod created": last_pod - created,
        "last pod created to cluster running": ran - last_pod,
        "cluster running to client": saw - ran,
        "server side (row to cluster running)": ran - created,
    }


# ---- the benchmark --------------------------------------------------------------------------------------


def run(
    n: int,
    progress: Progress,
    *,
    sizes: tuple[int, ...] = SIZES,
    burst: int = BURST,
    burst_nodes: int = BURST_NODES,
) -> dict[str, Any]:
    from kubernetes import client

    from apps.instances.models import Instance
    from apps.operator.operator_loop import OperatorConfig
    from bench import db, kube, seed
    from bench.stack import Stack, wait_operator_leads

    node_count = max(*sizes, burst * burst_nodes)
    db.reset(progress)
    seed.catalog()
    sandbox = kube.bench_sandbox()
    api = kube.api_client(sandbox.regions[REGION])
    core = client.CoreV1Api(api)
    left = delete_nodes(core)
    if left:
        progress(f"deleted {left} benchmark nodes an earlier run left")
    region = seed.connect_region(REGION, sandbox.regions[REGION])
    block_label = region.topology_block_label
    instance_type = whole_type(region)
    concurrency = OperatorConfig().change_workers
    scheduler = kube.scheduler_client_qps(sandbox.dir, REGION)
    who = seed.tenant(f"bench-cl-{uuid.uuid4().hex[:6]}")
    tenants = [seed.tenant(f"bench-clb-{i}-{uuid.uuid4().hex[:4]}") for i in range(BURST_TENANTS)]
    namespaces: list[str] = []
    try:
        create_nodes(core, node_count, block_label, progress)
        with Stack("cluster_launch") as stack:
            since = common.now_utc()
            stack.operator(REGION)
            stack.worker()
            url = stack.web()
            wait_operator_leads(region, since, stack)
            wait_free(region, instance_type, node_count, "the operator's first capacity pass")
            progress(f"web {url}, worker and operator up; operator leads {REGION}; {node_count} nodes free")
            ours_api = Api(url, who)
            baseline_ns = kube.baseline_namespace(api, who.tenant, region)
            namespaces.append(baseline_ns)
            watch = kube.PodWatch(api, namespace=baseline_ns).start()

            def load_nodes(cluster_id: str) -> list[Any]:
                ids = (
                    Instance.objects.filter(cluster_id=cluster_id)
                    .order_by("rank")
                    .values_list("pk", flat=True)
                )
                return [kube.load_baseline_instance(pk) for pk in ids]

            templates: dict[int, list[Any]] = {}  # size: a launched cluster's node rows (the baseline's)
            marks: dict[str, tuple[float, float]] = {}  # cluster id: wall clock sent, saw running

            def ours(size: int, label: str) -> float:
                sent, t0 = time.time(), time.perf_counter()
                response = ours_api.create(label, instance_type.slug, size)
                if response.status_code != 201:
                    raise RuntimeError(f"cluster {label}: {response.status_code} {response.text[:300]}")
                cluster = response.json()
                ours_api.until_running(cluster, t0 + TIMEOUT)
                elapsed = time.perf_counter() - t0
                marks[cluster["id"]] = (sent, time.time())
                if size not in templates:
                    templates[size] = load_nodes(cluster["id"])
                ours_api.terminate(cluster["id"])
                ours_api.until_terminated(cluster["id"])
                wait_free(region, instance_type, node_count, f"after {label}")
                return elapsed

            def baseline(size: int, label: str) -> float:
                gang = gang_objects(templates[size], baseline_ns, label)
                t0 = time.perf_counter()
                create_gang(api, gang, concurrency)
                done = max(watch.wait_running(key, TIMEOUT) for key in gang.pod_keys)
                elapsed = done - t0
                delete_gang(api, gang)
                for key in gang.pod_keys:
                    watch.wait_gone(key, TIMEOUT)
                wait_free(region, instance_type, node_count, f"after baseline {label}")
                return elapsed

            # Warm-up, untimed: a small cluster each way (every size's template comes from its first launch,
            # so the baseline of a size runs after ours once; from then on the two alternate).
            ours(burst_nodes, "warm")
            baseline(burst_nodes, "warm-b")
            progress("warmed: one untimed cluster each way")
            times: dict[int, dict[str, list[float]]] = {s: {"ours": [], "baseline": []} for s in sizes}
            cpu_used: dict[int, dict[str, dict[str, float]]] = {
                s: {"ours": {}, "baseline": {}} for s in sizes
            }
            wall: dict[int, dict[str, float]] = {s: {"ours": 0.0, "baseline": 0.0} for s in sizes}
            cluster_ids: dict[int, list[str]] = {s: [] for s in sizes}

            def counted(size: int, side: str, work: Callable[[], float]) -> None:
                before, t0 = cpu.sample(), time.perf_counter()
                seconds = work()
                wall[size][side] += time.perf_counter() - t0
                after = cpu.sample()
                times[size][side].append(seconds)
                for part, spent in after.items():
                    used = cpu_used[size][side]
                    used[part] = used.get(part, 0.0) + spent - before.get(part, 0.0)

            for i in range(n):
                for size in sizes:
                    known = set(marks)
                    first_ours = i % 2 == 0 or size not in templates
                    if first_ours:
                        counted(size, "ours", partial(ours, size, f"c{size}-{i}"))
                        counted(size, "baseline", partial(baseline, size, f"b{size}-{i}"))
                    else:
                        counted(size, "baseline", partial(baseline, size, f"b{size}-{i}"))
                        counted(size, "ours", partial(ours, size, f"c{size}-{i}"))
                    cluster_ids[size] += [c for c in marks if c not in known]
                    progress(
                        f"round {i + 1}/{n}, {size} nodes: ours {times[size]['ours'][-1]:.2f}s, "
                        f"baseline {times[size]['baseline'][-1]:.2f}s"
                    )
            watch.stop()
            launch = {}
            for size in sizes:
                stages: dict[str, list[float]] = {}
                for cluster_id in cluster_ids[size]:
                    for name, seconds in (_stages(cluster_id, *marks[cluster_id]) or {}).items():
                        stages.setdefault(name, []).append(seconds)
                o, b = summary_ms(times[size]["ours"]), summary_ms(times[size]["baseline"])
                launch[str(size)] = {
                    "nodes": size,
                    "rounds": n,
                    "ours": o,
                    "baseline": b,
                    "ratio": {k: ratio(o[k], b[k]) for k in ("p50_ms", "mean_ms")},
                    "p50_extra_ms": round(o["p50_ms"] - b["p50_ms"], 1),
                    "mean_extra_ms": round(o["mean_ms"] - b["mean_ms"], 1),
                    "stages": {name: summary_ms(values) for name, values in stages.items()},
                    "cpu": {
                        side: cpu.spent({}, used, wall_seconds=wall[size][side], per=n)
                        for side, used in cpu_used[size].items()
                    },
                }
            progress("launches done; the burst")
            bursts = _burst(
                url=url,
                api=api,
                region=region,
                instance_type=instance_type,
                tenants=tenants,
                node_count=node_count,
                burst=burst,
                burst_nodes=burst_nodes,
                namespaces=namespaces,
                progress=progress,
                load_nodes=load_nodes,
            )
            for who_ in [who, *tenants]:
                kube.drop_namespace(api, namespace_of(who_))
    finally:
        for name in namespaces:
            kube.drop_namespace(api, name)
        progress(f"deleted {delete_nodes(core)} benchmark nodes")
    return {
        "n": n,
        "sizes": list(sizes),
        "nodes_made": node_count,
        "block": BLOCK,
        "instance_type": "8 GPUs, whole node (copies of us-east-1-h100-0)",
        "client_mode": f"cluster read; first node not running waited for ({ours_api.waiter.mode}); again",
        "create_concurrency": concurrency,
        "scheduler_client": scheduler,
        "baseline_work": (
            "tenant's namespace objects; per cluster its Service, ConfigMap, Workload (gang) and "
            f"NetworkPolicy, then per node Secret + Service + node pod, {concurrency} nodes at once"
        ),
        "launch": launch,
        "burst": bursts,
        "goals": {},
    }


def _burst(
    *,
    url: str,
    api: Any,
    region: Any,
    instance_type: Any,
    tenants: list[Any],
    node_count: int,
    burst: int,
    burst_nodes: int,
    namespaces: list[str],
    progress: Progress,
    load_nodes: Callable[[str], list[Any]],
) -> dict[str, Any]:
    """BURST cluster creations at once, then as many single launches of the type, then the clusters' gangs
    created directly; each until all run (rows or pods), the nodes freed between them."""
    from apps.instances.models import Cluster, Instance
    from bench import kube

    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        return local.s

    def phase(kind: str) -> dict[str, Any]:
        codes: Counter[str] = Counter()
        lock = threading.Lock()

        def one(i: int) -> str | None:
            who = tenants[i % len(tenants)]
            headers = {**who.headers(), "Idempotency-Key": str(uuid.uuid4())}
            if kind == "clusters":
                response = create_cluster(session(), url, who, f"burst-{i}", instance_type.slug, burst_nodes)
            else:
                response = session().post(
                    f"{url}/api/v1/tenants/{who.slug}/instances",
                    json={"name": f"single-{i}", "instance_type": instance_type.slug, "region": REGION,
                          "image": "pytorch"},
                    headers=headers,
                    timeout=300,
                )  # fmt: skip
            code = str(response.status_code)
            if response.status_code >= 400:
                code += f" {(response.json().get('error') or {}).get('code')}"
            with lock:
                codes[code] += 1
            return str(response.json()["id"]) if response.status_code == 201 else None

        before = cpu.sample()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(burst) as pool:
            ids = [i for i in pool.map(one, range(burst)) if i]
        answered = time.perf_counter() - t0
        at_answer = cpu.sample()
        rows = Cluster.objects if kind == "clusters" else Instance.objects
        deadline = time.monotonic() + TIMEOUT
        while (running := rows.filter(pk__in=ids, state="running").count()) < len(ids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: only {running} of {len(ids)} running")
            if rows.filter(pk__in=ids, state="failed").exists():
                raise RuntimeError(f"{kind}: one failed")
            time.sleep(0.1)
        all_running = time.perf_counter() - t0
        at_running = cpu.sample()
        pods = len(ids) * (burst_nodes if kind == "clusters" else 1)
        progress(
            f"burst of {burst} {kind}: answered in {answered:.2f}s ({dict(codes)}), all {pods} pods "
            f"running after {all_running:.2f}s"
        )
        return {
            "requests": burst,
            "admitted": len(ids),
            "pods": pods,
            "responses": dict(codes),
            "answered_seconds": round(answered, 2),
            "answers_per_second": round(burst / answered, 1),
            "all_running_seconds": round(all_running, 2),
            "ids": ids,
            "cpu": {
                "answering": cpu.spent(before, at_answer, wall_seconds=answered, per=burst),
                "until_running": cpu.spent(before, at_running, wall_seconds=all_running, per=pods),
            },
        }

    def release(kind: str, ids: list[str]) -> None:
        def stop(i: int) -> None:
            who = tenants[i % len(tenants)]
            base = f"{url}/api/v1/tenants/{who.slug}"
            if kind == "clusters":
                response = session().post(
                    f"{base}/clusters/{ids[i]}/terminate", headers=who.headers(), timeout=60
                )
            else:
                response = session().delete(f"{base}/instances/{ids[i]}", headers=who.headers(), timeout=60)
            if response.status_code not in (200, 202):
                raise RuntimeError(f"release {ids[i]}: {response.status_code} {response.text[:200]}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(stop, range(len(ids))))
        rows = Cluster.objects if kind == "clusters" else Instance.objects
        deadline = time.monotonic() + TIMEOUT
        while rows.filter(pk__in=ids).exclude(state="terminated").exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} not terminated")
            time.sleep(0.2)
        wait_free(region, instance_type, node_count, f"after the burst of {kind}")

    clusters = phase("clusters")
    templates = [load_nodes(cluster_id) for cluster_id in clusters["ids"]]
    release("clusters", clusters["ids"])
    singles = phase("instances")
    release("instances", singles["ids"])

    # Equal work for the clusters: the same gangs, created directly, as many at once as the burst's clients.
    namespace = kube.baseline_namespace(api, tenants[-1].tenant, region)
    namespaces.append(namespace)
    watch = kube.PodWatch(api, namespace=namespace).start()
    gangs = [gang_objects(nodes, namespace, f"bb{i}") for i, nodes in enumerate(templates)]
    concurrency = 4  # per gang, as create_gang's nodes (at most BURST_NODES here)
    before = cpu.sample()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(burst) as pool:
        list(pool.map(lambda g: create_gang(api, g, concurrency), gangs))
    keys = [key for g in gangs for key in g.pod_keys]
    done = max(watch.wait_running(key, TIMEOUT) for key in keys)
    raw_seconds = done - t0
    after = cpu.sample()
    watch.stop()
    progress(
        f"baseline: {len(gangs)} gangs ({len(keys)} pods) created directly, running after {raw_seconds:.2f}s"
    )
    for entry in (clusters, singles):
        entry.pop("ids")
    cores = os.cpu_count() or 1
    # The stack's and the cluster's processes only: "other" is whatever else the machine runs meanwhile.
    answering = stack_cpu(clusters["cpu"]["answering"])
    return {
        "clients": burst,
        "tenants": len(tenants),
        "nodes_per_cluster": burst_nodes,
        "clusters": clusters,
        "single_launches": singles,
        "baseline": {
            "gangs": len(gangs),
            "pods": len(keys),
            "all_running_seconds": round(raw_seconds, 2),
            "cpu": cpu.spent(before, after, wall_seconds=raw_seconds, per=len(keys)),
        },
        "ratio_all_running": ratio(clusters["all_running_seconds"], raw_seconds),
        "ratio_answers_vs_single": ratio(clusters["answers_per_second"], singles["answers_per_second"]),
        "cpu_floor_answers_per_second": round(burst * cores / max(answering, 0.01), 1),
    }


def stack_cpu(spent: dict[str, Any]) -> float:
    """CPU seconds of a phase less the processes outside the stack and the cluster (bench/cpu.py's
    "other": on a shared machine, other sessions' work)."""
    return round(sum(s for part, s in spent["cpu_seconds"].items() if part != "other"), 2)


def namespace_of(who: Any) -> str:
    from apps.operator import names

    return names.namespace_name(who.tenant.pk, who.tenant.slug)


def main() -> int:
    parser = common.parser(
        "Clusters through the API against the same gang created directly.", DEFAULT_N, "rounds"
    )
    parser.add_argument("--sizes", type=common.parse_sizes, default=list(SIZES), help="cluster sizes (nodes)")
    parser.add_argument("--burst", type=int, default=BURST, help="cluster creations at once")
    args = parser.parse_args()
    return common.run_main(
        "cluster_launch", lambda n, p: run(n, p, sizes=tuple(args.sizes), burst=args.burst), args
    )


if __name__ == "__main__":
    raise SystemExit(main())
