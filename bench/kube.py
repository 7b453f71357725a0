"""Kubernetes for the benchmarks: the sandbox instance `bench` (the standard fleet; `make bench` starts it),
a dedicated cluster of the benchmark's own (the instance `bench-dedicated`, started and stopped here), and
the baseline's pods: the operator's own pod manifest (apps/operator/manifests.make_pod) created
directly with the kubernetes client.

Neither is make run's instance (`default`) nor the tests' (`test`) (docs/sandbox.md, "Instances"): a
benchmark's pods never take capacity a test or the demo counts on, and neither disturbs a measurement.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench.common import REPO, VAR
from tests.fixtures.kube import Instance, Sandbox, delete_namespace

SANDBOX_SH = REPO / "sandbox" / "sandbox.sh"
BASH = shutil.which("bash") or "/bin/bash"
BASELINE_LABEL = "gpucloud-bench/baseline"
BENCH_REGION = "bench-1"
# Sandbox instances (sandbox/instance.sh gives each its own ports and state directory).
BENCH_INSTANCE = "bench"
DEDICATED_INSTANCE = "bench-dedicated"


def bench_sandbox() -> Sandbox:
    """The benchmarks' instance `bench` (make bench starts it; started here when it does not run)."""
    return Instance.named(BENCH_INSTANCE).start()


def api_client(kubeconfig: Path) -> client.ApiClient:
    api = config.new_client_from_config(config_file=str(kubeconfig))
    # Enough connections for the concurrent clients of the burst benchmark.
    api.rest_client.pool_manager.connection_pool_kw["maxsize"] = 64
    return api


# ---- the dedicated cluster -------------------------------------------------------------------------------


def bench_fleet(path: Path, *, cpu_nodes: int) -> Path:
    """A fleet file of one region, BENCH_REGION, with `cpu_nodes` CPU nodes shaped like the sandbox's."""
    shapes = yaml.safe_load((REPO / "sandbox" / "fleet.yaml").read_text())["shapes"]
    fleet = {
        "shapes": {"cpu64": shapes["cpu64"]},
        "regions": [
            {
                "name": BENCH_REGION,
                "zones": [f"{BENCH_REGION}a", f"{BENCH_REGION}b"],
                "storage": {"class": "sandbox-standard", "access_mode": "ReadWriteOnce", "expandable": True},
                "pools": [{"name": "cpu", "shape": "cpu64", "count": cpu_nodes}],
            }
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return path


def _bench_env(fleet: Path) -> dict[str, str]:
    return Instance.named(DEDICATED_INSTANCE).env(
        GPUCLOUD_SANDBOX_FLEET=str(fleet),
        GPUCLOUD_SANDBOX_TIMEOUT="600",
        # Every instance has a Service: the default /24 runs out of ClusterIPs at about 250 instances.
        GPUCLOUD_SANDBOX_SERVICE_CIDR="10.96.0.0/16",
        GPUCLOUD_SANDBOX_NODE_PORT_RANGE="10000-32767",  # and of NodePorts at 2,768
    )


@contextmanager
def dedicated_cluster(name: str, *, cpu_nodes: int, progress: Any) -> Iterator[tuple[Path, Path]]:
    """A Kubernetes cluster of its own (the sandbox instance bench-dedicated with a bench fleet file: its own
    state directory and ports), so hundreds of nodes and thousands of pods load no other instance. Yields
    the kubeconfig and the fleet file; stopped (and its etcd data removed) afterwards."""
    fleet = bench_fleet(VAR / f"{name}-fleet.yaml", cpu_nodes=cpu_nodes)
    env = _bench_env(fleet)
    progress(f"starting a dedicated cluster ({cpu_nodes} nodes) in {env['GPUCLOUD_SANDBOX_DIR']}")
    log = VAR / "logs" / f"{name}-cluster.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log.open("w") as handle:
            subprocess.run(  # noqa: S603 - our own script
                [BASH, str(SANDBOX_SH), "start"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=True,
            )
        index = json.loads((Path(env["GPUCLOUD_SANDBOX_DIR"]) / "sandbox.json").read_text())
        progress(f"dedicated cluster ready at {index['regions'][BENCH_REGION]['server']}")
        yield Path(index["regions"][BENCH_REGION]["kubeconfig"]), fleet
    finally:
        with log.open("a") as handle:
            subprocess.run(  # noqa: S603 - our own script
                [BASH, str(SANDBOX_SH), "stop"],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        progress("dedicated cluster stopped")


# ---- the baseline: the same objects, created directly ---------------------------------------------------
# The raw side of launch latency, burst and the operator's cold start does the work a launch does in the
# cluster and nothing else: the tenant namespace's objects (ResourceQuota, LimitRange, ServiceAccount,
# network policies: the same admission work per pod) built by apps/operator/manifests from the same spec,
# then per instance its SSH Secret, Service and pod, created concurrently. Every object keeps gpucloud's
# labels except managed-by (BASELINE_MANAGED_BY), so no operator watches, counts or collects them.

BASELINE_MANAGED_BY = "gpucloud-bench"


def _unmanaged(manifest: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    from apps.operator import names

    out = copy.deepcopy(manifest)
    meta = out["metadata"]
    meta.setdefault("labels", {})[names.MANAGED_BY_LABEL] = BASELINE_MANAGED_BY
    meta["labels"][BASELINE_LABEL] = "true"
    if manifest["kind"] == "Namespace":
        meta["name"] = namespace
    elif namespace is not None and "namespace" in meta:
        meta["namespace"] = namespace
    for subject in (out.get("subjects") or []) if manifest["kind"] == "RoleBinding" else []:
        if subject.get("namespace") == manifest["metadata"].get("namespace"):
            subject["namespace"] = namespace
    return out


def unmanaged(manifest: dict[str, Any], namespace: str | None) -> dict[str, Any]:
    """A copy of the operator's `manifest` as the baseline's: in `namespace`, no operator's to manage."""
    return _unmanaged(manifest, namespace)


def baseline_namespace_objects(tenant: Any, region: Any, namespace: str) -> list[dict[str, Any]]:
    """The operator's namespace objects of this tenant in this region (apps/operator/reconciler's spec),
    moved into `namespace`."""
    from django.conf import settings

    from apps.catalog.models import GpuType
    from apps.operator import manifests
    from apps.operator.specs import logs_reader_from, namespace_spec_for
    from apps.quotas.models import TenantQuota

    spec = namespace_spec_for(
        tenant,
        region,
        TenantQuota.objects.get(tenant=tenant),
        gpu_types=GpuType.objects.all(),
        gpu_quotas=tenant.gpu_quotas.all(),
        logs_reader=logs_reader_from(settings.LOGS_READER_CLUSTER_ROLE or "", settings.LOGS_READER_SUBJECTS),
    )
    return [_unmanaged(m, namespace) for m in manifests.make_namespace_objects(spec)]


def baseline_namespace(
    api: client.ApiClient, tenant: Any, region: Any, *, prefix: str = "gpucloud-bench"
) -> str:
    """A namespace with the same objects as the operator gives `tenant`'s (untimed setup)."""
    from apps.operator.cluster import Cluster

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster = Cluster(api)
    for manifest in baseline_namespace_objects(tenant, region, name):
        cluster.apply(manifest)
    return name


def baseline_objects(instance: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    """The operator's Secret, Service and pod of this instance (manifests.make_instance_objects' builders),
    renamed to `name` in the baseline namespace."""
    import dataclasses

    from apps.operator import manifests
    from apps.operator.specs import spec_from_instance

    spec = dataclasses.replace(spec_from_instance(instance), namespace=namespace, name=name)
    secret, service, pod = (
        manifests.make_ssh_secret(spec),
        manifests.make_service(spec),
        manifests.make_pod(spec),
    )
    # One instance may stand for many baseline launches: the Secret takes the pod's name too.
    secret_name = secret["metadata"]["name"]
    secret["metadata"]["name"] = f"{name}-ssh"
    for volume in pod["spec"].get("volumes") or []:
        if (volume.get("secret") or {}).get("secretName") == secret_name:
            volume["secret"]["secretName"] = f"{name}-ssh"
    return [_unmanaged(m, namespace) for m in (secret, service, pod)]


def load_baseline_instance(instance_id: Any) -> Any:
    from apps.operator.reconciler import load_instance

    instance = load_instance(instance_id)
    if instance is None:
        raise LookupError(f"no instance {instance_id}")
    return instance


def create_raw(core: client.CoreV1Api, manifest: dict[str, Any]) -> None:
    """One create, its answer not turned into a client model (as the operator reads raw JSON)."""
    namespace = manifest["metadata"]["namespace"]
    fn: Any = {
        "Secret": core.create_namespaced_secret,
        "Service": core.create_namespaced_service,
        "Pod": core.create_namespaced_pod,
    }[manifest["kind"]]
    fn(namespace, manifest, _preload_content=False)


_SIDE = ThreadPoolExecutor(64, thread_name_prefix="bench-create")
SIDE = _SIDE  # for a baseline's Secret and Service beside its pod


def create_instance_objects(core: client.CoreV1Api, objects: list[dict[str, Any]]) -> None:
    """An instance's Secret and Service sent alongside its pod, as the launch path sends them."""
    *others, pod = objects
    futures = [_SIDE.submit(create_raw, core, m) for m in others]
    create_raw(core, pod)
    for future in futures:
        future.result()


def delete_raw(core: client.CoreV1Api, manifest: dict[str, Any]) -> None:
    meta = manifest["metadata"]
    fn: Any = {
        "Secret": core.delete_namespaced_secret,
        "Service": core.delete_namespaced_service,
        "Pod": core.delete_namespaced_pod,
    }[manifest["kind"]]
    try:
        fn(meta["name"], meta["namespace"], grace_period_seconds=0, _preload_content=False)
    except ApiException as exc:
        if exc.status != 404:
            raise


class PodWatch:
    """A watch of pods (one namespace, or every namespace with a label selector) kept open in a thread, as
    the operator's is: records when each pod is first seen Running and when it is gone, so a waiter is
    woken by the event, not by polling. Reads raw JSON lines; resumes from the last resourceVersion it saw
    (bookmarks keep that current), so a reconnect never replays every pod."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        clock: Any = time.perf_counter,
    ):
        self.core = client.CoreV1Api(api)
        self.namespace, self.label_selector, self.clock = namespace, label_selector, clock
        self.running: dict[str, float] = {}  # key -> clock at the first Running
        self.gone: set[str] = set()
        self.key_label: str | None = None  # key pods by this label's value instead of namespace/name
        self.reconnects = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self.resource_version = ""
        self._thread = threading.Thread(target=self._loop, daemon=True, name="bench-pod-watch")

    def start(self) -> PodWatch:
        listed = self._list()
        self.resource_version = listed["metadata"]["resourceVersion"]
        for pod in listed["items"]:
            self._see("ADDED", pod)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"_preload_content": False}
        if self.label_selector:
            kw["label_selector"] = self.label_selector
        response: Any  # the raw HTTP response (_preload_content=False), not a V1PodList
        if self.namespace:
            response = self.core.list_namespaced_pod(self.namespace, **kw)
        else:
            response = self.core.list_pod_for_all_namespaces(**kw)
        return dict(json.loads(response.data))

    def _key(self, pod: dict[str, Any]) -> str | None:
        meta = pod.get("metadata") or {}
        if self.key_label is not None:
            return (meta.get("labels") or {}).get(self.key_label)
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def _see(self, kind: str, pod: dict[str, Any]) -> None:
        key = self._key(pod)
        if key is None:
            return
        at = self.clock()
        with self._cond:
            if kind == "DELETED":
                self.gone.add(key)
            elif (pod.get("status") or {}).get("phase") == "Running" and key not in self.running:
                self.running[key] = at
            self._cond.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set():
            kw: dict[str, Any] = {
                "watch": True,
                "resource_version": self.resource_version,
                "allow_watch_bookmarks": True,
                "timeout_seconds": 300,
                "_preload_content": False,
            }
            if self.label_selector:
                kw["label_selector"] = self.label_selector
            response: Any  # the raw HTTP response: its lines are the watch's events
            try:
                if self.namespace:
                    response = self.core.list_namespaced_pod(self.namespace, **kw)
                else:
                    response = self.core.list_pod_for_all_namespaces(**kw)
                for line in response:
                    for raw in line.splitlines() if isinstance(line, bytes) else [line]:
                        self._line(raw)
                    if self._stop.is_set():
                        return
            except ApiException as exc:
                if exc.status == 410:  # too old: list again (only after a long outage)
                    self.resource_version = self._list()["metadata"]["resourceVersion"]
                time.sleep(0.2)
            except Exception:
                time.sleep(0.2)
            self.reconnects += 1

    _partial = b""

    def _line(self, raw: bytes) -> None:
        data = self._partial + raw
        if not data.strip():
            return
        try:
            event = json.loads(data)
        except ValueError:  # a chunk that ends mid-line: keep it for the next one
            self._partial = data
            return
        self._partial = b""
        obj = event.get("object") or {}
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self.resource_version = version
        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
            self._see(event["type"], obj)
        elif event.get("type") == "ERROR" and obj.get("code") == 410:
            self.resource_version = self._list()["metadata"]["resourceVersion"]

    def wait_running(self, key: str, timeout: float) -> float:
        """The clock at which `key` was first seen Running (waits for it)."""
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.running, timeout=timeout):
                raise TimeoutError(f"pod {key} not Running after {timeout:.0f}s")
            return self.running[key]

    def wait_gone(self, key: str, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.gone, timeout=timeout):
                raise TimeoutError(f"pod {key} not gone after {timeout:.0f}s")

    def wait_all_running(self, count: int, timeout: float) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.running) >= count, timeout=timeout):
                raise TimeoutError(f"{len(self.running)}/{count} pods Running after {timeout:.0f}s")


def scheduler_client_qps(sandbox_dir: Path, region: str) -> dict[str, Any]:
    """kube-scheduler's client QPS and burst as sandbox/sandbox.sh configures them (scheduler.yaml's
    clientConnection; kube-scheduler's defaults, 50 and 100, where it sets none). Both sides of every
    benchmark share one scheduler and one kwok per region, so they are the same for both."""
    path = sandbox_dir / region / "scheduler.yaml"
    try:
        connection = (yaml.safe_load(path.read_text()) or {}).get("clientConnection") or {}
    except OSError:
        return {"qps": None, "burst": None, "source": f"{path} missing"}
    return {
        "qps": connection.get("qps", 50),
        "burst": connection.get("burst", 100),
        "source": "scheduler.yaml clientConnection" if "qps" in connection else "kube-scheduler default",
    }


def pod_phase(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    try:
        status = core.read_namespaced_pod(name, namespace).status
        return status.phase if status is not None else None
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_pod(
    core: client.CoreV1Api,
    namespace: str,
    name: str,
    phase: str | None,
    *,
    poll: float,
    timeout: float = 120.0,
) -> None:
    """Poll until the pod has `phase` (None: until it is gone)."""
    deadline = time.monotonic() + timeout
    while pod_phase(core, namespace, name) != phase:
        if time.monotonic() > deadline:
            raise TimeoutError(f"pod {namespace}/{name} not {phase or 'gone'} after {timeout:.0f}s")
        time.sleep(poll)


def drop_namespace(api: client.ApiClient, name: str) -> None:
    delete_namespace(api, name)
